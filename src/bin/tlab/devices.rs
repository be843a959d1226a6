//! `tlab extract --devices A,B,...`: one worker process per device, each this binary with
//! `--shard K/N --device D`, sharing the cache folder as any other workers do
//! (`transfer_lab::features::shards`); the last to finish writes the manifest. Processes, not
//! threads: each worker owns its device and its libtorch thread pool, and a failed or
//! killed worker costs only its shard in progress.
use anyhow::{bail, Context, Result};
use std::io::BufRead;
use std::process::{Command, Stdio};

/// Arguments of ours the workers must not inherit: each gets its own.
const OWN: [(&str, bool); 6] = [
    ("--devices", true),
    ("--device", true),
    ("--threads", true),
    ("--shard", true),
    ("--shards", true),
    ("--dash", false),
];

/// This command's arguments without `OWN` ones (`--x V` and `--x=V` forms).
fn worker_args(args: &[String]) -> Vec<String> {
    let mut out = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match OWN.iter().find(|(name, _)| a == name || a.starts_with(&format!("{name}="))) {
            Some((name, true)) if a == name => {
                it.next();
            }
            Some(_) => {}
            None => out.push(a.clone()),
        }
    }
    out
}

/// Intra-op threads per worker: `--threads` if given, else the cores split evenly.
fn threads_each(devices: &[String], threads: Option<i32>) -> i32 {
    threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / devices.len()).max(1) as i32
    })
}

/// Runs the workers to the end, their output prefixed by device; an error naming each that
/// failed. The caller's own extraction afterwards is then a cache hit.
pub(crate) fn extract_on_devices(devices: &[String], threads: Option<i32>) -> Result<()> {
    let exe = std::env::current_exe().context("finding the tlab binary to start workers")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = worker_args(&args);
    let n = devices.len();
    let each = threads_each(devices, threads);
    eprintln!("extract: {n} workers ({}), {each} thread(s) each", devices.join(", "));
    let mut running = vec![];
    for (k, dev) in devices.iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.args(&base)
            .args(["--shard", &format!("{k}/{n}"), "--device", dev, "--threads", &each.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for v in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX"] {
            cmd.env_remove(v);
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // A worker ends with us (a scheduler's SIGKILL of this process included).
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().with_context(|| format!("starting worker {k}/{n} on {dev}"))?;
        let err = child.stderr.take().expect("piped");
        let tag = format!("[{dev} {k}/{n}]");
        let echo = std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(|l| l.ok()) {
                eprintln!("{tag} {line}");
            }
        });
        running.push((k, dev.clone(), child, echo));
    }
    let mut failed = vec![];
    for (k, dev, mut child, echo) in running {
        let status = child.wait().with_context(|| format!("waiting for worker {k}/{n} on {dev}"))?;
        let _ = echo.join();
        if !status.success() {
            failed.push(format!("worker {k}/{n} on {dev} ({status})"));
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {n} workers failed: {}; the shards they finished are kept: run the same command again to \
             compute the rest",
            failed.len(),
            failed.join(", ")
        );
    }
    eprintln!("extract: all {n} workers finished");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_their_own_device_threads_and_part() {
        let args: Vec<String> =
            "extract --devices cpu,cpu --dataset synthetic --device=cpu --threads 2 --size 32 --dash"
                .split_whitespace()
                .map(String::from)
                .collect();
        assert_eq!(worker_args(&args), ["extract", "--dataset", "synthetic", "--size", "32"]);
        let two = ["cpu".to_string(), "cpu".to_string()];
        assert_eq!(threads_each(&two, Some(3)), 3);
        assert!(threads_each(&two, None) >= 1);
    }
}
