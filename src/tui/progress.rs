//! Progress of the one thing being counted now (a download, a split's extraction),
//! with an ETA that appears only once it means something.
use std::collections::VecDeque;

/// ETA is hidden until the current progress has run this long...
pub const ETA_MIN_MS: u64 = 3_000;
/// ...and advanced this many items: earlier estimates swing wildly.
pub const ETA_MIN_ITEMS: u64 = 16;
/// The rate behind the ETA is measured over this recent window.
const RATE_WINDOW_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Images,
    Bytes,
}

/// The one thing currently being counted: a download or one split's extraction.
#[derive(Debug, Clone)]
pub struct Progress {
    pub label: String,
    pub unit: Unit,
    pub done: u64,
    pub total: Option<u64>,
    /// Latest rate in units per second.
    pub per_s: f64,
    pub finished: bool,
    started_t_ms: u64,
    started_done: u64,
    /// Recent (t_ms, done) samples for the ETA's rate.
    window: VecDeque<(u64, u64)>,
}

impl Progress {
    pub(crate) fn new(label: String, unit: Unit, t_ms: u64, done: u64, total: Option<u64>) -> Self {
        let window = VecDeque::from([(t_ms, done)]);
        Progress {
            label,
            unit,
            done,
            total,
            per_s: 0.0,
            finished: false,
            started_t_ms: t_ms,
            started_done: done,
            window,
        }
    }

    pub(crate) fn update(&mut self, t_ms: u64, done: u64, total: Option<u64>) {
        if let Some(&(t0, d0)) = self.window.back() {
            if t_ms > t0 && self.unit == Unit::Bytes {
                self.per_s = done.saturating_sub(d0) as f64 * 1e3 / (t_ms - t0) as f64;
            }
        }
        self.done = done;
        self.total = total.or(self.total);
        self.window.push_back((t_ms, done));
        while self.window.len() > 64 || self.window.front().is_some_and(|&(t, _)| t + RATE_WINDOW_MS < t_ms) {
            self.window.pop_front();
        }
    }

    /// 0..=1, when the total is known.
    pub fn ratio(&self) -> Option<f64> {
        self.total.filter(|&t| t > 0).map(|t| (self.done as f64 / t as f64).clamp(0.0, 1.0))
    }

    /// Milliseconds left at the recent rate; `None` until the estimate means something.
    pub fn eta_ms(&self) -> Option<u64> {
        let total = self.total?;
        let &(t1, d1) = self.window.back()?;
        if self.finished || d1 >= total {
            return None;
        }
        if t1.saturating_sub(self.started_t_ms) < ETA_MIN_MS || d1.saturating_sub(self.started_done) < ETA_MIN_ITEMS {
            return None;
        }
        let &(t0, d0) = self.window.front()?;
        // A window of one sample (sparse events): fall back to the whole progress.
        let (t0, d0) = if t1 > t0 && d1 > d0 { (t0, d0) } else { (self.started_t_ms, self.started_done) };
        let rate = d1.saturating_sub(d0) as f64 / t1.saturating_sub(t0).max(1) as f64;
        (rate > 0.0).then(|| ((total - d1) as f64 / rate) as u64)
    }
}
