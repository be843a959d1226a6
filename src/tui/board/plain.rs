//! `tlab dash FOLDER` off a terminal: the board as lines.
use super::Board;
use crate::tui::{fmt, state, DashExit, DashOptions};
use crate::Result;
use std::path::Path;

/// Plain mode: a line whenever a shard finishes or starts (at most every 2 s) and every
/// 30 s regardless, until the manifest is written (`follow`), or the state once.
pub fn run_plain(dir: &Path, opts: &DashOptions) -> Result<DashExit> {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut say = |text: &str| -> bool {
        writeln!(out, "[{:>8}] {text}", fmt::duration(started.elapsed().as_millis() as u64)).is_ok()
    };
    let board = Board::read(dir)?;
    if !opts.follow {
        say(&board.line());
        say(&format!("shards: {}", board.map()));
        for p in &board.parts {
            say(&Board::part_text(p));
        }
        return Ok(DashExit::RunEnded(state::RunStatus::Running));
    }
    let (mut last, mut last_at, mut last_error) = (None::<(usize, String)>, Instant::now(), None::<String>);
    loop {
        match Board::read(dir) {
            Ok(b) => {
                last_error = None;
                let now = (b.rows_done, b.map());
                let changed = last.as_ref() != Some(&now);
                let due = last_at.elapsed() >= Duration::from_secs(if changed { 2 } else { 30 });
                if last.is_none() || b.complete || due {
                    if !say(&b.line()) {
                        return Ok(DashExit::Closed);
                    }
                    last = Some(now);
                    last_at = Instant::now();
                }
                if b.complete {
                    return Ok(DashExit::RunEnded(state::RunStatus::Finished));
                }
            }
            Err(e) => {
                let text = e.to_string();
                if !dir.exists() {
                    return Err(e);
                }
                if last_error.as_deref() != Some(text.as_str()) {
                    say(&format!("{text} (retrying)"));
                }
                last_error = Some(text);
            }
        }
        if crate::interrupt::wait(Duration::from_millis(250)) {
            return Ok(DashExit::Signalled);
        }
    }
}
