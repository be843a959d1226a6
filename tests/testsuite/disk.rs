//! A full disk during training, extraction and a report (the download's is in fetch.rs):
//! the command ends with an error naming the path and "No space left", every file it left
//! is whole, and once there is room a rerun (`train --resume`) ends exactly as an
//! uninterrupted run. The run folder is a small tmpfs the test mounts
//! (it runs as root in CI); without the right to mount, a file-size limit on the process
//! stands in for the full disk. A run folder made read-only midway is the same story.
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test, unmounted when dropped.
pub(crate) struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A place with little room for the commands a test runs: a tmpfs of `bytes` (root can
/// mount one, and in CI must), else a file-size limit of `file_limit` on each command.
pub(crate) struct Space {
    pub(crate) dir: PathBuf,
    fs: Option<Tmpfs>,
    file_limit: u64,
    grown: std::cell::Cell<bool>,
}

impl Space {
    pub(crate) fn new(at: &Path, bytes: u64, file_limit: u64) -> Space {
        let fs = Tmpfs::mount(at, bytes);
        // SAFETY: geteuid has no preconditions.
        assert!(fs.is_some() || unsafe { libc::geteuid() } != 0, "mount -t tmpfs failed as root");
        if fs.is_none() {
            println!(
                "cannot mount a tmpfs here: a {} KiB file-size limit stands in for the full disk",
                file_limit >> 10
            );
            std::fs::create_dir_all(at).unwrap();
        }
        Space { dir: at.to_path_buf(), fs, file_limit, grown: Default::default() }
    }

    /// Puts `c` under the limit (until [`Space::grow`]).
    pub(crate) fn limit(&self, c: &mut Command) {
        if self.fs.is_some() || self.grown.get() {
            return;
        }
        use std::os::unix::process::CommandExt;
        let max = self.file_limit as libc::rlim_t;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit { rlim_cur: max, rlim_max: max };
                libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                Ok(())
            });
        }
    }

    /// What the error says when the room runs out.
    pub(crate) fn full_error(&self) -> &'static str {
        if self.fs.is_some() {
            "No space left on device"
        } else {
            "File too large"
        }
    }

    /// Room again: the tmpfs grows in place; without one, no more limit.
    pub(crate) fn grow(&self) {
        if let Some(fs) = &self.fs {
            let grown = Command::new("mount").args(["-o", "remount,size=64m"]).arg(&fs.0).status().unwrap();
            assert!(grown.success());
        }
        self.grown.set(true);
    }
}

fn tree(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
}

fn no_temp_files(dir: &Path) {
    for f in tree(dir) {
        assert!(!f.to_string_lossy().contains(".tmp"), "{} left behind", f.display());
    }
}

/// Whole as far as its format tells: JSON parses, safetensors load, PNG ends with IEND,
/// SVG with its closing tag, Parquet with its magic.
fn assert_whole(path: &Path) {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).unwrap();
    let ext = path.extension().map(|e| e.to_string_lossy().to_string()).unwrap_or_default();
    match ext.as_str() {
        "json" => drop(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))),
        "safetensors" => drop(tch::Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{name}: {e}"))),
        "png" => assert!(bytes.ends_with(b"IEND\xaeB`\x82"), "{name} is cut short"),
        "svg" => assert!(String::from_utf8_lossy(&bytes).trim_end().ends_with("</svg>"), "{name} is cut short"),
        "parquet" => assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"), "{name} is cut short"),
        _ => {}
    }
}

fn tlab(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tlab"));
    c.arg("--threads").arg(test_threads().to_string()).arg("--cache-dir").arg(cache);
    c
}

const ARGS: &[&str] = &[
    "train",
    "--strategy",
    "linear-probe",
    "--dataset",
    "synthetic",
    "--synthetic-train",
    "1000",
    "--synthetic-test",
    "50",
    "--arch",
    "resnet18",
    "--weights",
    "random",
    "--size",
    "32",
    "--epochs",
    "12",
    "--name",
    "disk",
];

fn only_dir(runs: &Path) -> PathBuf {
    std::fs::read_dir(runs).unwrap().flatten().map(|e| e.path()).find(|p| p.is_dir()).unwrap()
}

#[test]
fn a_full_disk_is_a_named_error_leaves_whole_files_and_the_run_resumes_exactly() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let reference = tmp.path().join("reference");
    let out = tlab(&cache).args(ARGS).arg("--runs-dir").arg(&reference).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = only_dir(&reference);

    // Room for the first checkpoints, not for the run's later writes.
    let space = Space::new(&tmp.path().join("small"), 160 << 10, 100 << 10);
    let runs = space.dir.join("runs");
    let mut c = tlab(&cache);
    c.args(ARGS).arg("--runs-dir").arg(&runs);
    space.limit(&mut c);
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run fit in the space: {log}");
    let dir = only_dir(&runs);
    assert!(log.contains(space.full_error()) && log.contains(&dir.display().to_string()), "{log}");
    println!("the error: {}", log.lines().filter(|l| l.contains("error")).collect::<Vec<_>>().join(" | "));

    // Whatever it wrote is whole: JSON parses, checkpoints load, no temp files.
    no_temp_files(&dir);
    tree(&dir).iter().for_each(|f| assert_whole(&dir.join(f)));

    space.grow();
    let out = tlab(&cache).args(["train", "--resume"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let copy = dir;
    for name in ["head-best.safetensors", "head-last.safetensors", "train-state.json", "epochs.csv", "steps.csv"] {
        assert!(std::fs::read(want.join(name)).unwrap() == std::fs::read(copy.join(name)).unwrap(), "{name} differs");
    }
}

const EXTRACT: &[&str] = &[
    "extract",
    "--dataset",
    "synthetic",
    "--synthetic-train",
    "384",
    "--arch",
    "resnet18",
    "--weights",
    "random",
    "--size",
    "64",
    "--shard-size",
    "32",
    "--split",
    "train",
];

#[test]
fn a_full_disk_during_extraction_is_named_keeps_whole_shards_and_resumes_to_the_same_cache() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let out = tlab(&reference).args(EXTRACT).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Shards of 32 x 512 f32 (66 KB): three fit in the tmpfs, none under the file limit.
    let space = Space::new(&tmp.path().join("small"), 200 << 10, 40 << 10);
    let cache = space.dir.join("cache");
    let mut c = tlab(&cache);
    c.args(EXTRACT);
    space.limit(&mut c);
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the extraction fit in the space: {log}");
    let features = cache.join("features");
    assert!(log.contains(space.full_error()) && log.contains(&features.display().to_string()), "{log}");
    println!("the error: {}", log.lines().filter(|l| l.contains("error")).collect::<Vec<_>>().join(" | "));
    no_temp_files(&cache);
    tree(&features).iter().for_each(|f| assert_whole(&features.join(f)));

    space.grow();
    let mut c = tlab(&cache);
    c.args(EXTRACT);
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("already cached") || log.contains("resum"), "the rerun resumes: {log}");
    let want = reference.join("features");
    assert_eq!(tree(&features), tree(&want));
    for f in tree(&want) {
        assert!(std::fs::read(want.join(&f)).unwrap() == std::fs::read(features.join(&f)).unwrap(), "{f:?} differs");
    }
}

#[test]
fn a_full_disk_while_writing_a_report_is_named_and_leaves_whole_files() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs) = (tmp.path().join("cache"), tmp.path().join("runs"));
    let mut args = ARGS.to_vec();
    args[0] = "run";
    let i = args.iter().position(|&x| x == "--epochs").unwrap();
    args[i + 1] = "2";
    let out = tlab(&cache).args(&args).arg("--runs-dir").arg(&runs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = only_dir(&runs);
    // Charts are 30-100 KB each: a few fit in the tmpfs, none under the file limit.
    let space = Space::new(&tmp.path().join("small"), 96 << 10, 20 << 10);
    let report = space.dir.join("report");
    let mut c = tlab(&cache);
    c.arg("report").arg(&run).arg("--out").arg(&report);
    space.limit(&mut c);
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the report fit in the space: {log}");
    assert!(log.contains(space.full_error()) && log.contains(&report.display().to_string()), "{log}");
    println!("the error: {}", log.lines().filter(|l| l.contains("error")).collect::<Vec<_>>().join(" | "));
    no_temp_files(&report);
    tree(&report).iter().for_each(|f| assert_whole(&report.join(f)));
    assert!(!report.join("report.md").exists(), "report.md is written last, when every chart it links exists");

    space.grow();
    let mut c = tlab(&cache);
    c.arg("report").arg(&run).arg("--out").arg(&report);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tree(&report).iter().for_each(|f| assert_whole(&report.join(f)));
    assert!(report.join("report.md").exists() && report.join("curves.svg").exists());
}

/// `ARGS` with more epochs, so that the folder can turn read-only mid-run.
fn long_args() -> Vec<&'static str> {
    let mut a = ARGS.to_vec();
    let i = a.iter().position(|&x| x == "--epochs").unwrap();
    a[i + 1] = "40";
    a
}

#[test]
fn a_run_folder_made_read_only_midway_is_a_named_error_and_the_run_resumes_exactly() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let reference = tmp.path().join("reference");
    let out = tlab(&cache).args(long_args()).arg("--runs-dir").arg(&reference).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = only_dir(&reference);

    let runs = tmp.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let mut child = tlab(&cache)
        .args(long_args())
        .arg("--runs-dir")
        .arg(&runs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read-only once the first epoch is on disk: a read-only bind mount over the folder as
    // root (files the run holds open stay writable through the old mount, as on a real
    // remount), else the permission bits.
    let t = std::time::Instant::now();
    let dir = loop {
        let found = std::fs::read_dir(&runs).unwrap().flatten().map(|e| e.path()).find(|p| p.is_dir());
        if let Some(d) =
            found.filter(|d| std::fs::read_to_string(d.join("epochs.csv")).is_ok_and(|s| s.lines().count() >= 2))
        {
            break d;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its folder could turn read-only");
        assert!(t.elapsed().as_secs() < 120, "no epoch was written");
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let run = |c: &mut Command| {
        let out = c.output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        if !ok {
            println!("{c:?} failed: {out:?}");
        }
        ok
    };
    // One `mount --bind -o ro`: mount(8) binds and remounts read-only back to back, so a
    // file the run opens through the new mount in between (the remount then fails with
    // EBUSY) is a window of microseconds, not the gap between two commands. Retried after
    // undoing a half-done bind.
    let remounted = (0..200).any(|_| {
        let quiet = std::process::Stdio::null;
        let bound = Command::new("mount").args(["--bind", "-o", "ro"]).arg(&dir).arg(&dir).stderr(quiet()).status();
        if bound.is_ok_and(|s| s.success()) {
            return true;
        }
        while Command::new("umount").arg(&dir).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success()) {
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        false
    });
    if !remounted {
        run(Command::new("mount").args(["--bind", "-o", "ro"]).arg(&dir).arg(&dir));
        let _ = Command::new("umount").arg(&dir).status();
    }
    // Unmounted however the test ends, so the temp folder can go.
    let bind = remounted.then(|| Unmount(dir.clone()));
    // Root ignores permission bits: as root the bind mount must work.
    assert!(remounted || unsafe { libc::geteuid() } != 0, "mount --bind / remount,ro failed as root");
    if !remounted {
        println!("cannot remount here: the folder's permission bits are cleared instead");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished in a read-only folder: {stderr}");
    let why = if remounted { "Read-only file system" } else { "Permission denied" };
    assert!(stderr.contains(why) && stderr.contains(&dir.display().to_string()), "{stderr}");
    println!("the error: {}", stderr.lines().filter(|l| l.contains("error")).collect::<Vec<_>>().join(" | "));

    if let Some(b) = bind {
        drop(b);
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A temp file the failed rename could not remove (the folder was read-only) goes on resume.
    let out = tlab(&cache).args(["train", "--resume"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        assert!(!name.contains(".tmp"), "{name} left behind");
    }
    for name in ["head-best.safetensors", "head-last.safetensors", "train-state.json", "epochs.csv", "steps.csv"] {
        assert!(std::fs::read(want.join(name)).unwrap() == std::fs::read(dir.join(name)).unwrap(), "{name} differs");
    }
}
