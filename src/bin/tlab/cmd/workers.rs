//! `tlab extract --devices A,B,...`: one worker process per device, each this binary with
//! `--shard K/N` and the parent's settings (its parsed and built `RunConfig`, the device
//! set), sharing the cache folder as any other workers do (`transfer_lab::features::shards`); the
//! last to finish writes the manifest. Processes, not threads: each worker owns its device
//! and its libtorch thread pool, and a failed or killed worker costs only its shard in
//! progress.
use super::extract::SplitArg;
use super::Ctx;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use std::io::BufRead;
use std::process::{Command, Stdio};
use transfer_lab::device::DeviceChoice;
use transfer_lab::run::RunConfig;

/// Intra-op threads per worker: `--threads` if given, else the cores split evenly.
fn threads_each(devices: &[DeviceChoice], threads: Option<i32>) -> i32 {
    threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / devices.len()).max(1) as i32
    })
}

/// Runs the workers to the end, their output prefixed by device; an error naming each that
/// failed. The caller's own extraction afterwards is then a cache hit.
pub(crate) fn extract_on_devices(cfg: &RunConfig, split: SplitArg, devices: &[DeviceChoice], ctx: &Ctx) -> Result<()> {
    let exe = std::env::current_exe().context("finding the tlab binary to start workers")?;
    let n = devices.len();
    let each = threads_each(devices, ctx.threads);
    let names: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    eprintln!("extract: {n} workers ({}), {each} thread(s) each", names.join(", "));
    let split = split.to_possible_value().expect("no skipped values").get_name().to_string();
    let mut running = vec![];
    for (k, &dev) in devices.iter().enumerate() {
        let worker = serde_json::to_string(&RunConfig { device: dev, ..cfg.clone() })?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--cache-dir")
            .arg(ctx.cache.root())
            .args(["--threads", &each.to_string(), "extract", "--worker-config", &worker])
            .args(["--split", &split, "--shard", &format!("{k}/{n}")])
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
        running.push((k, dev, child, echo));
    }
    // A stop for this process alone (a scheduler's SIGTERM, a hang-up) is passed on, so
    // each worker stops cleanly too; Ctrl-C in a terminal reaches them all directly.
    let pids: Vec<libc::pid_t> = running.iter().map(|(_, _, c, _)| c.id() as libc::pid_t).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    std::thread::spawn(move || {
        while !transfer_lab::interrupt::wait(std::time::Duration::from_secs(3600)) {}
        if !finished.load(std::sync::atomic::Ordering::SeqCst) {
            for pid in pids {
                // SAFETY: signals our own children, not yet waited for.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    });
    let mut failed = vec![];
    for (k, dev, mut child, echo) in running {
        let status = child.wait().with_context(|| format!("waiting for worker {k}/{n} on {dev}"))?;
        let _ = echo.join();
        if !status.success() {
            failed.push(format!("worker {k}/{n} on {dev} ({status})"));
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    transfer_lab::interrupt::check(|| {
        "the workers stopped; the shards they finished are kept: run the same command again to compute the rest".into()
    })?;
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
    fn threads_are_split_among_workers_unless_given() {
        let two = [DeviceChoice::Cpu, DeviceChoice::Cpu];
        assert_eq!(threads_each(&two, Some(3)), 3);
        assert!(threads_each(&two, None) >= 1);
    }
}
