//! A full disk during training: `tlab train` ends with an error naming the path and "No
//! space left", every file it left is whole, and once there is room `train --resume`
//! ends exactly as an uninterrupted run. The run folder is a small tmpfs the test mounts
//! (it runs as root in CI); without the right to mount, a file-size limit on the process
//! stands in for the full disk. A run folder made read-only midway is the same story.
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);
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
    let mount = tmp.path().join("small");
    let fs = Tmpfs::mount(&mount, 160 << 10);
    let runs = mount.join("runs");
    let mut c = tlab(&cache);
    c.args(ARGS).arg("--runs-dir").arg(&runs);
    let limited = fs.is_none();
    if limited {
        println!("cannot mount a tmpfs here: a 100 KiB file-size limit stands in for the full disk");
        std::fs::create_dir_all(&runs).unwrap();
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit { rlim_cur: 100 << 10, rlim_max: 100 << 10 };
                libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                Ok(())
            });
        }
    }
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run fit in the space: {log}");
    let dir = only_dir(&runs);
    let why = if limited { "File too large" } else { "No space left on device" };
    assert!(log.contains(why) && log.contains(&dir.display().to_string()), "{log}");
    println!("the error: {}", log.lines().filter(|l| l.contains("error")).collect::<Vec<_>>().join(" | "));

    // Whatever it wrote is whole: JSON parses, checkpoints load, no temp files.
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let (p, name) = (e.path(), e.file_name().to_string_lossy().to_string());
        assert!(!name.contains(".tmp"), "{name} left behind");
        if name.ends_with(".json") {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name} is not whole: {e}"));
        }
        if name.ends_with(".safetensors") {
            tch::Tensor::read_safetensors(&p).unwrap_or_else(|e| panic!("{name} is not whole: {e}"));
        }
    }

    // Room again (the tmpfs grows in place; without it, no limit), then resume.
    if let Some(fs) = &fs {
        let grown = Command::new("mount").args(["-o", "remount,size=8m"]).arg(&fs.0).status().unwrap();
        assert!(grown.success());
    }
    let out = tlab(&cache).args(["train", "--resume"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let copy = dir;
    for name in ["head-best.safetensors", "head-last.safetensors", "train-state.json", "epochs.csv", "steps.csv"] {
        assert!(std::fs::read(want.join(name)).unwrap() == std::fs::read(copy.join(name)).unwrap(), "{name} differs");
    }
    drop(fs);
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
    let remounted = run(Command::new("mount").arg("--bind").arg(&dir).arg(&dir)) && {
        // EBUSY while the run has a file open for writing through the new mount: retry.
        let remount = || Command::new("mount").args(["-o", "remount,ro,bind"]).arg(&dir).status();
        let mut ro = false;
        for _ in 0..500 {
            if remount().is_ok_and(|s| s.success()) {
                ro = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let ro = ro || run(Command::new("mount").args(["-o", "remount,ro,bind"]).arg(&dir));
        if !ro {
            let _ = Command::new("umount").arg(&dir).status();
        }
        ro
    };
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
