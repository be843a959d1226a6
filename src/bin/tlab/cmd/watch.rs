//! `--dash` on `run` and `extract`: the job on a worker thread, its dashboard on this one.
use anyhow::Result;
use transfer_lab::rundir::RunDir;
use transfer_lab::tui::{DashExit, DashOptions};

/// `job` runs on a worker thread, writing `dir`'s events.jsonl, and the dashboard tails
/// that file on this thread, by the same code path as `tlab dash`. Leaving the dashboard,
/// or losing its terminal, lets the job finish; a signal stops it (the job sees the
/// signal itself and stops cleanly).
pub(crate) fn beside_dashboard<T: Send + 'static>(
    dir: RunDir,
    job: impl FnOnce(&RunDir) -> transfer_lab::Result<T> + Send + 'static,
) -> Result<T> {
    let d = dir.clone();
    let worker = std::thread::spawn(move || job(&d));
    let opts = DashOptions { pid: Some(std::process::id()), ..Default::default() };
    match transfer_lab::tui::run_dashboard(dir.path(), opts) {
        // Output goes nowhere now; the job finishes and the process exits with it.
        Ok(DashExit::Detached | DashExit::Signalled) => {}
        Ok(_) if worker.is_finished() => {}
        Ok(_) => {
            eprintln!("dashboard closed; the job goes on in {} (follow it with `tlab dash`)", dir.path().display())
        }
        // A broken dashboard must not take the job down with it.
        Err(e) => eprintln!("dashboard failed ({e}); the job goes on in {}", dir.path().display()),
    }
    Ok(worker.join().map_err(|_| anyhow::anyhow!("the job's thread panicked"))??)
}
