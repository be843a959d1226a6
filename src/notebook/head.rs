//! The post's head trained in a notebook, saved so the next notebook can evaluate it.
use super::Tutorial;
use crate::events::ConsoleSink;
use crate::features::FeatureSet;
use crate::fsutil::{ensure_dir, read_json};
use crate::metrics;
use crate::report::{ConfusionChart, Curves, RunLabel};
use crate::rundir::RunDir;
use crate::train::{evaluate, train_head, Evaluation, Head, HeadConfig, TrainOutcome};
use crate::{Error, Result};
use polars::prelude::DataFrame;
use std::path::PathBuf;

/// A trained head with its history, as notebook 4 leaves it and notebook 5 loads it.
pub struct TrainedHead {
    pub head: Head,
    pub outcome: TrainOutcome,
    pub classes: Vec<String>,
    pub label: RunLabel,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    outcome: TrainOutcome,
    classes: Vec<String>,
    dim: i64,
    synthetic: bool,
    pretrained: bool,
}

impl Tutorial {
    /// Where notebook 4 keeps its head: `<runs>/notebook-head`.
    pub fn head_dir(&self) -> PathBuf {
        self.runs.join("notebook-head")
    }

    /// The post's head (dropout 0.3, dense 10, Adam, batch 32, 10 epochs, last 20% for
    /// validation, best epoch kept) on `train`'s features.
    pub fn train_head(&self, train: &FeatureSet, classes: &[String]) -> Result<TrainedHead> {
        let dir = self.head_dir();
        ensure_dir(&dir)?;
        let cfg = HeadConfig::default();
        let n = classes.len() as i64;
        let (head, outcome) =
            train_head(&train.features, &train.labels, n, &cfg, &RunDir::at(&dir), &mut ConsoleSink::new(false))?;
        let saved = Saved {
            outcome: outcome.clone(),
            classes: classes.to_vec(),
            dim: train.dim(),
            synthetic: self.synthetic(),
            pretrained: self.pretrained(),
        };
        crate::fsutil::write_json_atomic(&dir.join("head.json"), &saved)?;
        Ok(TrainedHead { head, outcome, classes: classes.to_vec(), label: self.label("notebook head") })
    }

    /// The head notebook 4 trained (its best epoch).
    pub fn load_head(&self) -> Result<TrainedHead> {
        let dir = self.head_dir();
        let record = dir.join("head.json");
        if !record.is_file() {
            return Err(Error::data(&dir, "no trained head here: run notebook 4 (the head) first"));
        }
        let saved: Saved = read_json(&record)?;
        let mut head = Head::new(saved.dim, saved.classes.len() as i64, 0.3, tch::Device::Cpu);
        let ckpt = &saved.outcome.checkpoint;
        head.vs.load(ckpt).map_err(|e| Error::data(ckpt, format!("cannot load the head: {e}")))?;
        let label = RunLabel { name: "notebook head".into(), synthetic: saved.synthetic, pretrained: saved.pretrained };
        Ok(TrainedHead { head, outcome: saved.outcome, classes: saved.classes, label })
    }

    fn label(&self, name: &str) -> RunLabel {
        RunLabel { name: name.into(), synthetic: self.synthetic(), pretrained: self.pretrained() }
    }
}

impl TrainedHead {
    /// Per-epoch losses and accuracies.
    pub fn history(&self) -> Result<DataFrame> {
        crate::tables::epochs_frame(&self.outcome.history)
    }

    /// Input of the training-curves chart; `test_accuracy` adds its dashed line.
    pub fn curves(&self, test_accuracy: Option<f64>) -> Curves {
        let epochs = self.outcome.history.clone();
        Curves { run: self.label.clone(), epochs, test_accuracy, best_epoch: Some(self.outcome.best_epoch) }
    }

    pub fn evaluate(&self, test: &FeatureSet) -> Result<Evaluation> {
        evaluate(&self.head, &test.features.to_device(self.head.vs.device()), &test.labels)
    }

    /// The confusion matrix of `eval`, for tables and for the heatmap.
    pub fn confusion(&self, eval: &Evaluation) -> ConfusionChart {
        let matrix = metrics::Confusion::new(&eval.labels, &eval.predictions, &self.classes);
        ConfusionChart { run: self.label.clone(), matrix }
    }
}
