//! What a run directory's files hold: one record type per file, each read by one `read`
//! and written by one `write`. [`RunDir`] owns the paths and knows nothing of these
//! types; the training loop's progress (`train-state.json`, the checkpoints) is the
//! loop's own.
//!
//! ```text
//! config.json      RecordedConfig   every setting, plus the data and weights used
//! trained.json     Trained          what training leaves for evaluation
//! timings.json     Timings          how long fitting the classifier took
//! features.json    FeatureDirs      the feature-cache folders the run read
//! summary.json     RunSummary       the finished run's result
//! <table>.{csv,parquet}             write_table; read back by read_epochs, read_sweep
//!                                   and read_confusion
//! ```
use super::config::{RunConfig, RunSummary, WeightsChoice};
use crate::data::{DataSpec, Dataset};
use crate::fsutil::{read_json, write_json_atomic};
use crate::metrics::Confusion;
use crate::models::{Backbone, Tap, WeightsInfo};
use crate::probe::ProbeResult;
use crate::rundir::{RunDir, Table};
use crate::train::EpochMetrics;
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
}

impl Trained {
    pub(crate) fn read(dir: &RunDir) -> Result<Trained> {
        read_json(&dir.trained_file())
    }

    pub(crate) fn write(&self, dir: &RunDir) -> Result<()> {
        write_json_atomic(&dir.trained_file(), self)
    }
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

/// `epochs.csv` read back with polars.
pub fn read_epochs(dir: &RunDir) -> Result<Vec<EpochMetrics>> {
    let path = dir.table_csv(Table::Epochs);
    crate::tables::epochs_from_frame(&crate::tables::read_csv(&path)?).map_err(|reason| Error::Table { path, reason })
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
}
