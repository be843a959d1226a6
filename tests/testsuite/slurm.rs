//! `deploy/slurm/extract.sbatch` on a real Slurm cluster: one node, this machine, started
//! by `scripts/slurm-cluster.sh` (which installs Debian's slurm-wlm and munge when they
//! are missing) in a temp folder and stopped by PID whatever happens. A 4-task array
//! extracts a synthetic set, one task is cancelled mid-way with `scancel` and resubmitted
//! alone, and the merged cache must equal a one-process extraction byte for byte.
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// 32 shards of 48 rows: 8 per task, each a few tenths of a second on one thread, so a
/// task is cancelled between its first and its last shard.
const ARGS: &str = "--dataset synthetic --synthetic-train 1536 --synthetic-test 10 --arch resnet18 \
                    --weights random --size 64 --batch-size 16 --shard-size 48 --split train";
const TASKS: usize = 4;
const VICTIM: usize = 2;

struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let script = root().join("scripts/slurm-cluster.sh");
        let out = Command::new(&script).arg("start").arg(dir).output().unwrap();
        // Stopped on every way out of the test from here on, started or half-started.
        let cluster = Cluster { dir: dir.to_path_buf() };
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the Slurm cluster did not start:\n{log}");
        eprintln!("{}", log.trim());
        cluster
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.dir.join("slurm.conf"));
        c
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.cmd(program).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{program} {args:?}: {}{text}", String::from_utf8_lossy(&out.stderr));
        text
    }

    /// Submits the array tasks `array` of extract.sbatch, CPU form, one CPU each.
    fn submit(&self, array: &str, cache: &Path, logs: &Path) -> String {
        let mut c = self.cmd("sbatch");
        c.args(["--parsable", &format!("--array={array}"), "--cpus-per-task=1", "--mem=2G", "--chdir"])
            .arg(logs)
            .arg(format!("--output={}/task-%a-%j.out", logs.display()))
            .arg(root().join("deploy/slurm/extract.sbatch"))
            .env("TLAB_CACHE_DIR", cache)
            .env("TLAB_EXTRACT_ARGS", ARGS)
            .env("TLAB_DEVICE", "cpu")
            .env("TLAB_PARTS", TASKS.to_string())
            .env("TLAB", env!("CARGO_BIN_EXE_tlab"));
        for v in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX"] {
            c.env_remove(v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "sbatch: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap().to_string()
    }

    /// Waits until no task of `job` is pending or running.
    fn wait(&self, job: &str, logs: &Path) {
        let t = Instant::now();
        while !self.run("squeue", &["-h", "-j", job, "-o", "%i %T"]).trim().is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "job {job} still queued after 10 minutes\n{}",
                task_logs(logs)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn job_state(&self, id: &str) -> String {
        let text = self.run("scontrol", &["show", "job", id]);
        text.split_whitespace().find_map(|w| w.strip_prefix("JobState=")).unwrap_or("?").to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = Command::new(root().join("scripts/slurm-cluster.sh")).arg("stop").arg(&self.dir).output();
        if let Ok(o) = out {
            eprint!("{}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

fn task_logs(logs: &Path) -> String {
    let mut out = String::new();
    let mut files: Vec<_> = std::fs::read_dir(logs).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        out += &format!("--- {}\n{}\n", f.display(), std::fs::read_to_string(&f).unwrap_or_default());
    }
    out
}

/// The one feature folder under `cache`, once a worker made it.
fn feature_folder(cache: &Path) -> Option<PathBuf> {
    std::fs::read_dir(cache.join("features")).ok()?.flatten().next().map(|e| e.path())
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

fn done_of_part(dir: &Path, k: usize) -> usize {
    (0..32).filter(|i| i % TASKS == k && dir.join(format!("shard-{i:05}.done.json")).exists()).count()
}

#[test]
fn a_slurm_array_with_a_cancelled_task_resubmitted_merges_to_the_one_process_cache() {
    // The array's tasks run models, two at a time on this machine's two CPUs.
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (one, shared, logs) = (tmp.path().join("one"), tmp.path().join("shared"), tmp.path().join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tlab"))
        .args(["--threads", "1", "--cache-dir"])
        .arg(&one)
        .arg("extract")
        .args(ARGS.split_whitespace())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = files(&feature_folder(&one).unwrap());

    let cluster = Cluster::start(&tmp.path().join("slurm"));
    let job = cluster.submit(&format!("0-{}", TASKS - 1), &shared, &logs);
    let victim = format!("{job}_{VICTIM}");

    // Cancel the victim once it has finished a shard of its 8, before its last.
    let t = Instant::now();
    let dir = loop {
        if let Some(d) = feature_folder(&shared) {
            if done_of_part(&d, VICTIM) >= 1 {
                break d;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(300), "task {VICTIM} never finished a shard\n{}", task_logs(&logs));
        std::thread::sleep(Duration::from_millis(20));
    };
    cluster.run("scancel", &[&victim]);
    cluster.wait(&job, &logs);
    let cut = done_of_part(&dir, VICTIM);
    assert!(cut < 8, "task {VICTIM} finished all its shards before scancel reached it ({cut} of 8)");
    assert_eq!(cluster.job_state(&victim), "CANCELLED", "{}", task_logs(&logs));
    for k in (0..TASKS).filter(|&k| k != VICTIM) {
        assert_eq!(cluster.job_state(&format!("{job}_{k}")), "COMPLETED", "{}", task_logs(&logs));
    }
    assert!(!dir.join("manifest.json").exists(), "no manifest while part {VICTIM} is missing");
    let status = Command::new(env!("CARGO_BIN_EXE_tlab"))
        .args(["--cache-dir"])
        .arg(&shared)
        .arg("extract")
        .args(ARGS.split_whitespace())
        .arg("--status")
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stderr);
    assert!(status.contains(&format!("part {VICTIM}/{TASKS}: {} of 8 shards left", 8 - cut)), "{status}");
    eprintln!("task {VICTIM} cancelled after {cut} of its 8 shards; --status says:\n{status}");

    // The cancelled index alone, as the sbatch file says to rerun a part.
    let rerun = cluster.submit(&VICTIM.to_string(), &shared, &logs);
    cluster.wait(&rerun, &logs);
    assert_eq!(cluster.job_state(&format!("{rerun}_{VICTIM}")), "COMPLETED", "{}", task_logs(&logs));
    let log = task_logs(&logs);
    assert!(log.contains(&format!("worker {VICTIM}/{TASKS}")), "the rerun is part {VICTIM} of {TASKS}:\n{log}");
    assert!(log.contains(&format!("part {VICTIM}/{TASKS}: 8 of the 32 shards ({} still to do)", 8 - cut)), "{log}");

    let got = files(&dir);
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want));
    for ((name, a), (_, b)) in got.iter().zip(&want) {
        assert!(a == b, "{name} differs from the one-process extraction");
    }

    // deploy/slurm/submit.sh as the book shows it: 2 parts and a merge job after them.
    let (cache2, logs2) = (tmp.path().join("submitted"), tmp.path().join("logs2"));
    std::fs::create_dir_all(&logs2).unwrap();
    let small = ARGS.replace("--synthetic-train 1536", "--synthetic-train 192");
    let out = cluster
        .cmd("bash")
        .arg(root().join("deploy/slurm/submit.sh"))
        .arg("2")
        .current_dir(&logs2)
        .env("TLAB_CACHE_DIR", &cache2)
        .env("TLAB_EXTRACT_ARGS", &small)
        .env("TLAB_DEVICE", "cpu")
        .env("TLAB_CPUS_PER_TASK", "1")
        .env("TLAB", env!("CARGO_BIN_EXE_tlab"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "submit.sh: {}{said}", String::from_utf8_lossy(&out.stderr));
    let id_after = |prefix: &str| {
        said.lines().find_map(|l| l.strip_prefix(prefix)).unwrap().split_whitespace().next().unwrap().to_string()
    };
    let (parts, merge) = (id_after("parts: job array "), id_after("merge: job "));
    cluster.wait(&parts, &logs2);
    cluster.wait(&merge, &logs2);
    assert_eq!(cluster.job_state(&merge), "COMPLETED", "{}", task_logs(&logs2));
    let merged = std::fs::read_dir(cache2.join("features")).unwrap().flatten().next().unwrap().path();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(merged.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["complete"], true);
    assert_eq!(m["shards"].as_array().unwrap().len(), 4);

    drop(cluster);
    for f in ["slurmd.pid", "slurmctld.pid", "munged.pid"] {
        assert!(!tmp.path().join("slurm").join(f).exists(), "{f} left behind: a daemon was not stopped");
    }
}
