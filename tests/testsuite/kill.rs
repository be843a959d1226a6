//! Kill trials: `tlab run` (linear probe), `tlab train` (fine-tune, a ResNet and a ConvNeXt) and `tlab extract`
//! killed with SIGKILL at seeded random moments, resumed, and compared byte for byte with
//! an uninterrupted run. CI runs `TLAB_KILL_TRIALS` (default 3) of each; on demand:
//! `scripts/kill-trials.sh [N] [SEED]` (default 20), which prints "N of N identical" per kind.
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn trials() -> usize {
    std::env::var("TLAB_KILL_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

fn seed() -> u64 {
    std::env::var("TLAB_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// A small seeded generator (splitmix64): the kill moments of a seed are reproducible.
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn tlab(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tlab"));
    c.arg("--threads").arg(test_threads().to_string()).arg("--cache-dir").arg(cache);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

fn ok(mut c: Command, what: &str) {
    let out = c.stderr(Stdio::piped()).output().unwrap();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every file under `dir` (relative paths, sorted) but the logs and temp files that are
/// allowed to differ between a killed run and an uninterrupted one.
fn files(dir: &Path, skip: &[&str]) -> Vec<PathBuf> {
    let keep = |rel: &PathBuf| !skip.contains(&rel.file_name().unwrap().to_string_lossy().as_ref());
    files_under(dir).into_iter().filter(keep).collect()
}

/// Names the files that differ; empty when the trees are identical.
fn differences(want: &Path, got: &Path, skip: &[&str]) -> Vec<String> {
    let (a, b) = (files(want, skip), files(got, skip));
    if a != b {
        return vec![format!("file lists differ: {a:?} vs {b:?}")];
    }
    a.iter()
        .filter(|f| std::fs::read(want.join(f)).unwrap() != std::fs::read(got.join(f)).unwrap())
        .map(|f| f.display().to_string())
        .collect()
}

/// The one run directory under `runs`, if the run got as far as creating it.
fn run_dir(runs: &Path) -> Option<PathBuf> {
    std::fs::read_dir(runs).ok()?.flatten().map(|e| e.path()).find(|p| p.is_dir())
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `tlab run --strategy linear-probe`, resumed by `train --resume` + `evaluate`.
    RunLinearProbe,
    /// `tlab train --strategy fine-tune`, resumed by `train --resume`.
    TrainFineTune,
    /// `tlab extract`, resumed by running it again.
    Extract,
    /// `tlab run --strategy logreg` (the lambda sweep), resumed by `train --resume` + `evaluate`.
    RunLogreg,
    /// [`Kind::TrainFineTune`] of a ConvNeXt (LayerNorm, layer scale, stochastic depth).
    TrainFineTuneConvnext,
    /// [`Kind::TrainFineTune`] of DINOv2 ViT-S/14 (its last blocks, layer-wise decay).
    TrainFineTuneDinov2,
}

impl Kind {
    fn args(self) -> Vec<&'static str> {
        let arch = match self {
            Kind::TrainFineTuneConvnext => "convnext-tiny",
            Kind::TrainFineTuneDinov2 => "dinov2-vits14",
            _ => "resnet18",
        };
        // A ViT's input tiles into patches of 14.
        let size = if let Kind::TrainFineTuneDinov2 = self { "28" } else { "32" };
        let common = ["--dataset", "synthetic", "--arch", arch, "--weights", "random"];
        let own: &[&str] = match self {
            Kind::RunLinearProbe => &[
                "run",
                "--strategy",
                "linear-probe",
                "--synthetic-train",
                "1000",
                "--synthetic-test",
                "200",
                "--size",
                "32",
                "--epochs",
                "40",
            ],
            Kind::TrainFineTune | Kind::TrainFineTuneConvnext | Kind::TrainFineTuneDinov2 => &[
                "train",
                "--strategy",
                "fine-tune",
                "--synthetic-train",
                "160",
                "--synthetic-test",
                "32",
                "--epochs",
                "2",
                "--image-epochs",
                "3",
                "--checkpoint-every",
                "2",
            ],
            Kind::Extract => {
                &["extract", "--synthetic-train", "384", "--size", "64", "--shard-size", "32", "--split", "train"]
            }
            Kind::RunLogreg => &[
                "run",
                "--strategy",
                "logreg",
                "--synthetic-train",
                "1000",
                "--synthetic-test",
                "200",
                "--synthetic-difficulty",
                "hard",
                "--size",
                "32",
                "--tol",
                "1e-6",
            ],
        };
        let sized = matches!(self, Kind::TrainFineTune | Kind::TrainFineTuneConvnext | Kind::TrainFineTuneDinov2);
        let size: &[&str] = if sized { &["--size", size] } else { &[] };
        own.iter().chain(size).chain(common.iter()).copied().collect()
    }

    /// Where the command writes, for `root` (a runs folder, or the cache for extract).
    fn start(self, cache: &Path, root: &Path) -> Command {
        let mut c = tlab(cache);
        c.args(self.args());
        if !matches!(self, Kind::Extract) {
            c.arg("--runs-dir").arg(root).args(["--name", "trial"]);
        }
        c
    }

    /// Finishes what a killed command left; returns the tree to compare.
    fn resume(self, cache: &Path, root: &Path) -> PathBuf {
        if let Kind::Extract = self {
            ok(self.start(cache, root), "extract again");
            return cache.join("features");
        }
        match run_dir(root) {
            Some(dir) if dir.join("config.json").exists() => {
                let mut c = tlab(cache);
                c.args(["train", "--resume"]).arg(&dir);
                ok(c, "train --resume");
                if let Kind::RunLinearProbe | Kind::RunLogreg = self {
                    let mut c = tlab(cache);
                    c.arg("evaluate").arg(&dir);
                    ok(c, "evaluate");
                }
                dir
            }
            // Killed before the run recorded its settings: nothing to resume, start again.
            other => {
                if let Some(d) = other {
                    std::fs::remove_dir_all(d).unwrap();
                }
                ok(self.start(cache, root), "a fresh start");
                run_dir(root).unwrap()
            }
        }
    }

    /// Logs, the pid, and files that name the run's own folder.
    fn skip(self) -> &'static [&'static str] {
        match self {
            Kind::Extract => &[],
            _ => &["events.jsonl", "pid", "config.json", "summary.json", "features.json", "timings.json"],
        }
    }
}

/// Runs `n` kill trials of `kind`; returns how many ended identical to the reference.
fn kill_trials(kind: Kind, n: usize, seed: u64) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    // Train kinds share one cache, warmed by the reference; extract gets a cache a trial.
    let shared = tmp.path().join("cache");
    let ref_root = tmp.path().join("reference");
    let ref_cache = if let Kind::Extract = kind { ref_root.clone() } else { shared.clone() };
    let t = Instant::now();
    ok(kind.start(&ref_cache, &ref_root), "the uninterrupted run");
    let want = if let Kind::Extract = kind { ref_root.join("features") } else { run_dir(&ref_root).unwrap() };
    let mut took = t.elapsed();
    if !matches!(kind, Kind::Extract) {
        // The reference also filled the cache; time a run that finds it, as the trials do.
        let again = tmp.path().join("timing");
        let t = Instant::now();
        ok(kind.start(&shared, &again), "a timing run");
        took = t.elapsed();
    }
    let mut rng = Rng(seed ^ kind as u64);
    let mut identical = 0;
    for i in 0..n {
        let root = tmp.path().join(format!("trial-{i}"));
        let cache = if let Kind::Extract = kind { root.clone() } else { shared.clone() };
        let at = Duration::from_secs_f64(took.as_secs_f64() * (0.05 + 0.9 * rng.unit()));
        let mut child = kind.start(&cache, &root).spawn().unwrap();
        std::thread::sleep(at);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = kind.resume(&cache, &root);
        let diff = differences(&want, &got, kind.skip());
        let leftovers: Vec<_> = files(&got, &[]).into_iter().filter(|f| f.to_string_lossy().contains(".tmp")).collect();
        let same = diff.is_empty() && leftovers.is_empty();
        println!(
            "{kind:?} trial {i}: killed at {:.2} s of {:.2} s{}: {}",
            at.as_secs_f64(),
            took.as_secs_f64(),
            if finished { " (it had already finished)" } else { "" },
            if same { "identical".to_string() } else { format!("DIFFERS {diff:?}, leftovers {leftovers:?}") }
        );
        identical += same as usize;
    }
    println!("kill trials, {kind:?}: {identical} of {n} identical");
    identical
}

#[test]
fn runs_killed_at_random_moments_resume_to_identical_files() {
    let _g = torch_lock();
    let n = trials();
    for kind in [
        Kind::RunLinearProbe,
        Kind::TrainFineTune,
        Kind::Extract,
        Kind::RunLogreg,
        Kind::TrainFineTuneConvnext,
        Kind::TrainFineTuneDinov2,
    ] {
        assert_eq!(kill_trials(kind, n, seed()), n, "{kind:?}: see the trials above");
    }
}

/// Waits until `ready` holds (polling), at most a minute.
fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let t = Instant::now();
    while !ready() {
        assert!(t.elapsed() < Duration::from_secs(60), "never saw {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to the child; returns its exit status and stderr.
fn signal(mut child: std::process::Child, sig: i32) -> (Option<i32>, String) {
    // SAFETY: a plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    let out = std::mem::take(&mut child.stderr).unwrap();
    let status = child.wait().unwrap();
    (status.code(), std::io::read_to_string(out).unwrap())
}

#[test]
fn sigterm_and_ctrl_c_stop_cleanly_say_how_to_resume_and_resume_identically() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    // Training: SIGTERM once steps are under way.
    let kind = Kind::TrainFineTune;
    let cache = tmp.path().join("cache");
    let (reference, runs) = (tmp.path().join("reference"), tmp.path().join("runs"));
    ok(kind.start(&cache, &reference), "the uninterrupted run");
    let child = kind.start(&cache, &runs).stderr(Stdio::piped()).spawn().unwrap();
    let stepping = || {
        run_dir(&runs).is_some_and(|d| {
            let events = std::fs::read_to_string(d.join("events.jsonl")).unwrap_or_default();
            events.matches("\"kind\":\"step_finished\"").count() >= 3 && events.contains("\"stage\":\"train\"")
        })
    };
    wait_for("training steps", stepping);
    let (code, log) = signal(child, libc::SIGTERM);
    assert_eq!(code, Some(128 + libc::SIGTERM), "{log}");
    let dir = run_dir(&runs).unwrap();
    let hint = format!("resume with `tlab train --resume {}`", dir.display());
    assert!(log.contains("interrupted by SIGTERM") && log.contains(&hint), "{log}");
    assert!(log.contains("checkpoint saved after") || log.contains("stopped before the"), "{log}");
    let got = kind.resume(&cache, &runs);
    let diff = differences(&run_dir(&reference).unwrap(), &got, kind.skip());
    assert!(diff.is_empty(), "training stopped by SIGTERM, then resumed: {diff:?}");

    // Extraction: Ctrl-C once a shard is written.
    let kind = Kind::Extract;
    let (reference, cache) = (tmp.path().join("x-reference"), tmp.path().join("x-cache"));
    ok(kind.start(&reference, &reference), "the uninterrupted extraction");
    let child = kind.start(&cache, &cache).stderr(Stdio::piped()).spawn().unwrap();
    let a_shard = || {
        std::fs::read_dir(cache.join("features"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| d.path().join("shard-00000.done.json").is_file())
    };
    wait_for("a shard", a_shard);
    let (code, log) = signal(child, libc::SIGINT);
    assert_eq!(code, Some(128 + libc::SIGINT), "{log}");
    assert!(log.contains("interrupted by Ctrl-C (SIGINT)") && log.contains("run the same command again"), "{log}");
    let got = kind.resume(&cache, &cache);
    let diff = differences(&reference.join("features"), &got, kind.skip());
    assert!(diff.is_empty(), "extraction stopped by Ctrl-C, then rerun: {diff:?}");
}
