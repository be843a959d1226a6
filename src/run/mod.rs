//! The whole pipeline of the post in one call, and the run directory it writes.
//!
//! `runs/<time>-<name>/`: `config.json`, `events.jsonl`, `epochs.csv`, `confusion.csv`,
//! `head-best.safetensors`, `summary.json`. Each file is written atomically.
use crate::cache::Cache;
use crate::data::{self, DataSpec, Split};
use crate::events::{EventSink, JsonlSink, RunEvent, Tee};
use crate::features::ExtractConfig;
use crate::fsutil::{ensure_dir, write_atomic};
use crate::models::{Arch, Backbone, WeightsEntry};
use crate::train::{HeadConfig, ImageTrainConfig, Strategy};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

mod phases;

/// Which weights the backbone starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WeightsChoice {
    /// torchvision's ImageNet weights, e.g. variant "IMAGENET1K_V1".
    Pretrained {
        variant: String,
    },
    File {
        path: PathBuf,
    },
    /// Seeded random init: shows the pipeline working, not transfer learning.
    Random {
        seed: i64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub name: String,
    pub data: DataSpec,
    pub arch: Arch,
    pub weights: WeightsChoice,
    pub extract: ExtractConfig,
    pub head: HeadConfig,
    /// "auto", "cpu", "cuda" or "cuda:N".
    pub device: String,
    /// Use only the first N images of each split (quick looks).
    pub limit: Option<usize>,
    /// When CIFAR-10 or the weights cannot be fetched, carry on with synthetic data or
    /// random weights (saying so) instead of failing.
    pub offline_fallback: bool,
    pub strategy: Strategy,
    /// Settings of the image-trained strategies (fine-tune, pretrained-init, scratch).
    pub images: ImageTrainConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: "linear-probe".into(),
            data: DataSpec::Cifar10 { path: None },
            arch: Arch::ResNet50,
            weights: WeightsChoice::Pretrained { variant: "IMAGENET1K_V1".into() },
            extract: ExtractConfig::default(),
            head: HeadConfig::default(),
            device: "auto".into(),
            limit: None,
            offline_fallback: true,
            strategy: Strategy::LinearProbe,
            images: ImageTrainConfig::for_strategy(Strategy::FineTune),
        }
    }
}

/// What a finished run reports (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub strategy: Strategy,
    /// True when a `STOP` request ended training early.
    pub stopped: bool,
    pub dataset: String,
    pub synthetic: bool,
    pub weights: String,
    pub pretrained: bool,
    pub best_epoch: u32,
    pub best_val_acc: f64,
    pub test_accuracy: f64,
    pub test_samples: usize,
    pub note: String,
}

/// Parses "auto" | "cpu" | "cuda" | "cuda:N".
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| Error::invalid("device", format!("`{s}`; expected auto, cpu, cuda or cuda:N"))),
    }
}

/// Opens both splits of the configured data, falling back to synthetic data when
/// CIFAR-10 cannot be fetched and `fallback` allows it.
pub fn open_data(cfg: &RunConfig, cache: &Cache, sink: &mut dyn EventSink) -> Result<(data::Dataset, data::Dataset)> {
    let open_both = |spec: &DataSpec, sink: &mut dyn EventSink| -> Result<_> {
        Ok((data::open(spec, Split::Train, cache, sink)?, data::open(spec, Split::Test, cache, sink)?))
    };
    let (train, test) = match open_both(&cfg.data, sink) {
        Err(e @ Error::Download { .. }) if cfg.offline_fallback => {
            sink.warn(&format!(
                "CIFAR-10 could not be fetched ({e}). Using the SYNTHETIC dataset instead: results below are NOT CIFAR-10 results."
            ));
            open_both(&DataSpec::synthetic_default(), sink)?
        }
        other => other?,
    };
    Ok(match cfg.limit {
        Some(n) => (train.take(n), test.take(n)),
        None => (train, test),
    })
}

/// Builds the backbone, falling back to seeded random weights when the download fails
/// and `fallback` allows it.
pub fn open_backbone(cfg: &RunConfig, cache: &Cache, device: Device, sink: &mut dyn EventSink) -> Result<Backbone> {
    match &cfg.weights {
        WeightsChoice::Random { seed } => Ok(Backbone::random(cfg.arch, *seed, device)),
        WeightsChoice::File { path } => Backbone::from_file(cfg.arch, path, device),
        WeightsChoice::Pretrained { variant } => {
            let entry = WeightsEntry::find(cfg.arch, variant)?;
            match Backbone::pretrained(entry, cache, device, sink) {
                Err(e @ Error::Download { .. }) if cfg.offline_fallback => {
                    sink.warn(&format!(
                        "the ImageNet weights could not be fetched ({e}). Using SEEDED RANDOM weights: the result shows the pipeline working, not transfer learning."
                    ));
                    Ok(Backbone::random(cfg.arch, cfg.head.seed, device))
                }
                other => other,
            }
        }
    }
}

/// `runs/<UTC time>-<name>`; a numeric suffix keeps two runs in one second apart.
pub fn new_run_dir(runs_root: &Path, name: &str) -> Result<PathBuf> {
    ensure_dir(runs_root)?;
    let stamp = utc_stamp(std::time::SystemTime::now());
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    for i in 0.. {
        let dir = runs_root.join(if i == 0 { format!("{stamp}-{safe}") } else { format!("{stamp}-{safe}-{i}") });
        if std::fs::create_dir(&dir).is_ok() {
            return Ok(dir);
        }
    }
    unreachable!()
}

/// `YYYYmmdd-HHMMSS` in UTC.
fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Fetch -> extract -> train -> evaluate, writing a run directory under `runs_root`.
pub fn run(cfg: &RunConfig, runs_root: &Path, cache: &Cache, console: &mut dyn EventSink) -> Result<RunSummary> {
    let dir = new_run_dir(runs_root, &cfg.name)?;
    run_in_dir(cfg, &dir, cache, console)
}

/// [`run`] into a run directory the caller made (e.g. to point a dashboard at it first).
pub fn run_in_dir(cfg: &RunConfig, dir: &Path, cache: &Cache, console: &mut dyn EventSink) -> Result<RunSummary> {
    let dir = dir.to_path_buf();
    // Lets a dashboard in another terminal show this process's memory and CPU.
    write_atomic(&dir.join("pid"), std::process::id().to_string().as_bytes())?;
    let mut sink = Tee(vec![Box::new(JsonlSink::append(&dir.join("events.jsonl"))?), Box::new(Forward(console))]);
    let started = Instant::now();
    let result =
        phases::train_in(cfg, &dir, cache, &mut sink).and_then(|_| phases::evaluate_in(&dir, cache, &mut sink));
    match &result {
        Ok(s) => sink.emit(&RunEvent::RunFinished {
            elapsed_ms: started.elapsed().as_millis() as u64,
            test_accuracy: Some(s.test_accuracy),
        }),
        Err(e) => sink.emit(&RunEvent::RunFailed { error: e.to_string() }),
    }
    result
}

/// `tlab train`: fetch, extract and train into `dir`, leaving the test split untouched.
/// Rerun on the same `dir` to resume (image strategies resume at their last epoch).
pub fn train_in_dir(cfg: &RunConfig, dir: &Path, cache: &Cache, console: &mut dyn EventSink) -> Result<()> {
    write_atomic(&dir.join("pid"), std::process::id().to_string().as_bytes())?;
    let mut sink = Tee(vec![Box::new(JsonlSink::append(&dir.join("events.jsonl"))?), Box::new(Forward(console))]);
    let res = phases::train_in(cfg, dir, cache, &mut sink);
    match res {
        Ok(_) => Ok(()),
        Err(e) => {
            sink.emit(&RunEvent::RunFailed { error: e.to_string() });
            Err(e)
        }
    }
}

/// `tlab evaluate`: the best checkpoint of a trained run on the test split; writes the
/// per-class and confusion tables and `summary.json`.
pub fn evaluate_run(dir: &Path, cache: &Cache, console: &mut dyn EventSink) -> Result<RunSummary> {
    if !dir.join("trained.json").is_file() {
        return Err(Error::invalid(
            "run directory",
            format!("{} holds no trained.json; train it first (`tlab train`)", dir.display()),
        ));
    }
    let mut sink = Tee(vec![Box::new(JsonlSink::append(&dir.join("events.jsonl"))?), Box::new(Forward(console))]);
    let started = Instant::now();
    let res = phases::evaluate_in(dir, cache, &mut sink);
    match &res {
        Ok(s) => sink.emit(&RunEvent::RunFinished {
            elapsed_ms: started.elapsed().as_millis() as u64,
            test_accuracy: Some(s.test_accuracy),
        }),
        Err(e) => sink.emit(&RunEvent::RunFailed { error: e.to_string() }),
    }
    res
}

/// The `config` part of a run's `config.json`.
pub fn read_run_config(dir: &Path) -> Result<RunConfig> {
    #[derive(Deserialize)]
    struct Recorded {
        config: RunConfig,
    }
    Ok(crate::fsutil::read_json::<Recorded>(&dir.join("config.json"))?.config)
}

/// Lets a borrowed sink sit in a `Tee`.
struct Forward<'a>(&'a mut dyn EventSink);
impl EventSink for Forward<'_> {
    fn emit(&mut self, e: &RunEvent) {
        self.0.emit(e)
    }
}

fn stage<T>(sink: &mut dyn EventSink, name: &str, f: impl FnOnce(&mut dyn EventSink) -> Result<T>) -> Result<T> {
    sink.emit(&RunEvent::StageStarted { stage: name.into() });
    let t = Instant::now();
    let out = f(sink)?;
    sink.emit(&RunEvent::StageFinished { stage: name.into(), elapsed_ms: t.elapsed().as_millis() as u64 });
    Ok(out)
}

/// The plain statement printed at the start and stored with every result.
pub fn run_note(synthetic: bool, pretrained: bool) -> String {
    let data = if synthetic { "SYNTHETIC data (generated; not CIFAR-10)" } else { "CIFAR-10" };
    let weights = if pretrained {
        "pretrained weights"
    } else {
        "SEEDED RANDOM weights: this shows the pipeline working, not transfer learning"
    };
    format!("{data}; {weights}")
}

/// `config.json`: every setting plus what the run actually used.
#[derive(Serialize)]
pub(crate) struct RecordedConfig<'a> {
    config: &'a RunConfig,
    dataset: String,
    dataset_digest: String,
    synthetic: bool,
    weights: &'a crate::models::WeightsInfo,
    crate_version: &'static str,
    libtorch: &'static str,
}

impl<'a> RecordedConfig<'a> {
    pub(crate) fn new(config: &'a RunConfig, train: &data::Dataset, b: &'a Backbone) -> Self {
        RecordedConfig {
            config,
            dataset: train.describe(),
            dataset_digest: train.digest.clone(),
            synthetic: train.synthetic,
            weights: &b.weights,
            crate_version: env!("CARGO_PKG_VERSION"),
            libtorch: crate::LIBTORCH_VERSION,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_stamp_is_calendar_correct() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_910_400 + 3661);
        assert_eq!(super::utc_stamp(t), "20261129-010101"); // date -u -d @1795914061
    }
}
