//! The one training loop: epochs, batches, Adam, the non-finite-loss error, `STOP`, best
//! and last checkpoints, resume and events. A model supplies only a [`TrainStep`]: logits
//! for a batch and an evaluation. The head on cached features and the image strategies are
//! both thin steps over [`fit`].
//!
//! Randomness, as each loop had it before they were one: the head draws every shuffle and
//! dropout mask from one stream seeded once by its caller (as the PyTorch comparison
//! does); image training reseeds with `seed + epoch` before each epoch's shuffle, so a
//! run resumed at an epoch boundary shuffles as an uninterrupted one does.
use super::head::{EpochMetrics, Evaluation, TrainOutcome};
use crate::events::{EventSink, RunEvent};
use crate::fsutil::write_json_atomic;
use crate::rundir::{RunDir, Weights};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// How the validation set is cut from the training samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ValSplit {
    /// Keras' `validation_split`: the last fraction, before any shuffling.
    #[default]
    Last,
    /// A seeded random subset.
    Random,
}

crate::choice::choice!(ValSplit, "validation split");

/// Adam with PyTorch's update rule; the defaults are Keras' (eps 1e-7, PyTorch's is 1e-8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { beta1: 0.9, beta2: 0.999, eps: 1e-7 }
    }
}

impl Adam {
    /// The optimiser over `vs`, one learning rate per variable group (`lrs[g]`).
    pub fn build(&self, vs: &nn::VarStore, lrs: &[f64]) -> Result<nn::Optimizer> {
        let cfg = nn::Adam { beta1: self.beta1, beta2: self.beta2, wd: 0.0, eps: self.eps, amsgrad: false };
        let mut opt = cfg.build(vs, lrs[0])?;
        for (g, &lr) in lrs.iter().enumerate() {
            opt.set_lr_group(g, lr);
        }
        Ok(opt)
    }
}

/// What [`fit`] needs to know; built from `HeadConfig` or `ImageTrainConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    pub epochs: u32,
    pub batch_size: i64,
    pub val_fraction: f64,
    pub val_split: ValSplit,
    pub seed: i64,
    pub adam: Adam,
    /// Learning rate of each variable group (group 0 first).
    pub learning_rates: Vec<f64>,
    /// `tch::manual_seed(seed + epoch)` before each epoch (else one stream throughout).
    pub reseed_each_epoch: bool,
}

/// One model's part of training.
pub trait TrainStep {
    /// The variables trained, checkpointed and restored.
    fn vars(&mut self) -> &mut nn::VarStore;
    /// Logits `[B, classes]` and labels `[B]` (on the model's device) of training samples
    /// `idx`, in training mode.
    fn forward_train(&mut self, idx: &[i64]) -> Result<(Tensor, Tensor)>;
    /// Loss, accuracy and predictions on samples `idx`, in eval mode.
    fn evaluate(&mut self, idx: &[i64]) -> Result<Evaluation>;
    /// Identifies the training data, so a saved state is resumed only on the same data.
    fn data_fingerprint(&self) -> String;
}

/// The loop's progress, saved each epoch (`train-state.json`) so a run resumes after its
/// last finished epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    epoch: u32,
    best_epoch: u32,
    best_val_acc: f64,
    history: Vec<EpochMetrics>,
    /// Optimiser steps taken so far; absent in older runs.
    #[serde(default)]
    steps: u64,
    /// The settings and sample count the state belongs to; absent in older runs.
    #[serde(default)]
    config: Option<FitConfig>,
    #[serde(default)]
    samples: Option<i64>,
    #[serde(default)]
    data: Option<String>,
}

/// Training and validation sample indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<i64>,
    pub val: Vec<i64>,
}

impl Split {
    /// `0..n` cut as `cfg` says; `random` draws from the global stream as it stands.
    pub fn new(n: i64, cfg: &FitConfig) -> Result<Split> {
        let n_val = ((n as f64) * cfg.val_fraction).floor() as i64;
        if n - n_val < 2 || n_val < 1 {
            return Err(Error::invalid(
                "training data",
                format!(
                    "{n} samples with validation fraction {}; need at least 2 to train and 1 to validate",
                    cfg.val_fraction
                ),
            ));
        }
        let order: Vec<i64> = match cfg.val_split {
            ValSplit::Last => (0..n).collect(),
            ValSplit::Random => Vec::<i64>::try_from(&Tensor::randperm(n, (Kind::Int64, Device::Cpu)))?,
        };
        let (tr, va) = order.split_at((n - n_val) as usize);
        Ok(Split { train: tr.to_vec(), val: va.to_vec() })
    }
}

/// Trains `step` on `split.train` for `cfg.epochs`, validating on `split.val` after each,
/// writing checkpoints of kind `w` into `dir` and resuming from them when `dir` holds this
/// training's state. The best epoch's weights are loaded back into the model at the end.
pub fn fit(
    step: &mut dyn TrainStep,
    split: &Split,
    cfg: &FitConfig,
    dir: &RunDir,
    w: Weights,
    sink: &mut dyn EventSink,
) -> Result<TrainOutcome> {
    let (train_idx, val_idx) = (&split.train, &split.val);
    let n = (train_idx.len() + val_idx.len()) as i64;
    let (best, last) = (dir.best(w), dir.last(w));
    let mut state = resume(step, cfg, n, dir, &last, sink)?;
    state.data = Some(step.data_fingerprint());
    let mut opt = cfg.adam.build(step.vars(), &cfg.learning_rates)?;
    let device = step.vars().device();
    for epoch in state.epoch + 1..=cfg.epochs {
        if cfg.reseed_each_epoch {
            tch::manual_seed(cfg.seed + epoch as i64);
        }
        let perm = Vec::<i64>::try_from(&Tensor::randperm(train_idx.len() as i64, (Kind::Int64, Device::Cpu)))?;
        let order: Vec<i64> = perm.iter().map(|&i| train_idx[i as usize]).collect();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0i64);
        let mut stopped = false;
        for idx in order.chunks(cfg.batch_size.max(1) as usize) {
            let (logits, y) = step.forward_train(idx)?;
            let loss = logits.cross_entropy_for_logits(&y.to_device(device));
            let loss_v = loss.double_value(&[]);
            state.steps += 1;
            if !loss_v.is_finite() {
                let kept = if best.exists() { best.display().to_string() } else { "none yet".into() };
                return Err(Error::Training(format!(
                    "loss is {loss_v} at epoch {epoch} step {}; the best checkpoint so far is kept ({kept})",
                    state.steps
                )));
            }
            opt.backward_step(&loss);
            loss_sum += loss_v * idx.len() as f64;
            correct += logits.argmax(-1, false).eq_tensor(&y.to_device(device)).sum(Kind::Int64).int64_value(&[]);
            seen += idx.len() as i64;
            sink.emit(&RunEvent::StepFinished { epoch, step: state.steps, loss: loss_v });
            if dir.stop_requested() {
                stopped = true;
                break;
            }
        }
        let ev = step.evaluate(val_idx)?;
        let m = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            val_loss: ev.loss,
            val_acc: ev.accuracy,
        };
        let is_best = m.val_acc > state.best_val_acc;
        if is_best {
            (state.best_val_acc, state.best_epoch) = (m.val_acc, epoch);
            save_atomic(step.vars(), &best)?;
        }
        save_atomic(step.vars(), &last)?;
        state.epoch = epoch;
        state.history.push(m.clone());
        write_json_atomic(&dir.train_state_file(), &state)?;
        sink.emit(&RunEvent::EpochFinished {
            epoch,
            train_loss: m.train_loss,
            train_acc: m.train_acc,
            val_loss: m.val_loss,
            val_acc: m.val_acc,
            best: is_best,
        });
        if stopped {
            sink.warn(&format!("stopped on request after step {} of epoch {epoch}; checkpoint saved", state.steps));
            break;
        }
    }
    if best.exists() {
        load(step.vars(), &best)?;
    }
    Ok(TrainOutcome {
        history: state.history,
        best_epoch: state.best_epoch,
        best_val_acc: state.best_val_acc,
        checkpoint: best,
        train_samples: train_idx.len(),
        val_samples: val_idx.len(),
    })
}

/// The saved state when `dir` holds this training's (same settings and sample count),
/// with the last weights loaded; otherwise a fresh start.
fn resume(
    step: &mut dyn TrainStep,
    cfg: &FitConfig,
    n: i64,
    dir: &RunDir,
    last: &Path,
    sink: &mut dyn EventSink,
) -> Result<TrainState> {
    let fresh = TrainState {
        epoch: 0,
        best_epoch: 0,
        best_val_acc: f64::NEG_INFINITY,
        history: vec![],
        steps: 0,
        config: Some(cfg.clone()),
        samples: Some(n),
        data: None,
    };
    if !(dir.train_state_file().exists() && last.exists()) {
        return Ok(fresh);
    }
    let state: TrainState = crate::fsutil::read_json(&dir.train_state_file())?;
    // Older states carry no settings; they are taken as this training's.
    let same = state.config.as_ref().is_none_or(|c| same_but_epochs(c, cfg))
        && state.samples.is_none_or(|s| s == n)
        && state.data.as_ref().is_none_or(|d| *d == step.data_fingerprint());
    if !same {
        sink.warn(&format!(
            "{} belongs to other settings or data; training starts over",
            dir.train_state_file().display()
        ));
        return Ok(fresh);
    }
    load(step.vars(), last)?;
    sink.info(&format!("resuming after epoch {} from {}", state.epoch, last.display()));
    Ok(TrainState { config: Some(cfg.clone()), samples: Some(n), ..state })
}

/// More (or fewer) epochs of the same training still resume it.
fn same_but_epochs(a: &FitConfig, b: &FitConfig) -> bool {
    FitConfig { epochs: b.epochs, ..a.clone() } == *b
}

/// Saves a var store through a temp file, so the previous checkpoint stays whole on a crash.
pub fn save_atomic(vs: &nn::VarStore, path: &Path) -> Result<()> {
    crate::fsutil::write_via_temp(path, |tmp| {
        vs.save(tmp).map_err(|source| Error::Checkpoint { path: path.to_path_buf(), source })
    })
}

/// Loads a checkpoint, naming the file on failure.
pub fn load(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    vs.load(path).map_err(|source| Error::Checkpoint { path: path.to_path_buf(), source })
}
