//! The post's head trained in a notebook, saved as a run saves its head (`trained.json`,
//! the epochs and steps tables, the best checkpoint) so the next notebook loads it as
//! `tlab evaluate` does.
use super::Tutorial;
use crate::events::ConsoleSink;
use crate::features::FeatureSet;
use crate::metrics;
use crate::report::{ConfusionChart, Curves, RunLabel};
use crate::run::records::{load_head, write_history, Trained};
use crate::run::{run_note, RunConfig};
use crate::rundir::RunDir;
use crate::train::{evaluate, train_head, Evaluation, Head, Strategy, TrainOutcome};
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

impl Tutorial {
    /// Where notebook 4 keeps its head: `<runs>/notebook-head`.
    pub fn head_dir(&self) -> PathBuf {
        self.runs.join("notebook-head")
    }

    /// The head's settings: a linear probe's at this tutorial's scale.
    fn head_config(&self) -> RunConfig {
        self.config(Strategy::LinearProbe)
    }

    /// The post's head (dropout 0.3, dense 10, Adam, batch 32, 10 epochs, last 20% for
    /// validation, best epoch kept) on `train`'s features.
    pub fn train_head(&self, train: &FeatureSet, classes: &[String]) -> Result<TrainedHead> {
        let dir = RunDir::at(self.head_dir()).ensure()?;
        let cfg = self.head_config();
        let n = classes.len() as i64;
        let (head, outcome) =
            train_head(&train.features, &train.labels, n, &cfg.head, &dir, &mut ConsoleSink::new(false))?;
        let key = &train.manifest.key;
        let synthetic = self.synthetic();
        let trained = Trained {
            data: self.data.clone(),
            weights: self.weights.clone(),
            tap: key.tap,
            classes: classes.to_vec(),
            dataset: crate::data::describe(&key.dataset, synthetic),
            synthetic,
            weights_label: train.manifest.weights_label.clone(),
            pretrained: self.pretrained(),
            note: run_note(&crate::data::kind_label(&key.dataset, synthetic), self.pretrained()),
            best_epoch: outcome.best_epoch,
            best_val_acc: outcome.best_val_acc,
            epochs_run: outcome.history.len(),
            stopped: outcome.history.len() < cfg.head.fit.epochs as usize,
            probe: None,
            train_samples: outcome.train_samples,
            val_samples: outcome.val_samples,
        };
        write_history(&dir, &outcome)?;
        trained.write(&dir)?;
        let label = RunLabel { name: "notebook head".into(), synthetic, pretrained: self.pretrained() };
        Ok(TrainedHead { head, outcome, classes: classes.to_vec(), label })
    }

    /// The head notebook 4 trained (its best epoch).
    pub fn load_head(&self) -> Result<TrainedHead> {
        let dir = RunDir::at(self.head_dir());
        if !dir.trained_file().is_file() {
            return Err(Error::data(dir.path(), "no trained head here: run notebook 4 (the head) first"));
        }
        let t = Trained::read(&dir)?;
        let head = load_head(&dir, None, t.classes.len() as i64, &self.head_config().head, tch::Device::Cpu)?;
        let outcome = t.head_outcome(&dir)?;
        let label = RunLabel { name: "notebook head".into(), synthetic: t.synthetic, pretrained: t.pretrained };
        Ok(TrainedHead { head, outcome, classes: t.classes, label })
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
