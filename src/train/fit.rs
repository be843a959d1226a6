//! The one training loop: epochs, batches, Adam, the non-finite-loss error, `STOP`, best
//! and last checkpoints, resume and events. A model supplies only a [`TrainStep`]: logits
//! for a batch and an evaluation. The head on cached features and the image strategies are
//! both thin steps over [`fit`].
//!
//! Resume is exact: the last checkpoint holds the weights, Adam's moments and the loop's
//! progress, and every epoch and batch reseeds the random stream from the run's seed, so a
//! run stopped or killed and resumed writes the same tables and checkpoints, byte for
//! byte, as one that never stopped.
use super::adam::AdamOptimizer;
use super::head::{EpochMetrics, Evaluation, TrainOutcome};
use super::progress::{resume, save, Partial, Running};
pub use super::split::{Split, ValSplit};
use crate::checkpoint::resume_hint;
pub use crate::checkpoint::{load, save_atomic};
use crate::events::{EventSink, RunEvent};
use crate::rundir::{RunDir, Weights};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Adam's settings; the defaults are Keras' (eps 1e-7, PyTorch's is 1e-8).
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
    pub fn build(&self, vs: &nn::VarStore, lrs: &[f64]) -> Result<AdamOptimizer> {
        AdamOptimizer::new(vs, *self, lrs)
    }

    /// [`Self::build`] with each variable's rate scaled by the longest prefix of `scales`
    /// its name starts with.
    pub fn build_scaled(&self, vs: &nn::VarStore, lrs: &[f64], scales: &[(String, f64)]) -> Result<AdamOptimizer> {
        Ok(AdamOptimizer::new(vs, *self, lrs)?.with_scales(scales))
    }
}

/// The loop's settings that `HeadConfig`, `ImageTrainConfig` and [`FitConfig`] share,
/// written once. Flattened into each, so their JSON keeps its flat fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainLoop {
    pub epochs: u32,
    pub batch_size: i64,
    pub val_fraction: f64,
    /// Absent in older image runs, which held out the last fraction.
    #[serde(default)]
    pub val_split: ValSplit,
    pub seed: i64,
    /// Also checkpoint every this many steps within an epoch (`None`: at epoch ends only).
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// A given validation set: samples from this index on (an image folder's `val/`;
    /// `val_split` then unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_from: Option<usize>,
}

impl Default for TrainLoop {
    /// The post's: 10 epochs of batch 32, the last 20% held out for validation.
    fn default() -> Self {
        TrainLoop {
            epochs: 10,
            batch_size: 32,
            val_fraction: 0.2,
            val_split: ValSplit::Last,
            seed: 0,
            checkpoint_every: None,
            val_from: None,
        }
    }
}

/// What [`fit`] needs to know; built from `HeadConfig` or `ImageTrainConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    #[serde(flatten)]
    pub fit: TrainLoop,
    pub adam: Adam,
    /// Learning rate of each variable group (group 0 first).
    pub learning_rates: Vec<f64>,
    /// Multipliers of a variable's group rate by name prefix (the longest prefix that
    /// matches wins; none: 1): layer-wise learning-rate decay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lr_scales: Vec<(String, f64)>,
    /// Each class's weight in the training loss (`--class-weight balanced`): the mean of
    /// the rows' weighted cross-entropies. `None`: plain cross-entropy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f64>>,
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

/// The seed of batch `batch` of `epoch`. Every batch reseeds, so its dropout and
/// augmentation depend on nothing before it and a run resumed at any checkpoint draws
/// what an uninterrupted one draws (libtorch's generator state cannot be saved from tch).
fn batch_seed(seed: i64, epoch: u32, batch: usize) -> i64 {
    let mut z = (seed as u64) ^ ((epoch as u64) << 32) ^ (batch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finaliser: nearby inputs give unrelated seeds.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

/// Trains `step` on `split.train` for `cfg.epochs`, validating on `split.val` after each,
/// writing checkpoints of kind `w` into `dir` and resuming from them when `dir` holds this
/// training's state. The best epoch's weights are loaded back into the model at the end.
///
/// Randomness: each epoch's shuffle is drawn after `manual_seed(seed + epoch)`, each
/// batch's after [`batch_seed`]. A `STOP` file ends training after the current batch with
/// a checkpoint there, and is removed; resuming continues from that batch.
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
    let best = dir.best(w);
    let mut opt = cfg.adam.build_scaled(step.vars(), &cfg.learning_rates, &cfg.lr_scales)?;
    let mut state = resume(step, &mut opt, cfg, n, dir, w, sink)?;
    state.data = Some(step.data_fingerprint());
    let device = step.vars().device();
    let batch = cfg.fit.batch_size.max(1) as usize;
    let mut stopped = false;
    'epochs: for epoch in state.epoch + 1..=cfg.fit.epochs {
        tch::manual_seed(cfg.fit.seed + epoch as i64);
        let perm = Vec::<i64>::try_from(&Tensor::randperm(train_idx.len() as i64, (Kind::Int64, Device::Cpu)))?;
        let order: Vec<i64> = perm.iter().map(|&i| train_idx[i as usize]).collect();
        let batches = order.len().div_ceil(batch);
        let (skip, mut run) = match state.partial.take() {
            Some(p) if p.epoch == epoch => (p.batches, p.running),
            _ => (0, Running::default()),
        };
        for (b, idx) in order.chunks(batch).enumerate().skip(skip) {
            tch::manual_seed(batch_seed(cfg.fit.seed, epoch, b));
            let (logits, y) = step.forward_train(idx)?;
            let y = y.to_device(device);
            let loss = match &cfg.class_weights {
                Some(w) => {
                    let w = Tensor::from_slice(w).to_kind(logits.kind()).to_device(device).index_select(0, &y);
                    let ce = -logits.log_softmax(-1, logits.kind()).gather(1, &y.unsqueeze(1), false).squeeze_dim(1);
                    (ce * w).mean(logits.kind())
                }
                None => logits.cross_entropy_for_logits(&y),
            };
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
            run.loss_sum += loss_v * idx.len() as f64;
            run.correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            run.seen += idx.len() as i64;
            state.step_losses.push((epoch, state.steps, loss_v));
            sink.emit(&RunEvent::StepFinished { epoch, step: state.steps, loss: loss_v });
            let done = b + 1;
            if done == batches {
                break;
            }
            let signal = crate::interrupt::requested().is_some();
            let stop = dir.stop_requested();
            let due = cfg.fit.checkpoint_every.is_some_and(|k| k > 0 && done as u64 % k == 0);
            if stop || due || signal {
                state.partial = Some(Partial { epoch, batches: done, running: run });
                save(step.vars(), &opt, &state, dir, w)?;
                state.partial = None;
            }
            crate::interrupt::check(|| {
                resume_hint(dir, "checkpoint", &format!("after batch {done} of {batches} in epoch {epoch}"))
            })?;
            if stop {
                stopped = true;
                sink.warn(&format!(
                    "stopped on request after batch {done} of {batches} in epoch {epoch}; checkpoint saved, \
                     resume continues from there"
                ));
                break 'epochs;
            }
        }
        let ev = step.evaluate(val_idx)?;
        let m = EpochMetrics {
            epoch,
            train_loss: run.loss_sum / run.seen as f64,
            train_acc: run.correct as f64 / run.seen as f64,
            val_loss: ev.loss,
            val_acc: ev.accuracy,
        };
        let is_best = m.val_acc > state.best_val_acc;
        if is_best {
            (state.best_val_acc, state.best_epoch) = (m.val_acc, epoch);
            save_atomic(step.vars(), &best)?;
        }
        state.epoch = epoch;
        state.history.push(m.clone());
        save(step.vars(), &opt, &state, dir, w)?;
        sink.emit(&RunEvent::EpochFinished {
            epoch,
            train_loss: m.train_loss,
            train_acc: m.train_acc,
            val_loss: m.val_loss,
            val_acc: m.val_acc,
            best: is_best,
        });
        if epoch < cfg.fit.epochs {
            crate::interrupt::check(|| resume_hint(dir, "checkpoint", &format!("after epoch {epoch}")))?;
        }
        if epoch < cfg.fit.epochs && dir.stop_requested() {
            stopped = true;
            sink.warn(&format!("stopped on request after epoch {epoch}; checkpoint saved"));
            break;
        }
    }
    if stopped {
        // Honoured: a resume must not stop again at its first batch.
        let _ = std::fs::remove_file(dir.stop_file());
    }
    if !best.exists() {
        return Err(Error::Training(format!(
            "stopped before the first epoch ended, so there is no best checkpoint yet; {}",
            resume_hint(dir, "checkpoint", "")
        )));
    }
    load(step.vars(), &best)?;
    Ok(TrainOutcome {
        history: state.history,
        steps: state.step_losses,
        best_epoch: state.best_epoch,
        best_val_acc: state.best_val_acc,
        checkpoint: best,
        train_samples: train_idx.len(),
        val_samples: val_idx.len(),
    })
}
