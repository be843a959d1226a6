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
