//! What a run directory's files hold: one record type per file, each read by one `read`
//! and written by one `write`. [`RunDir`] owns the paths and knows nothing of these
//! types; the loops' progress (`train-state.json`, the last checkpoints) follows
//! [`crate::checkpoint`]. Older runs still read: newer fields have serde defaults.
//!
//! ```text
//! config.json      RecordedConfig   every setting, plus the data and weights used
//! trained.json     Trained          what training leaves for evaluation
//! timings.json     Timings          how long fitting the classifier took
//! features.json    FeatureDirs      the feature-cache folders the run read
//! summary.json     RunSummary       the finished run's result
//! <table>.{csv,parquet}             write_table (write_history: epochs and steps); read
//!                                   back by read_epochs, read_steps, read_sweep and
//!                                   read_confusion
//! head-best.safetensors             load_head (the checkpoint is the training loop's)
//! ```
use super::config::{RunConfig, RunSummary, WeightsChoice};
use crate::data::{DataSpec, Dataset};
use crate::fsutil::{read_json, write_json_atomic};
use crate::metrics::Confusion;
use crate::models::{Backbone, Tap, WeightsInfo};
use crate::probe::ProbeResult;
use crate::rundir::{RunDir, Table, Weights};
use crate::train::{EpochMetrics, Head, HeadConfig, TrainOutcome};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `config.json`: every setting plus what the run actually used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedConfig {
    pub config: RunConfig,
    pub dataset: String,
    pub dataset_digest: String,
    pub synthetic: bool,
    /// The backbone weights the run used (after any offline fallback).
    pub weights: WeightsInfo,
    pub crate_version: String,
    pub libtorch: String,
}

impl RecordedConfig {
    pub(crate) fn new(config: &RunConfig, train: &Dataset, b: &Backbone) -> Self {
        RecordedConfig {
            config: config.clone(),
            dataset: train.describe(),
            dataset_digest: train.digest.clone(),
            synthetic: train.synthetic,
            weights: b.weights.clone(),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            libtorch: crate::LIBTORCH_VERSION.into(),
        }
    }

    pub fn read(dir: &RunDir) -> Result<RecordedConfig> {
        read_json(&dir.config_file())
    }

    pub fn write(&self, dir: &RunDir) -> Result<()> {
        write_json_atomic(&dir.config_file(), self)
    }
}

/// `trained.json`: what training leaves for evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Trained {
    /// The data and weights actually used (after any offline fallback).
    pub(crate) data: DataSpec,
    pub(crate) weights: WeightsChoice,
    pub(crate) tap: Tap,
    pub(crate) classes: Vec<String>,
    pub(crate) dataset: String,
    pub(crate) synthetic: bool,
    pub(crate) weights_label: String,
    pub(crate) pretrained: bool,
    pub(crate) note: String,
    pub(crate) best_epoch: u32,
    pub(crate) best_val_acc: f64,
    pub(crate) epochs_run: usize,
    /// A `STOP` ended training early; absent in older runs (inferred from `epochs_run`).
    #[serde(default)]
    pub(crate) stopped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) probe: Option<ProbeResult>,
    /// The rows trained on and validated on; absent in older runs.
    #[serde(default)]
    pub(crate) train_samples: usize,
    #[serde(default)]
    pub(crate) val_samples: usize,
}

impl Trained {
    pub(crate) fn read(dir: &RunDir) -> Result<Trained> {
        read_json(&dir.trained_file())
    }

    pub(crate) fn write(&self, dir: &RunDir) -> Result<()> {
        write_json_atomic(&dir.trained_file(), self)
    }

    /// The training of a head on features, as the run directory recorded it: the history
    /// from the epochs and steps tables, the best epoch from this record.
    pub(crate) fn head_outcome(&self, dir: &RunDir) -> Result<TrainOutcome> {
        Ok(TrainOutcome {
            history: read_epochs(dir)?,
            steps: read_steps(dir)?,
            best_epoch: self.best_epoch,
            best_val_acc: self.best_val_acc,
            checkpoint: dir.best(Weights::Head),
            train_samples: self.train_samples,
            val_samples: self.val_samples,
        })
    }
}

/// The head a run trained on features (`head-best.safetensors`): `dim` features in (the
/// checkpoint's own width when `None`), `classes` out, with the run's head settings.
pub(crate) fn load_head(
    dir: &RunDir,
    dim: Option<i64>,
    classes: i64,
    cfg: &HeadConfig,
    device: tch::Device,
) -> Result<Head> {
    let path = dir.best(Weights::Head);
    let dim = match dim {
        Some(d) => d,
        None => {
            let (tensors, _) = crate::tensorfile::read(&path)?;
            match tensors.get("fc.weight").map(|w| w.size()) {
                Some(size) if size.len() == 2 => size[1],
                _ => return Err(Error::data(&path, "holds no fc.weight [classes, features]: not a head")),
            }
        }
    };
    let mut head = Head::new(dim, classes, cfg.dropout, device);
    crate::checkpoint::load(&mut head.vs, &path)?;
    Ok(head)
}

/// `timings.json`: kept apart from `trained.json`, whose bytes a resumed run reproduces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Timings {
    pub(crate) train_ms: u64,
}

impl Timings {
    pub(crate) fn read(dir: &RunDir) -> Result<Timings> {
        read_json(&dir.timings_file())
    }

    pub(crate) fn write(&self, dir: &RunDir) -> Result<()> {
        write_json_atomic(&dir.timings_file(), self)
    }
}

/// `features.json`: the feature-cache folders the run read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureDirs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
}

impl FeatureDirs {
    pub fn read(dir: &RunDir) -> Result<FeatureDirs> {
        read_json(&dir.features_file())
    }

    pub fn write(&self, dir: &RunDir) -> Result<()> {
        write_json_atomic(&dir.features_file(), self)
    }
}

/// `summary.json`.
impl RunSummary {
    /// The summary of a finished run; names the folder when there is none.
    pub fn read(dir: &RunDir) -> Result<RunSummary> {
        if !dir.summary_file().is_file() {
            return Err(Error::data(dir.path(), "no summary.json: not a finished run directory (did the run fail?)"));
        }
        read_json(&dir.summary_file())
    }

    pub fn write(&self, dir: &RunDir) -> Result<()> {
        write_json_atomic(&dir.summary_file(), self)
    }
}

/// Writes a table as `<stem>.csv` and `<stem>.parquet`.
pub fn write_table(dir: &RunDir, t: Table, df: &mut polars::prelude::DataFrame) -> Result<()> {
    crate::tables::write_frame(df, dir.path(), t.stem())
}

/// The loop's history as `epochs` and `steps` tables.
pub(crate) fn write_history(dir: &RunDir, outcome: &TrainOutcome) -> Result<()> {
    write_table(dir, Table::Epochs, &mut crate::tables::epochs_frame(&outcome.history)?)?;
    write_table(dir, Table::Steps, &mut crate::tables::steps_frame(&outcome.steps)?)
}

/// `epochs.csv` read back with polars.
pub fn read_epochs(dir: &RunDir) -> Result<Vec<EpochMetrics>> {
    let path = dir.table_csv(Table::Epochs);
    crate::tables::epochs_from_frame(&crate::tables::read_csv(&path)?).map_err(|reason| Error::Table { path, reason })
}

/// `steps.csv` read back with polars.
pub fn read_steps(dir: &RunDir) -> Result<Vec<(u32, u64, f64)>> {
    let path = dir.table_csv(Table::Steps);
    crate::tables::steps_from_frame(&crate::tables::read_csv(&path)?).map_err(|reason| Error::Table { path, reason })
}

/// `sweep.csv` read back: `(lambda, val_acc)` per row; `None` when the run has none.
pub fn read_sweep(dir: &RunDir) -> Result<Option<Vec<(f64, f64)>>> {
    let path = dir.table_csv(Table::Sweep);
    if !path.exists() {
        return Ok(None);
    }
    crate::tables::sweep_from_frame(&crate::tables::read_csv(&path)?)
        .map(Some)
        .map_err(|reason| Error::Table { path, reason })
}

/// `confusion.csv` read back with polars.
pub fn read_confusion(dir: &RunDir) -> Result<Confusion> {
    let path = dir.table_csv(Table::Confusion);
    crate::tables::confusion_from_frame(&crate::tables::read_csv(&path)?)
        .map_err(|reason| Error::Table { path, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_summary_names_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let d = RunDir::create(root.path(), "x").unwrap();
        let e = RunSummary::read(&d).unwrap_err().to_string();
        assert!(e.contains("no summary.json") && e.contains(&d.name()), "{e}");
        assert!(RunDir::open(root.path().join("nope")).unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn the_history_reads_back_as_written() {
        let root = tempfile::tempdir().unwrap();
        let d = RunDir::at(root.path());
        let m = |epoch, val_acc| EpochMetrics { epoch, train_loss: 0.5, train_acc: 0.25, val_loss: 0.75, val_acc };
        let outcome = TrainOutcome {
            history: vec![m(1, 0.5), m(2, 0.625)],
            steps: vec![(1, 1, 2.25), (1, 2, 1.5), (2, 3, 0.125)],
            best_epoch: 2,
            best_val_acc: 0.625,
            checkpoint: d.best(Weights::Head),
            train_samples: 6,
            val_samples: 2,
        };
        write_history(&d, &outcome).unwrap();
        assert_eq!(read_epochs(&d).unwrap(), outcome.history);
        assert_eq!(read_steps(&d).unwrap(), outcome.steps);
    }
}
