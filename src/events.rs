//! Progress of a run as a stream of events. The library emits; sinks render or record.
//!
//! Each line of `events.jsonl` is one [`Envelope`]: `{"v":1,"t_ms":..,"kind":"..",..}`.
//! Readers skip kinds they do not know, so new kinds do not break old dashboards.
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Schema version written into every line.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted { name: String, synthetic: bool, note: String },
    StageStarted { stage: String },
    StageFinished { stage: String, elapsed_ms: u64 },
    Log { level: LogLevel, message: String },
    DownloadStarted { url: String, total_bytes: Option<u64>, resumed_from_bytes: u64 },
    DownloadProgressed { url: String, done_bytes: u64, total_bytes: Option<u64> },
    DownloadFinished { url: String, path: String, sha256: String },
    ExtractionStarted { split: String, total_images: u64, done_images: u64, cache_dir: String },
    ExtractionProgressed { split: String, done_images: u64, total_images: u64, images_per_s: f64 },
    ShardWritten { split: String, index: u64, rows: u64 },
    ExtractionFinished { split: String, total_images: u64, cache_hit: bool, elapsed_ms: u64, peak_rss_bytes: u64 },
    EpochFinished { epoch: u32, train_loss: f64, train_acc: f64, val_loss: f64, val_acc: f64, best: bool },
    StepFinished { epoch: u32, step: u64, loss: f64 },
    Evaluated { split: String, accuracy: f64, samples: u64 },
    RunFinished { elapsed_ms: u64, test_accuracy: Option<f64> },
    RunFailed { error: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    /// Wall-clock milliseconds since the Unix epoch.
    pub t_ms: u64,
    #[serde(flatten)]
    pub event: RunEvent,
}

/// Receives events. Renderers and recorders implement this; the pipeline never knows which.
pub trait EventSink {
    fn emit(&mut self, event: &RunEvent);

    fn info(&mut self, message: &str) {
        self.emit(&RunEvent::Log { level: LogLevel::Info, message: message.to_string() });
    }
    fn warn(&mut self, message: &str) {
        self.emit(&RunEvent::Log { level: LogLevel::Warn, message: message.to_string() });
    }
}

/// A borrowed sink is a sink: `Tee(vec![Box::new(&mut console), ...])`.
impl<T: EventSink + ?Sized> EventSink for &mut T {
    fn emit(&mut self, event: &RunEvent) {
        (**self).emit(event)
    }
}

/// Drops everything; for callers that want no output.
pub struct NullSink;
impl EventSink for NullSink {
    fn emit(&mut self, _: &RunEvent) {}
}

/// Keeps events in memory; handy in notebooks and tests.
#[derive(Default)]
pub struct VecSink(pub Vec<RunEvent>);
impl EventSink for VecSink {
    fn emit(&mut self, event: &RunEvent) {
        self.0.push(event.clone());
    }
}

/// Sends each event to every inner sink.
pub struct Tee<'a>(pub Vec<Box<dyn EventSink + 'a>>);
impl EventSink for Tee<'_> {
    fn emit(&mut self, event: &RunEvent) {
        for s in &mut self.0 {
            s.emit(event);
        }
    }
}

/// Appends events as JSON lines, flushed per line so a tailing reader sees whole lines.
pub struct JsonlSink {
    file: std::fs::File,
    path: std::path::PathBuf,
    /// Set after the first failed append, which is said once on stderr.
    failed: bool,
}

impl JsonlSink {
    pub fn append(path: &Path) -> crate::Result<Self> {
        use crate::error::IoContext;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        Ok(Self { file, path: path.to_path_buf(), failed: false })
    }
}

impl EventSink for JsonlSink {
    fn emit(&mut self, event: &RunEvent) {
        let env = Envelope { v: SCHEMA_VERSION, t_ms: now_ms(), event: event.clone() };
        if let Ok(mut line) = serde_json::to_vec(&env) {
            line.push(b'\n');
            // One write call per line: appends of whole lines stay whole.
            if let Err(e) = self.file.write_all(&line) {
                if !self.failed {
                    self.failed = true;
                    eprintln!("warning: cannot append to {} ({e}); dashboards will miss events", self.path.display());
                }
            }
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Human output on stderr: progress bars on a terminal, plain throttled lines otherwise.
pub struct ConsoleSink {
    bar: Option<indicatif::ProgressBar>,
    tty: bool,
    last_line: Option<Instant>,
}

impl Default for ConsoleSink {
    fn default() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }
}

impl ConsoleSink {
    pub fn new(tty: bool) -> Self {
        Self { bar: None, tty, last_line: None }
    }

    fn bar(&mut self, total: Option<u64>, bytes: bool) -> &indicatif::ProgressBar {
        self.bar.get_or_insert_with(|| {
            let style = if bytes {
                "{spinner} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{spinner} [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}"
            };
            let pb = indicatif::ProgressBar::new(total.unwrap_or(0));
            if let Ok(s) = indicatif::ProgressStyle::with_template(style) {
                pb.set_style(s.progress_chars("=> "));
            }
            pb
        })
    }

    fn finish_bar(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }

    /// Plain mode prints progress at most every 2 s so logs stay readable.
    fn throttled(&mut self) -> bool {
        let due = self.last_line.is_none_or(|t| t.elapsed().as_secs_f64() >= 2.0);
        if due {
            self.last_line = Some(Instant::now());
        }
        due
    }

    fn line(&mut self, text: &str) {
        match &self.bar {
            Some(pb) => pb.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl EventSink for ConsoleSink {
    fn emit(&mut self, event: &RunEvent) {
        use RunEvent::*;
        match event {
            DownloadProgressed { done_bytes, total_bytes, url } => {
                if self.tty {
                    let pb = self.bar(*total_bytes, true);
                    pb.set_position(*done_bytes);
                } else if self.throttled() {
                    let total = total_bytes.map(|t| format!("/{t}")).unwrap_or_default();
                    eprintln!("download {url}: {done_bytes}{total} bytes");
                }
            }
            ExtractionProgressed { split, done_images, total_images, images_per_s } => {
                if self.tty {
                    let pb = self.bar(Some(*total_images), false);
                    pb.set_length(*total_images);
                    pb.set_position(*done_images);
                    pb.set_message(split.clone());
                } else if self.throttled() || done_images == total_images {
                    eprintln!("extract {split}: {done_images}/{total_images} images, {images_per_s:.1} images/s");
                }
            }
            DownloadFinished { .. } | ExtractionFinished { .. } | RunFinished { .. } | RunFailed { .. } => {
                self.finish_bar();
                self.last_line = None;
                self.line(&describe(event));
            }
            ShardWritten { .. } | StepFinished { .. } | DownloadStarted { .. } => {}
            _ => {
                let text = describe(event);
                self.line(&text);
            }
        }
    }
}

/// A one-line human description of an event.
pub fn describe(event: &RunEvent) -> String {
    use RunEvent::*;
    match event {
        RunStarted { name, synthetic, note } => {
            let tag = if *synthetic { " [SYNTHETIC DATA]" } else { "" };
            format!("run {name}{tag}: {note}")
        }
        StageStarted { stage } => format!("== {stage}"),
        StageFinished { stage, elapsed_ms } => format!("== {stage} done in {:.1} s", *elapsed_ms as f64 / 1e3),
        Log { level: LogLevel::Info, message } => message.clone(),
        Log { level: LogLevel::Warn, message } => format!("WARNING: {message}"),
        Log { level: LogLevel::Error, message } => format!("ERROR: {message}"),
        DownloadStarted { url, resumed_from_bytes, .. } => {
            format!("downloading {url} (resuming at byte {resumed_from_bytes})")
        }
        DownloadProgressed { url, done_bytes, .. } => format!("{url}: {done_bytes} bytes"),
        DownloadFinished { path, sha256, .. } => format!("saved {path} (sha256 {sha256})"),
        ExtractionStarted { split, total_images, done_images, cache_dir } => {
            format!("extracting {split}: {total_images} images ({done_images} already cached) into {cache_dir}")
        }
        ExtractionProgressed { split, done_images, total_images, images_per_s } => {
            format!("extract {split}: {done_images}/{total_images} ({images_per_s:.1} images/s)")
        }
        ShardWritten { split, index, rows } => format!("{split}: shard {index} ({rows} rows)"),
        ExtractionFinished { split, total_images, cache_hit, elapsed_ms, peak_rss_bytes } => format!(
            "extracted {split}: {total_images} images{} in {:.1} s, peak RSS {:.0} MB",
            if *cache_hit { " (cache hit)" } else { "" },
            *elapsed_ms as f64 / 1e3,
            *peak_rss_bytes as f64 / 1e6
        ),
        EpochFinished { epoch, train_loss, train_acc, val_loss, val_acc, best } => format!(
            "epoch {epoch}: loss {train_loss:.4} acc {train_acc:.4} | val loss {val_loss:.4} acc {val_acc:.4}{}",
            if *best { " (best, saved)" } else { "" }
        ),
        StepFinished { epoch, step, loss } => format!("epoch {epoch} step {step}: loss {loss:.4}"),
        Evaluated { split, accuracy, samples } => {
            format!("{split} accuracy: {:.2}% on {samples} samples", accuracy * 100.0)
        }
        RunFinished { elapsed_ms, test_accuracy } => format!(
            "run finished in {:.1} s{}",
            *elapsed_ms as f64 / 1e3,
            test_accuracy.map(|a| format!(", test accuracy {:.2}%", a * 100.0)).unwrap_or_default()
        ),
        RunFailed { error } => format!("run failed: {error}"),
    }
}

/// Parses one `events.jsonl` line; `None` for unknown kinds or other versions' extras.
pub fn parse_line(line: &str) -> Option<Envelope> {
    serde_json::from_str(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_unknown_kinds_are_skipped() {
        let ev = RunEvent::ShardWritten { split: "train".into(), index: 3, rows: 128 };
        let env = Envelope { v: SCHEMA_VERSION, t_ms: 5, event: ev.clone() };
        let line = serde_json::to_string(&env).unwrap();
        assert!(line.contains(r#""kind":"shard_written""#), "{line}");
        assert_eq!(parse_line(&line).unwrap().event, ev);
        assert!(parse_line(r#"{"v":1,"t_ms":1,"kind":"from_the_future"}"#).is_none());
    }
}
