//! Atomic file writes: a crash leaves either the old file or the new one, never half of one.
use crate::error::{IoContext, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temp path used while writing `path`: same folder, so the rename is atomic, and
/// the same extension (`<stem>.tmp<pid>.<ext>`), since some writers (libtorch's
/// `VarStore::save`) choose the format by it. Every temp name contains `.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    let pid = std::process::id();
    let name = match (path.file_stem(), path.extension()) {
        (Some(stem), Some(ext)) => format!("{}.tmp{pid}.{}", stem.to_string_lossy(), ext.to_string_lossy()),
        _ => format!("{}.tmp{pid}", path.file_name().unwrap_or_default().to_string_lossy()),
    };
    path.with_file_name(name)
}

/// Removes the temp files in `dir` that a killed writer left (see [`temp_path`]); those of
/// live processes stay, since they may be writing them now. Returns the names removed.
pub fn remove_stale_temps(dir: &Path) -> Vec<String> {
    let mut removed = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = temp_owner(&name) else { continue };
        if !pid_alive(pid) && std::fs::remove_file(e.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// Removes `path` if it is a temp file (see [`temp_path`]) of a process no longer running.
pub fn remove_stale_temp(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
    temp_owner(&name).is_some_and(|pid| !pid_alive(pid)) && std::fs::remove_file(path).is_ok()
}

/// The pid in a temp file's name (`<stem>.tmp<pid>[.<ext>]`).
fn temp_owner(name: &str) -> Option<i32> {
    let rest = &name[name.find(".tmp")? + 4..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty() && rest[digits.len()..].chars().next().is_none_or(|c| c == '.')).then(|| digits.parse().ok())?
}

/// Whether process `pid` runs on this host.
pub fn pid_alive(pid: i32) -> bool {
    // Signal 0 checks existence; EPERM means it exists under another user.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

/// The one atomic write: `write` makes the file at a temp path, which is then fsynced
/// and renamed over `path`. On any error the temp file is removed and `path` is untouched.
pub fn write_via_temp(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let res = write(&tmp)
        .and_then(|_| std::fs::File::open(&tmp).and_then(|f| f.sync_all()).ctx(|| format!("syncing {}", tmp.display())))
        .and_then(|_| std::fs::rename(&tmp, path).ctx(|| format!("renaming {} to {}", tmp.display(), path.display())));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, |tmp| {
        let write = || std::fs::File::create(tmp)?.write_all(bytes);
        write().ctx(|| format!("writing {}", path.display()))
    })
}

/// Serialises `value` as pretty JSON into `path`, atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|source| crate::Error::Json { context: path.display().to_string(), source })?;
    write_atomic(path, &bytes)
}

/// Reads JSON from `path`, naming the file on failure.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).ctx(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|source| crate::Error::Json { context: path.display().to_string(), source })
}

/// Creates `dir` and its parents.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))
}

/// Makes a rename of `path` durable; best effort, since not every filesystem allows it.
pub fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

/// An exclusive claim among processes on one job (a download, an unpack): `flock` on
/// `path`, which the kernel releases when its holder dies, so no claim goes stale. The
/// file is removed on drop; a waiter that then locks the removed file tries again.
pub struct FileLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl FileLock {
    /// The lock, or `None` while another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .ctx(|| format!("creating lock {}", path.display()))?;
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Ok(None);
                }
                return Err(e).ctx(|| format!("locking {}", path.display()));
            }
            let ours = file.metadata().ctx(|| format!("reading lock {}", path.display()))?;
            match std::fs::metadata(path) {
                Ok(m) if (m.dev(), m.ino()) == (ours.dev(), ours.ino()) => {
                    // A killed holder's pid may still be there.
                    let _ = file.set_len(0);
                    let mut f = &file;
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(Some(FileLock { path: path.to_path_buf(), _file: file }));
                }
                // The holder before us removed it after we opened it: lock the new one.
                _ => continue,
            }
        }
    }

    /// Waits for the lock, saying once on `sink` that `what` is being done by another
    /// process (and which, when its pid can be read). Ctrl-C stops the wait.
    pub fn wait(path: &Path, what: &str, sink: &mut dyn crate::events::EventSink) -> Result<FileLock> {
        let mut said = false;
        loop {
            if let Some(lock) = Self::try_acquire(path)? {
                return Ok(lock);
            }
            if !said {
                said = true;
                let pid = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u32>().ok());
                let who = pid.map_or("another process".to_string(), |p| format!("another process (pid {p})"));
                sink.info(&format!("{who} is {what}; waiting for it to finish"));
            }
            crate::interrupt::check(|| format!("stopped waiting for {}", path.display()))?;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Removed while still locked, so a waiter never takes a lock on a file that stays.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.lock");
        let a = FileLock::try_acquire(&path).unwrap().expect("free");
        assert!(FileLock::try_acquire(&path).unwrap().is_none(), "flock is per open file: a second open waits");
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), std::process::id().to_string());
        drop(a);
        assert!(!path.exists());
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;

    #[test]
    fn temps_of_dead_writers_go_and_live_ones_and_other_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mine = temp_path(&dir.path().join("a.safetensors"));
        // pid_max on Linux is at most 2^22: this writer cannot be alive.
        let dead = dir.path().join("b.tmp99999999.safetensors");
        let other = dir.path().join("notes.tmp.txt");
        for p in [&mine, &dead, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(dir.path()), ["b.tmp99999999.safetensors"]);
        assert!(mine.exists() && other.exists() && !dead.exists());
        assert_eq!(temp_owner("epochs.tmp42"), Some(42));
        assert_eq!(temp_owner("x.tmp12y.csv"), None);
    }
}
