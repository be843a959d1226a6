//! A full disk during training: `tlab train` ends with an error naming the path and "No
//! space left", every file it left is whole, and once there is room `train --resume`
//! ends exactly as an uninterrupted run. The run folder is a small tmpfs the test mounts
//! (it runs as root in CI); without the right to mount, a file-size limit on the process
//! stands in for the full disk.
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
