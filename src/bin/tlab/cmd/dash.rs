//! `tlab dash [RUN_DIR | FEATURE_FOLDER]`: the live dashboard.
use super::Ctx;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use transfer_lab::tui::{DashOptions, Mode};

#[derive(Args)]
pub(crate) struct DashArgs {
    /// A run directory, an events file (`tlab extract --events`), or a feature-cache folder
    /// (a sharded extraction's progress, from any host that sees the folder)
    pub(crate) run_dir: Option<PathBuf>,
    /// Where to look for the newest run when RUN_DIR is not given
    #[arg(long, default_value = "runs")]
    pub(crate) runs_dir: PathBuf,
    /// The run's process, for the device panel (default: the run directory's pid file)
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// Plain lines even on a terminal
    #[arg(long, conflicts_with = "tui")]
    pub(crate) plain: bool,
    /// The full-screen dashboard even when stdout is not a terminal
    #[arg(long)]
    pub(crate) tui: bool,
    /// Print what is there and return, instead of following the run (plain mode)
    #[arg(long)]
    pub(crate) once: bool,
    /// Redraws per second at most
    #[arg(long, default_value_t = DashOptions::default().fps, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub(crate) fps: u32,
}

impl DashArgs {
    pub(crate) fn exec(self, _ctx: &mut Ctx) -> Result<()> {
        test_panic_hook();
        let mode = match (self.plain, self.tui) {
            (true, _) => Mode::Plain,
            (_, true) => Mode::Tui,
            _ => Mode::Auto,
        };
        let opts = DashOptions { mode, pid: self.pid, fps: self.fps, follow: !self.once };
        transfer_lab::tui::dash(self.run_dir.as_deref(), &self.runs_dir, opts)?;
        Ok(())
    }
}

/// Test hook: `TLAB_DASH_TEST_PANIC_MS=N` panics on another thread after N ms, so a
/// test can see the dashboard give the terminal back.
fn test_panic_hook() {
    if let Some(ms) = std::env::var("TLAB_DASH_TEST_PANIC_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            panic!("test panic while the dashboard is up");
        });
    }
}
