//! Live dashboard of a run, built from its `events.jsonl` alone.
//!
//! `tlab dash [RUN_DIR]` tails a run from any terminal (over ssh, on a shared
//! filesystem); `tlab run --dash` runs the pipeline on a thread and shows the same
//! dashboard on this one. Without a terminal on stdout it prints plain lines instead.
//! The run is never touched except through one file: `s` writes `STOP` into the run
//! directory, and the training loop checks for it ([`stop_requested`]).
//!
//! Shape: [`state`] (pure, events -> `DashState`), [`app`] (UI state and keys),
//! `view`/`panels` (`impl Widget for &App`), `term` (terminal loop), [`tail`] (reader).
pub mod app;
pub mod device;
mod fmt;
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

use crate::{Error, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The file that asks a run to stop gracefully.
pub const STOP_FILE: &str = "STOP";
pub const EVENTS_FILE: &str = "events.jsonl";

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
    /// Set by the caller to close the dashboard (e.g. when an in-process run ended and
    /// the caller wants its terminal back). The run itself is not affected.
    pub close: Option<Arc<AtomicBool>>,
    /// Redraw cap.
    pub fps: u32,
    /// Plain mode: keep following until the run ends (`false`: print what is there).
    pub follow: bool,
}

impl Default for DashOptions {
    fn default() -> Self {
        DashOptions { mode: Mode::Auto, pid: None, close: None, fps: 10, follow: true }
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
    /// `DashOptions::close` was set, stdout went away, or a panic took the terminal.
    Closed,
}

/// Where a run's files are.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub dir: PathBuf,
    pub events: PathBuf,
    pub stop: PathBuf,
}

impl RunFiles {
    /// `path` is a run directory, or an events file (as `tlab extract --events` writes).
    pub fn locate(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::invalid("run directory", format!("`{}` cannot be read: {e}", path.display())))?;
        let (dir, events) = if meta.is_dir() {
            (path.to_path_buf(), path.join(EVENTS_FILE))
        } else {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            (dir.to_path_buf(), path.to_path_buf())
        };
        Ok(RunFiles { stop: dir.join(STOP_FILE), dir, events })
    }
}

/// Shows the dashboard for the run in `run_dir` until the user leaves (TUI) or the run
/// ends (plain). Blocks; call it on the main thread while the run works on another.
pub fn run_dashboard(run_dir: &Path, opts: DashOptions) -> Result<DashExit> {
    let files = RunFiles::locate(run_dir)?;
    let tui = match opts.mode {
        Mode::Auto => std::io::stdout().is_terminal(),
        Mode::Tui => true,
        Mode::Plain => false,
    };
    if tui {
        term::run(&files, &opts)
    } else {
        plain::run(&files, &opts)
    }
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
    let entries = std::fs::read_dir(runs_root).map_err(|e| {
        Error::invalid("runs folder", format!("`{}` cannot be read ({e}); pass RUN_DIR", runs_root.display()))
    })?;
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

/// Asks the run in `run_dir` to stop gracefully, by creating its `STOP` file.
pub fn request_stop(run_dir: &Path) -> Result<()> {
    let path = run_dir.join(STOP_FILE);
    let text =
        format!("stop requested by tlab dash (pid {}) at t_ms {}\n", std::process::id(), crate::events::now_ms());
    std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// For the training loop: has someone asked this run to stop?
pub fn stop_requested(run_dir: &Path) -> bool {
    run_dir.join(STOP_FILE).exists()
}

/// A tiny command line for the helper binary and `tlab dash` until clap wires it:
/// `[RUN_DIR] [--runs-dir DIR] [--pid PID] [--plain|--tui] [--once] [--fps N]`.
/// Returns the process exit code.
pub fn dash_main(args: &[String]) -> i32 {
    match parse_args(args).and_then(|(dir, root, opts)| dash(dir.as_deref(), &root, opts)) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn parse_args(args: &[String]) -> Result<(Option<PathBuf>, PathBuf, DashOptions)> {
    let (mut dir, mut root, mut opts) = (None, PathBuf::from("runs"), DashOptions::default());
    let mut it = args.iter();
    let bad = |what: &str, why: String| Error::invalid(what, why);
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or_else(|| bad(flag, "needs a value".into()));
        match a.as_str() {
            "--runs-dir" => root = PathBuf::from(value("--runs-dir")?),
            "--pid" => opts.pid = Some(value("--pid")?.parse().map_err(|e| bad("--pid", format!("{e}")))?),
            "--fps" => opts.fps = value("--fps")?.parse().map_err(|e| bad("--fps", format!("{e}")))?,
            "--plain" => opts.mode = Mode::Plain,
            "--tui" => opts.mode = Mode::Tui,
            "--once" => opts.follow = false,
            s if s.starts_with('-') => {
                return Err(bad(
                    "argument",
                    format!(
                        "`{s}`; expected [RUN_DIR] [--runs-dir DIR] [--pid PID] [--plain|--tui] [--once] [--fps N]"
                    ),
                ))
            }
            s if dir.is_none() => dir = Some(PathBuf::from(s)),
            s => return Err(bad("argument", format!("`{s}`: only one RUN_DIR"))),
        }
    }
    Ok((dir, root, opts))
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
        assert!(!stop_requested(&newest));
        request_stop(&newest).unwrap();
        assert!(stop_requested(&newest));
        let files = RunFiles::locate(&newest.join(EVENTS_FILE).with_file_name("STOP")).unwrap();
        assert_eq!(files.dir, newest);
    }

    #[test]
    fn parses_the_small_command_line() {
        let args: Vec<String> = ["runs/x", "--plain", "--pid", "42", "--once"].iter().map(|s| s.to_string()).collect();
        let (dir, root, o) = parse_args(&args).unwrap();
        assert_eq!((dir, root), (Some(PathBuf::from("runs/x")), PathBuf::from("runs")));
        assert_eq!((o.mode, o.pid, o.follow), (Mode::Plain, Some(42), false));
        assert!(parse_args(&["--bogus".to_string()]).is_err());
    }
}
