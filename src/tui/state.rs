//! What the dashboard knows about a run, built only from its events: no clock, no IO,
//! so every screen can be reproduced from a recorded `events.jsonl`.
pub use super::progress::{Progress, Unit};
use super::series::Series;
use crate::events::{describe, Envelope, LogLevel, RunEvent};
use std::collections::VecDeque;

/// The pipeline's stages in order; others that show up are appended.
pub const STAGES: [&str; 4] = ["fetch", "extract", "train", "evaluate"];
const MAX_LOGS: usize = 200;
const MAX_RATE_SAMPLES: usize = 240;
const CHART_POINTS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    Pending,
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub state: StageState,
    pub elapsed_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct LogLine {
    pub t_ms: u64,
    pub level: LogLevel,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// No event read yet.
    Waiting,
    Running,
    Finished,
    Failed,
}

/// Per-epoch curves plus the per-step loss, each bounded.
#[derive(Debug, Clone)]
pub struct Curves {
    pub train_loss: Series,
    pub val_loss: Series,
    pub train_acc: Series,
    pub val_acc: Series,
    pub step_loss: Series,
    pub epochs: u32,
    /// (epoch, val_acc) of the last epoch marked best.
    pub best: Option<(u32, f64)>,
    /// (epoch, step, loss) of the latest step.
    pub last_step: Option<(u32, u64, f64)>,
    /// Where each later phase of a two-phase run begins, on the epoch and step charts'
    /// x axes: a fine-tune run's image phase numbers its epochs and steps from 1 again,
    /// and is drawn after the head phase on one continuous axis.
    pub epoch_phases: Vec<f64>,
    pub step_phases: Vec<f64>,
    epoch_axis: Axis,
    step_axis: Axis,
}

/// Keeps x continuous across phases whose counters restart.
#[derive(Debug, Clone, Copy, Default)]
struct Axis {
    offset: u64,
    last: u64,
}

impl Axis {
    /// The x of counter value `n`; `Some(boundary)` when `n` starts a new phase.
    fn place(&mut self, n: u64) -> (f64, Option<f64>) {
        let mut boundary = None;
        if n <= self.last {
            self.offset += self.last;
            boundary = Some(self.offset as f64 + 0.5);
        }
        self.last = n;
        ((self.offset + n) as f64, boundary)
    }
}

impl Default for Curves {
    fn default() -> Self {
        let s = || Series::new(CHART_POINTS);
        Curves {
            train_loss: s(),
            val_loss: s(),
            train_acc: s(),
            val_acc: s(),
            step_loss: s(),
            epochs: 0,
            best: None,
            last_step: None,
            epoch_phases: vec![],
            step_phases: vec![],
            epoch_axis: Axis::default(),
            step_axis: Axis::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DashState {
    pub name: Option<String>,
    pub synthetic: bool,
    pub note: Option<String>,
    pub stages: Vec<Stage>,
    pub progress: Option<Progress>,
    /// Extraction images/s, one sample per second of event time.
    pub rate_history: VecDeque<u64>,
    rate_second: Option<u64>,
    pub curves: Curves,
    pub logs: VecDeque<LogLine>,
    /// (split, accuracy, samples) of the last evaluation.
    pub evaluated: Option<(String, f64, u64)>,
    /// (elapsed_ms, test_accuracy) once the run finished.
    pub finished: Option<(u64, Option<f64>)>,
    pub failed: Option<String>,
    pub first_t_ms: Option<u64>,
    pub last_t_ms: Option<u64>,
    pub events: u64,
    pub skipped: u64,
}

impl Default for DashState {
    fn default() -> Self {
        let stages = STAGES
            .iter()
            .map(|s| Stage { name: s.to_string(), state: StageState::Pending, elapsed_ms: None })
            .collect();
        DashState {
            name: None,
            synthetic: false,
            note: None,
            stages,
            progress: None,
            rate_history: VecDeque::new(),
            rate_second: None,
            curves: Curves::default(),
            logs: VecDeque::new(),
            evaluated: None,
            finished: None,
            failed: None,
            first_t_ms: None,
            last_t_ms: None,
            events: 0,
            skipped: 0,
        }
    }
}

impl DashState {
    pub fn status(&self) -> RunStatus {
        match (&self.failed, &self.finished, self.events) {
            (Some(_), _, _) => RunStatus::Failed,
            (_, Some(_), _) => RunStatus::Finished,
            (_, _, 0) => RunStatus::Waiting,
            _ => RunStatus::Running,
        }
    }

    /// Wall time of the run: the recorded figure once finished, else event-time span.
    pub fn wall_ms(&self, now_ms: u64) -> u64 {
        if let Some((ms, _)) = self.finished {
            return ms;
        }
        let end = if self.failed.is_some() { self.last_t_ms.unwrap_or(now_ms) } else { now_ms };
        self.first_t_ms.map_or(0, |t0| end.saturating_sub(t0))
    }

    /// Test accuracy from the end of the run, or from the evaluation before it.
    pub fn test_accuracy(&self) -> Option<f64> {
        self.finished.and_then(|f| f.1).or_else(|| self.evaluated.as_ref().map(|e| e.1))
    }

    pub fn apply(&mut self, env: &Envelope) {
        let t = env.t_ms;
        self.events += 1;
        self.first_t_ms.get_or_insert(t);
        self.last_t_ms = Some(self.last_t_ms.map_or(t, |l| l.max(t)));
        self.log_event(t, &env.event);
        use RunEvent::*;
        match &env.event {
            RunStarted { name, synthetic, note } => {
                self.name = Some(name.clone());
                self.synthetic = *synthetic;
                self.note = Some(note.clone());
            }
            StageStarted { stage } => self.set_stage(stage, StageState::Running, None),
            StageFinished { stage, elapsed_ms } => self.set_stage(stage, StageState::Done, Some(*elapsed_ms)),
            DownloadStarted { url, total_bytes, resumed_from_bytes } => {
                let label = format!("download {}", url.rsplit('/').next().unwrap_or(url));
                self.progress = Some(Progress::new(label, Unit::Bytes, t, *resumed_from_bytes, *total_bytes));
            }
            DownloadProgressed { done_bytes, total_bytes, .. } => {
                if let Some(p) = self.progress.as_mut().filter(|p| p.unit == Unit::Bytes) {
                    p.update(t, *done_bytes, *total_bytes);
                }
            }
            DownloadFinished { .. } => self.finish_progress(Unit::Bytes),
            ExtractionStarted { split, total_images, done_images, .. } => {
                self.progress =
                    Some(Progress::new(format!("extract {split}"), Unit::Images, t, *done_images, Some(*total_images)));
            }
            ExtractionProgressed { split, done_images, total_images, images_per_s } => {
                let label = format!("extract {split}");
                let same = self.progress.as_ref().is_some_and(|p| p.label == label && !p.finished);
                if !same {
                    self.progress = Some(Progress::new(label, Unit::Images, t, *done_images, Some(*total_images)));
                }
                let p = self.progress.as_mut().expect("set above");
                p.update(t, *done_images, Some(*total_images));
                p.per_s = *images_per_s;
                self.sample_rate(t, *images_per_s);
            }
            ExtractionFinished { total_images, .. } => {
                if let Some(p) = self.progress.as_mut().filter(|p| p.unit == Unit::Images) {
                    p.done = *total_images;
                }
                self.finish_progress(Unit::Images);
            }
            EpochFinished { epoch, train_loss, train_acc, val_loss, val_acc, best } => {
                let c = &mut self.curves;
                let (x, boundary) = c.epoch_axis.place(u64::from(*epoch));
                c.epoch_phases.extend(boundary);
                c.train_loss.push(x, *train_loss);
                c.val_loss.push(x, *val_loss);
                c.train_acc.push(x, *train_acc);
                c.val_acc.push(x, *val_acc);
                c.epochs = c.epochs.max(*epoch);
                if *best {
                    c.best = Some((*epoch, *val_acc));
                }
            }
            StepFinished { epoch, step, loss } => {
                let c = &mut self.curves;
                let (x, boundary) = c.step_axis.place(*step);
                c.step_phases.extend(boundary);
                c.step_loss.push(x, *loss);
                self.curves.last_step = Some((*epoch, *step, *loss));
            }
            Evaluated { split, accuracy, samples } => self.evaluated = Some((split.clone(), *accuracy, *samples)),
            RunFinished { elapsed_ms, test_accuracy } => self.finished = Some((*elapsed_ms, *test_accuracy)),
            RunFailed { error } => {
                self.failed = Some(error.clone());
                for s in self.stages.iter_mut().filter(|s| s.state == StageState::Running) {
                    s.state = StageState::Failed;
                }
            }
            ShardWritten { .. } | Log { .. } => {}
        }
    }

    fn set_stage(&mut self, name: &str, state: StageState, elapsed_ms: Option<u64>) {
        match self.stages.iter_mut().find(|s| s.name == name) {
            Some(s) => {
                s.state = state;
                s.elapsed_ms = elapsed_ms.or(s.elapsed_ms);
            }
            None => self.stages.push(Stage { name: name.to_string(), state, elapsed_ms }),
        }
    }

    fn finish_progress(&mut self, unit: Unit) {
        if let Some(p) = self.progress.as_mut().filter(|p| p.unit == unit) {
            p.finished = true;
            if let Some(total) = p.total {
                p.done = p.done.max(total);
            }
        }
    }

    /// One sparkline sample per second of event time, however fast events come.
    fn sample_rate(&mut self, t_ms: u64, per_s: f64) {
        let sec = t_ms / 1000;
        let v = per_s.max(0.0).round() as u64;
        match self.rate_second {
            Some(s) if s == sec => {
                if let Some(last) = self.rate_history.back_mut() {
                    *last = v;
                }
            }
            _ => {
                self.rate_history.push_back(v);
                self.rate_second = Some(sec);
                if self.rate_history.len() > MAX_RATE_SAMPLES {
                    self.rate_history.pop_front();
                }
            }
        }
    }

    /// Log lines: the run's own messages plus milestones; not per-item progress.
    fn log_event(&mut self, t_ms: u64, event: &RunEvent) {
        use RunEvent::*;
        let (level, text) = match event {
            Log { level, message } => (*level, message.clone()),
            RunFailed { .. } => (LogLevel::Error, describe(event)),
            DownloadProgressed { .. } | ExtractionProgressed { .. } | StepFinished { .. } | ShardWritten { .. } => {
                return
            }
            _ => (LogLevel::Info, describe(event)),
        };
        self.logs.push_back(LogLine { t_ms, level, text });
        if self.logs.len() > MAX_LOGS {
            self.logs.pop_front();
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
