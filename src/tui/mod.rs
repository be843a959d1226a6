//! Live dashboard of a run, built from its `events.jsonl` alone.
//!
//! `tlab dash [RUN_DIR]` tails a run from any terminal (over ssh, on a shared
//! filesystem), and `tlab dash FEATURE_FOLDER` watches a sharded extraction ([`board`]); `tlab run --dash` runs the pipeline on a thread and shows the same
//! dashboard on this one. Without a terminal on stdout it prints plain lines instead.
//! The run is never touched except through one file: `s` writes `STOP` into the run
//! directory ([`RunDir::request_stop`]), and the training loop checks for it.
//!
//! Shape: [`state`] (pure, events -> `DashState`), [`app`] (UI state and keys),
//! [`keys`] (the key table), `view`/`panels` (`impl Widget for &App`), `term` (the
//! terminal loop), [`input`] (the keyboard and signals), [`tail`] (reader).
pub mod app;
pub mod board;
pub mod device;
mod fmt;
pub mod input;
pub mod keys;
mod panels;
pub mod plain;
pub mod progress;
pub mod series;
pub mod state;
pub mod tail;
mod term;
mod view;

pub use app::App;
pub use state::DashState;

use crate::rundir::RunDir;
use crate::{Error, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The TUI when stdout is a terminal, plain lines otherwise.
    #[default]
    Auto,
    Tui,
    Plain,
}

#[derive(Debug, Clone)]
pub struct DashOptions {
    pub mode: Mode,
    /// The run's process, for the device panel; `None` when tailing from elsewhere
    /// (then a `pid` file in the run directory is used if present).
    pub pid: Option<u32>,
    /// Redraw cap.
    pub fps: u32,
    /// Plain mode: keep following until the run ends (`false`: print what is there).
    pub follow: bool,
}

impl Default for DashOptions {
    fn default() -> Self {
        DashOptions { mode: Mode::Auto, pid: None, fps: 10, follow: true }
    }
}

/// Why the dashboard returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashExit {
    /// The user left (`q`, Esc, Ctrl-C); the run goes on. `stop_requested`: a `STOP`
    /// file is in the run directory.
    Quit { stop_requested: bool },
    /// Plain mode: the run finished or failed (or `follow` was off).
    RunEnded(state::RunStatus),
    /// Stdout went away (plain mode), or a panic took the terminal.
    Closed,
    /// The terminal went away (hang-up, end of input): the dashboard let go of it, and
    /// stdout and stderr now go nowhere. Work in this process goes on.
    Detached,
    /// SIGINT, SIGTERM (or SIGHUP with nothing to detach) came: the caller stops its work
    /// and ends by the signal.
    Signalled,
}

/// Where a run's files are.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub dir: RunDir,
    /// The run's `events.jsonl`, or the file `tlab extract --events` named.
    pub events: PathBuf,
}

impl RunFiles {
    /// `path` is a run directory, or an events file (as `tlab extract --events` writes).
    pub fn locate(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("run directory `{}` cannot be read", path.display()), e))?;
        if meta.is_dir() {
            let dir = RunDir::at(path);
            return Ok(RunFiles { events: dir.events(), dir });
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Ok(RunFiles { dir: RunDir::at(dir), events: path.to_path_buf() })
    }
}

/// Shows the dashboard for the run in `run_dir` until the user leaves (TUI) or the run
/// ends (plain). Blocks; call it on the main thread while the run works on another.
/// A feature-cache folder gets the sharded extraction's board instead.
pub fn run_dashboard(run_dir: &Path, opts: DashOptions) -> Result<DashExit> {
    let tui = match opts.mode {
        Mode::Auto => std::io::stdout().is_terminal(),
        Mode::Tui => true,
        Mode::Plain => false,
    };
    if board::is_feature_folder(run_dir) {
        return if tui { term::run_board(run_dir, &opts) } else { board::run_plain(run_dir, &opts) };
    }
    let files = RunFiles::locate(run_dir)?;
    if tui {
        term::run(&files, &opts)
    } else {
        plain::run(&files, &opts)
    }
}

/// The events file went away under the dashboard: said, naming what is missing.
fn gone(files: &RunFiles) -> Error {
    let what = if files.dir.path().exists() {
        format!("{} was deleted", files.events.display())
    } else {
        format!("run folder {} was deleted (or moved)", files.dir.path().display())
    };
    Error::invalid("run", format!("{what} while the dashboard followed it"))
}

/// `tlab dash [RUN_DIR]`: `run_dir`, or the newest run under `runs_root`.
pub fn dash(run_dir: Option<&Path>, runs_root: &Path, opts: DashOptions) -> Result<DashExit> {
    let dir = match run_dir {
        Some(d) => d.to_path_buf(),
        None => newest_run(runs_root)?,
    };
    run_dashboard(&dir, opts)
}

/// The newest run directory: run names start with their UTC start time, so the
/// greatest name is the newest.
pub fn newest_run(runs_root: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(runs_root)
        .map_err(|e| Error::io(format!("runs folder `{}` cannot be read (pass RUN_DIR)", runs_root.display()), e))?;
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .max()
        .ok_or_else(|| {
            Error::invalid(
                "runs folder",
                format!("no run directories in `{}`; start one with `tlab run`", runs_root.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_run_directory_is_named() {
        let err = RunFiles::locate(Path::new("runs/does-not-exist")).unwrap_err().to_string();
        assert!(err.contains("runs/does-not-exist"), "{err}");
        let err = newest_run(Path::new("no-such-runs")).unwrap_err().to_string();
        assert!(err.contains("no-such-runs"), "{err}");
    }

    #[test]
    fn newest_run_and_stop_file() {
        let root = tempfile::tempdir().unwrap();
        for d in ["20260101-000000-a", "20260102-000000-b", "20251231-235959-c"] {
            std::fs::create_dir(root.path().join(d)).unwrap();
        }
        let newest = newest_run(root.path()).unwrap();
        assert!(newest.ends_with("20260102-000000-b"));
        let run = RunDir::at(&newest);
        assert!(!run.stop_requested());
        run.request_stop("a test").unwrap();
        assert!(run.stop_requested());
        let files = RunFiles::locate(&newest.join(crate::rundir::STOP)).unwrap();
        assert_eq!(files.dir.path(), newest);
        let files = RunFiles::locate(&newest).unwrap();
        assert_eq!(files.events, newest.join(crate::rundir::EVENTS));
    }
}
