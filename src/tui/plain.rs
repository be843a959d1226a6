//! Without a terminal (CI, pipes, notebooks): plain lines on stdout, one per milestone,
//! progress throttled, until the run ends.
use super::state::{DashState, RunStatus};
use super::tail::Tail;
use super::{DashExit, DashOptions, RunFiles};
use crate::error::IoContext;
use crate::events::{describe, Envelope, RunEvent};
use crate::Result;
use std::io::Write;
use std::time::Duration;

/// Progress lines of one kind at most this often, in event time.
const PROGRESS_EVERY_MS: u64 = 2_000;

/// Turns events into lines; separate from IO so it can be tested.
#[derive(Default)]
pub struct PlainPrinter {
    state: DashState,
    last_progress_ms: Option<u64>,
    last_step_ms: Option<u64>,
}

impl PlainPrinter {
    /// The line for one event, if it gets one.
    pub fn line(&mut self, env: &Envelope) -> Option<String> {
        self.state.apply(env);
        let t = env.t_ms;
        let throttle = |last: &mut Option<u64>, force: bool| {
            let due = force || last.is_none_or(|l| t >= l + PROGRESS_EVERY_MS);
            if due {
                *last = Some(t);
            }
            due
        };
        let show = match &env.event {
            RunEvent::ExtractionProgressed { done_images, total_images, .. } => {
                throttle(&mut self.last_progress_ms, done_images == total_images)
            }
            RunEvent::DownloadProgressed { .. } => throttle(&mut self.last_progress_ms, false),
            RunEvent::StepFinished { .. } => throttle(&mut self.last_step_ms, false),
            RunEvent::ShardWritten { .. } => false,
            _ => true,
        };
        if !show {
            return None;
        }
        let since = t.saturating_sub(self.state.first_t_ms.unwrap_or(t));
        let mut text = describe(&env.event);
        if let (RunEvent::ExtractionProgressed { .. }, Some(eta)) =
            (&env.event, self.state.progress.as_ref().and_then(|p| p.eta_ms()))
        {
            text += &format!(", ETA {}", super::fmt::duration(eta));
        }
        Some(format!("[{:>8}] {text}", super::fmt::duration(since)))
    }

    pub fn status(&self) -> RunStatus {
        self.state.status()
    }
}

pub fn run(files: &RunFiles, opts: &DashOptions) -> Result<DashExit> {
    let mut tail = Tail::new(&files.events);
    let mut printer = PlainPrinter::default();
    let mut out = std::io::stdout().lock();
    loop {
        let p = tail.poll().ctx(|| format!("reading {}", files.events.display()))?;
        if p.gone {
            return Err(super::gone(files));
        }
        if p.reset {
            printer = PlainPrinter::default();
            let _ = writeln!(out, "-- {} was replaced; reading it again", files.events.display());
        }
        for e in &p.events {
            if let Some(line) = printer.line(e) {
                // A closed pipe (`| head`) ends us quietly.
                if writeln!(out, "{line}").is_err() {
                    return Ok(DashExit::Closed);
                }
            }
        }
        let _ = out.flush();
        let status = printer.status();
        if matches!(status, RunStatus::Finished | RunStatus::Failed) || !opts.follow {
            return Ok(DashExit::RunEnded(status));
        }
        // Blocks, and wakes at once for SIGINT, SIGTERM or a hang-up.
        if crate::interrupt::wait(Duration::from_millis(250)) {
            return Ok(DashExit::Signalled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_throttled_milestones_are_not() {
        let mut p = PlainPrinter::default();
        let ev = |t, done| Envelope {
            v: 1,
            t_ms: t,
            event: RunEvent::ExtractionProgressed {
                split: "train".into(),
                done_images: done,
                total_images: 1000,
                images_per_s: 100.0,
            },
        };
        let lines: Vec<_> = (0..=1000u64).step_by(10).filter_map(|i| p.line(&ev(i * 10, i))).collect();
        // t = 0..10 s: one line every 2 s (6) plus the final 1000/1000.
        assert_eq!(lines.len(), 6, "{lines:#?}");
        assert!(lines.last().unwrap().contains("1000/1000"));
        assert!(lines[3].contains("ETA"), "{}", lines[3]);
        let done = Envelope {
            v: 1,
            t_ms: 10_001,
            event: RunEvent::RunFinished { elapsed_ms: 10_001, test_accuracy: Some(0.5) },
        };
        assert_eq!(p.line(&done).unwrap(), "[   10.0s] run finished in 10.0 s, test accuracy 50.00%");
        assert_eq!(p.status(), RunStatus::Finished);
    }
}
