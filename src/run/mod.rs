//! The whole pipeline of the post in one call, and the lifecycle of a run directory
//! ([`crate::rundir::RunDir`] owns its files).
//!
//! Dependencies point one way: this module (the public calls and the lifecycle) uses
//! `phases` (the work), which uses [`config`] (settings), [`records`] (what each file
//! holds) and [`setup`] (device, data, backbone); none of those imports from above.
use crate::cache::Cache;
use crate::events::{EventSink, JsonlSink, RunEvent, Tee};
use crate::rundir::RunDir;
use crate::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod config;
pub(crate) mod phases;
pub mod records;
pub mod setup;

pub use config::{run_note, RunConfig, RunSummary, WeightsChoice};
pub use records::RecordedConfig;
pub use setup::{open_backbone, open_data};

/// Fetch -> extract -> train -> evaluate, writing a run directory under `runs_root`.
pub fn run(cfg: &RunConfig, runs_root: &Path, cache: &Cache, console: &mut dyn EventSink) -> Result<RunSummary> {
    let dir = RunDir::create(runs_root, &cfg.name)?;
    run_in_dir(cfg, &dir, cache, console)
}

/// [`run`] into a run directory the caller made (e.g. to point a dashboard at it first).
pub fn run_in_dir(cfg: &RunConfig, dir: &RunDir, cache: &Cache, console: &mut dyn EventSink) -> Result<RunSummary> {
    lifecycle(dir, console, |sink| {
        phases::train_in(cfg, dir, cache, sink)?;
        phases::evaluate_in(dir, cache, sink)
    })
}

/// `tlab train`: fetch, extract and train into `dir`, leaving the test split untouched.
/// Rerun on the same `dir` to resume after the last finished epoch.
pub fn train_in_dir(cfg: &RunConfig, dir: &RunDir, cache: &Cache, console: &mut dyn EventSink) -> Result<()> {
    lifecycle(dir, console, |sink| phases::train_in(cfg, dir, cache, sink).map(|_| ()))
}

/// `tlab evaluate`: the best checkpoint of a trained run on the test split; writes the
/// per-class and confusion tables and `summary.json`.
pub fn evaluate_run(dir: &RunDir, cache: &Cache, console: &mut dyn EventSink) -> Result<RunSummary> {
    if !dir.trained_file().is_file() {
        return Err(crate::Error::invalid(
            "run directory",
            format!("{} holds no trained.json; train it first (`tlab train`)", dir.path().display()),
        ));
    }
    lifecycle(dir, console, |sink| phases::evaluate_in(dir, cache, sink))
}

/// What `tlab extract` does with the features of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractAction {
    /// Compute this part's shards (the whole extraction for `Part::default()`).
    Work(crate::features::shards::Part),
    /// Write the manifest of a sharded extraction whose `parts` are all done.
    Merge { parts: usize },
    /// Say which shards and parts are done.
    Status,
}

/// `tlab extract`: features of `splits` into the feature cache, no training; returns the
/// cache folders. Synthetic data is said to be so.
pub fn extract(
    cfg: &RunConfig,
    splits: &[crate::data::Split],
    cache: &Cache,
    sink: &mut dyn EventSink,
) -> Result<Vec<PathBuf>> {
    extract_with(cfg, splits, cache, ExtractAction::Work(Default::default()), sink)
}

/// [`extract`] as one worker of several, a merge, or a status report.
pub fn extract_with(
    cfg: &RunConfig,
    splits: &[crate::data::Split],
    cache: &Cache,
    action: ExtractAction,
    sink: &mut dyn EventSink,
) -> Result<Vec<PathBuf>> {
    let device = cfg.device.resolve();
    cfg.extract.precision.check_device(device)?;
    let backbone = open_backbone(cfg, cache, device, sink)?;
    let mut dirs = Vec::new();
    for &split in splits {
        let mut ds = crate::data::open(&cfg.data, split, cache, sink)
            .map_err(|e| e.in_context(format!("opening the {} split", split.as_str())))?;
        if let Some(n) = cfg.limit {
            ds = ds.take(n);
        }
        if ds.synthetic {
            sink.warn(&format!("dataset {}: generated data, not CIFAR-10", ds.describe()));
        }
        let (b, e) = (&backbone, &cfg.extract);
        dirs.push(match action {
            ExtractAction::Work(part) => {
                let dir = crate::features::extract_part(b, &ds, e, cache, part, sink)?;
                ds.warn_decode_failures(sink);
                dir
            }
            ExtractAction::Merge { parts } => {
                let dir = crate::features::merge_parts(b, &ds, e, cache, parts)?;
                sink.info(&format!("{}: merged, the manifest is written", split.as_str()));
                dir
            }
            ExtractAction::Status => {
                let (dir, st, complete) = crate::features::part_status(b, &ds, e, cache)?;
                let mut text = status_text(split.as_str(), &st, complete);
                if !complete {
                    text += &format!("\n  follow it live: tlab dash {}", dir.display());
                }
                sink.info(&text);
                dir
            }
        });
    }
    Ok(dirs)
}

/// `tlab extract --status`'s report of one split.
fn status_text(split: &str, st: &crate::features::shards::Status, complete: bool) -> String {
    let mut out = format!(
        "{split}: {} of {} shards done{}",
        st.done.len(),
        st.shards,
        if complete { ", manifest written (complete)" } else { "" }
    );
    for p in &st.parts {
        let left = p.shards.iter().filter(|i| !st.done.contains(i)).count();
        let state = if left == 0 { "done".to_string() } else { format!("{left} of {} shards left", p.shards.len()) };
        out += &format!("\n  part {}: {state}", p.part);
    }
    for (i, who, stale) in &st.claimed {
        let s = if *stale { " (stale: its worker is gone; the next worker takes it over)" } else { "" };
        out += &format!("\n  shard {i}: being computed by pid {} on {} (part {}){s}", who.pid, who.host, who.part);
    }
    if !st.missing.is_empty() {
        out += &format!("\n  not started: {} shard(s)", st.missing.len());
    }
    out
}

/// What a job in a run directory reports when it ends (`run_finished`'s accuracy).
pub trait Finished {
    fn test_accuracy(&self) -> Option<f64> {
        None
    }
}
impl Finished for () {}
impl Finished for Vec<PathBuf> {}
impl Finished for RunSummary {
    fn test_accuracy(&self) -> Option<f64> {
        Some(self.test_accuracy)
    }
}

/// The one lifecycle of a job in a run directory: records the pid (a dashboard elsewhere
/// shows its memory and CPU), sends events to `events.jsonl` and `console`, and ends with
/// `run_finished` or `run_failed`.
pub fn lifecycle<T: Finished>(
    dir: &RunDir,
    console: &mut dyn EventSink,
    job: impl FnOnce(&mut dyn EventSink) -> Result<T>,
) -> Result<T> {
    dir.write_pid()?;
    for d in [dir.path().to_path_buf(), dir.probe().path().to_path_buf()] {
        for name in crate::fsutil::remove_stale_temps(&d) {
            console.info(&format!("removed {name}, left in {} by a run that was killed", d.display()));
        }
    }
    let mut sink = Tee(vec![Box::new(JsonlSink::append(&dir.events())?), Box::new(console)]);
    let started = Instant::now();
    let result = job(&mut sink);
    sink.emit(&match &result {
        Ok(t) => {
            RunEvent::RunFinished { elapsed_ms: started.elapsed().as_millis() as u64, test_accuracy: t.test_accuracy() }
        }
        Err(e) => RunEvent::RunFailed { error: e.to_string() },
    });
    result
}
