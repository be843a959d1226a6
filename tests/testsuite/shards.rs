//! One extraction shared among workers (`tlab extract --shard K/N`, scheduler
//! environments, `--merge`, `--status`) and among processes that ask for the same
//! features at once: the merged cache is byte for byte the one-process cache.
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tlab(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tlab"));
    // One thread each: workers in parallel on 2 cores would otherwise slow each other 3-25x.
    c.args(["--threads", "1", "--cache-dir"]).arg(cache);
    for v in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX"] {
        c.env_remove(v);
    }
    c
}

/// 200 synthetic images in shards of 32: 7 shards, the last one short.
const ARGS: &str = "extract --dataset synthetic --synthetic-train 200 --synthetic-test 10 --arch resnet18 \
                    --weights random --size 32 --batch-size 16 --shard-size 32 --split train";

fn extract(cache: &Path, extra: &[&str]) -> (bool, String) {
    let out = tlab(cache).args(ARGS.split_whitespace()).args(extra).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// The one cache folder under `cache` and its files (name -> bytes).
fn folder(cache: &Path) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let dir = std::fs::read_dir(cache.join("features")).unwrap().flatten().next().unwrap().path();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    (dir, files)
}

fn names(files: &[(String, Vec<u8>)]) -> Vec<&str> {
    files.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn three_parts_merge_into_the_one_process_cache_byte_for_byte() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (one, shared) = (tmp.path().join("one"), tmp.path().join("shared"));
    let (ok, log) = extract(&one, &[]);
    assert!(ok, "{log}");
    let (_, want) = folder(&one);
    assert!(names(&want).contains(&"manifest.json") && names(&want).contains(&"shard-00006.safetensors"));

    // Parts 0 and 1 of 3: no manifest yet, and the merge names what is missing.
    for k in ["0/3", "1/3"] {
        let (ok, log) = extract(&shared, &["--shard", k]);
        assert!(ok && log.contains(&format!("part {k}")), "{log}");
    }
    let (dir, files) = folder(&shared);
    assert!(!dir.join("manifest.json").exists(), "{:?}", names(&files));
    let (ok, log) = extract(&shared, &["--merge", "--shards", "3"]);
    assert!(!ok && log.contains("2 of 7 shards are not done: 2 (part 2/3), 5 (part 2/3)"), "{log}");
    let (ok, log) = extract(&shared, &["--status"]);
    assert!(ok && log.contains("5 of 7 shards done") && log.contains("part 0/3: done"), "{log}");
    assert!(log.contains("part 1/3: done") && log.contains("not started: 2 shard(s)"), "{log}");

    // The last part, from the scheduler's environment (Slurm array task 7 of 5..7), merges.
    let out = tlab(&shared)
        .args(ARGS.split_whitespace())
        .env("SLURM_ARRAY_TASK_ID", "7")
        .env("SLURM_ARRAY_TASK_MIN", "5")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("worker 2/3"), "{log}");
    let (_, got) = folder(&shared);
    assert_eq!(names(&got), names(&want));
    for ((name, a), (_, b)) in got.iter().zip(&want) {
        assert!(a == b, "{name} differs from the one-process extraction");
    }
    // A rerun of any part is a cache hit.
    let (ok, log) = extract(&shared, &["--shard", "1/3"]);
    assert!(ok && log.contains("cache hit"), "{log}");
}

#[test]
fn bad_parts_and_foreign_records_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["3/2", "0/0", "x/3"] {
        let (ok, log) = extract(tmp.path(), &["--shard", bad]);
        assert!(!ok && log.contains(bad) && log.contains("--shard"), "{bad}: {log}");
    }
    let out = tlab(tmp.path())
        .args(ARGS.split_whitespace())
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && log.contains("task 5") && log.contains("of 4"), "{log}");
    let out = tlab(tmp.path()).args(ARGS.split_whitespace()).env("JOB_COMPLETION_INDEX", "1").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shards"));

    // A part record of another extraction copied into the folder is refused, named.
    let _g = torch_lock();
    let (ok, log) = extract(tmp.path(), &["--shard", "0/2"]);
    assert!(ok, "{log}");
    let (dir, _) = folder(tmp.path());
    let foreign = r#"{"key":"0123456789abcdef","part":{"k":1,"n":2},"shards":[1,3],"done":true}"#;
    std::fs::write(dir.join("part-1-of-2.json"), foreign).unwrap();
    let (ok, log) = extract(tmp.path(), &["--status"]);
    assert!(!ok && log.contains("part-1-of-2.json") && log.contains("0123456789abcdef"), "{log}");
}

#[test]
fn two_processes_on_one_key_share_the_work_and_survive_a_kill() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (one, both) = (tmp.path().join("one"), tmp.path().join("both"));
    let (ok, log) = extract(&one, &[]);
    assert!(ok, "{log}");
    let (_, want) = folder(&one);

    // Two whole extractions of the same key started together (two notebooks, two
    // terminals): each claims shards the other does not hold.
    let spawn =
        || tlab(&both).args(ARGS.split_whitespace()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let (_, got) = folder(&both);
    assert!(got == want, "two processes together differ from one: {:?}", names(&got));

    // Again with one of them killed midway: the other takes over its shard when it sees the
    // claim's process gone, and the cache is still the one-process cache.
    let again = tmp.path().join("again");
    let mut victim =
        tlab(&again).args(ARGS.split_whitespace()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t = std::time::Instant::now();
    while !std::fs::read_dir(again.join("features")).into_iter().flatten().flatten().any(|d| {
        std::fs::read_dir(d.path())
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| f.file_name().to_string_lossy().ends_with(".claim"))
    }) {
        assert!(t.elapsed().as_secs() < 120, "no claim appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let survivor =
        tlab(&again).args(ARGS.split_whitespace()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    victim.kill().unwrap();
    victim.wait().unwrap();
    let out = survivor.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, got) = folder(&again);
    assert!(got == want, "after a kill: {:?}", names(&got));
}

/// The deploy files: the Kubernetes Indexed Job parses and carries what an Indexed Job
/// needs (no cluster here: this is the check that is possible offline); the Slurm scripts
/// parse, and the array task requeues.
#[test]
fn the_deploy_files_hold_what_their_schedulers_need() {
    let text = std::fs::read_to_string(root().join("deploy/k8s/extract-job.yaml")).unwrap();
    let job: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(job["kind"].as_str(), Some("Job"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    assert!(spec["backoffLimitPerIndex"].as_u64().is_some(), "a failed index is retried alone");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"), "backoffLimitPerIndex needs restartPolicy Never");
    let container = &pod["containers"][0];
    let cmd: Vec<&str> = container["command"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let after = |flag: &str| cmd.iter().position(|c| *c == flag).map(|i| cmd[i + 1]);
    assert_eq!(
        after("--shards").and_then(|n| n.parse::<u64>().ok()),
        spec["completions"].as_u64(),
        "--shards N is the Job's completions"
    );
    let cache = after("--cache-dir").unwrap();
    let mount = &container["volumeMounts"][0];
    assert_eq!(mount["mountPath"].as_str(), Some(cache), "the cache is on the mounted volume");
    let volume = mount["name"].as_str().unwrap();
    assert!(pod["volumes"].as_sequence().unwrap().iter().any(|v| v["name"].as_str() == Some(volume)));

    for script in ["deploy/slurm/extract.sbatch", "deploy/slurm/submit.sh"] {
        let out = Command::new("bash").arg("-n").arg(root().join(script)).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let sbatch = std::fs::read_to_string(root().join("deploy/slurm/extract.sbatch")).unwrap();
    assert!(sbatch.contains("#SBATCH --requeue") && sbatch.contains("SLURM_ARRAY_TASK_ID"));
    let submit = std::fs::read_to_string(root().join("deploy/slurm/submit.sh")).unwrap();
    assert!(submit.contains("--dependency=\"afterok:$jid\"") && submit.contains("--merge --shards $n"));
}

/// `--devices cpu,cpu`: two worker processes of one thread each, merged, byte for byte the
/// one-process cache; `tlab dash FOLDER` follows a two-part extraction to its end.
#[test]
fn devices_and_the_folder_dashboard() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let (ok, log) = extract(&one, &[]);
    assert!(ok, "{log}");
    let (_, want) = folder(&one);
    // No --threads: the workers split the cores.
    let out = Command::new(env!("CARGO_BIN_EXE_tlab"))
        .arg("--cache-dir")
        .arg(&two)
        .args(ARGS.split_whitespace())
        .args(["--devices", "cpu,cpu"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let each = (std::thread::available_parallelism().unwrap().get() / 2).max(1);
    assert!(log.contains(&format!("2 workers (cpu, cpu), {each} thread(s) each")), "{log}");
    assert!(
        log.contains("[cpu 0/2] part 0/2: 4 of the 7 shards") && log.contains("[cpu 1/2] part 1/2: 3 of the 7"),
        "{log}"
    );
    assert!(log.contains("all 2 workers finished") && log.contains("cache hit"), "{log}");
    let (dir, got) = folder(&two);
    assert!(got == want, "--devices cpu,cpu differs from one process: {:?}", names(&got));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), dir.display().to_string());
    let out = tlab(&two).args(ARGS.split_whitespace()).args(["--devices", "cpu,gpu"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("gpu"));

    // The folder dashboard, plain, started between two parts, ends when the second merges.
    let three = tmp.path().join("three");
    let (ok, log) = extract(&three, &["--shard", "0/2"]);
    assert!(ok, "{log}");
    let (dir, _) = folder(&three);
    let out = tlab(&three).arg("dash").arg(&dir).arg("--once").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("train: 4 of 7 shards, 104 of 200 images (52.0%), 0 running"), "{text}");
    assert!(text.contains("shards: #.#.#.#") && text.contains("no worker is computing"), "{text}");
    let watcher = tlab(&three).arg("dash").arg(&dir).arg("--plain").stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (ok, log) = extract(&three, &["--shard", "1/2"]);
    assert!(ok, "{log}");
    let out = watcher.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .ends_with("train: 7 of 7 shards, 200 of 200 images (100.0%), complete (manifest written)"),
        "{text}"
    );
}

/// SIGTERM to the parent of `--devices` alone (as a scheduler sends it) stops every
/// worker cleanly: the parent exits 143 saying what is kept, and no worker is left.
#[test]
#[cfg(target_os = "linux")]
fn sigterm_to_the_devices_parent_stops_its_workers() {
    use std::io::BufRead;
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = tlab(tmp.path())
        .args(ARGS.replace("--synthetic-train 200", "--synthetic-train 4000").split_whitespace())
        .args(["--devices", "cpu,cpu"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines().map_while(|l| l.ok());
    let mut log = String::new();
    // Both workers have started computing once each names its share.
    for line in lines.by_ref() {
        log += &line;
        log.push('\n');
        if log.contains("[cpu 0/2] part 0/2") && log.contains("[cpu 1/2] part 1/2") {
            break;
        }
    }
    let workers: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')').is_some_and(|(_, r)| r.split_whitespace().nth(1) == Some(&child.id().to_string()))
            })
        })
        .collect();
    assert_eq!(workers.len(), 2, "two workers under the parent: {workers:?}\n{log}");
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    log.extend(lines.map(|l| l + "\n"));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(log.contains("interrupted by SIGTERM") && log.contains("the shards they finished are kept"), "{log}");
    for pid in workers {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "worker {pid} outlived its parent\n{log}");
    }
    // Stopped early, not after the workers ran to the end.
    let (_, files) = folder(tmp.path());
    assert!(!files.iter().any(|(n, _)| n == "manifest.json"), "the extraction ran to the end\n{log}");
}
