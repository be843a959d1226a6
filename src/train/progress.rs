//! The training loop's progress and how it is checkpointed and resumed, by the one
//! protocol of [`crate::checkpoint`]: the progress rides in the last checkpoint's metadata
//! with the weights and Adam's moments; `train-state.json` is a copy to read.
use super::adam::AdamOptimizer;
use super::fit::{FitConfig, TrainLoop, TrainStep};
use super::head::EpochMetrics;
use crate::checkpoint::{Checkpoint, Identity};
use crate::events::EventSink;
use crate::fsutil::{read_json, write_json_atomic};
use crate::rundir::{RunDir, Weights};
use crate::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Sums over the batches of an epoch so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Running {
    pub(super) loss_sum: f64,
    pub(super) correct: i64,
    pub(super) seen: i64,
}

/// An epoch checkpointed before its end: its number and the batches done.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Partial {
    pub(super) epoch: u32,
    pub(super) batches: usize,
    pub(super) running: Running,
}

/// The loop's progress. It travels in the metadata of the last checkpoint, so weights,
/// optimiser and progress are replaced by one rename; `train-state.json` is a copy to read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TrainState {
    pub(super) epoch: u32,
    pub(super) best_epoch: u32,
    /// -inf before the first epoch ends, which JSON writes as `null`.
    #[serde(deserialize_with = "null_is_neg_infinity")]
    pub(super) best_val_acc: f64,
    pub(super) history: Vec<EpochMetrics>,
    /// Optimiser steps taken so far; absent in older runs.
    #[serde(default)]
    pub(super) steps: u64,
    /// `(epoch, step, loss)` of each step so far, for `steps.csv`.
    #[serde(default)]
    pub(super) step_losses: Vec<(u32, u64, f64)>,
    /// The settings and sample count the state belongs to; absent in older runs.
    #[serde(default)]
    pub(super) config: Option<FitConfig>,
    #[serde(default)]
    pub(super) samples: Option<i64>,
    #[serde(default)]
    pub(super) data: Option<String>,
    /// Set when the checkpoint was taken within an epoch.
    #[serde(default)]
    pub(super) partial: Option<Partial>,
}

fn null_is_neg_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

/// Metadata key of the training state in a last checkpoint.
const STATE_KEY: &str = "tlab.train_state";

impl TrainState {
    /// Nothing trained yet, for `cfg` on `n` samples.
    fn fresh(cfg: &FitConfig, n: i64) -> TrainState {
        TrainState {
            epoch: 0,
            best_epoch: 0,
            best_val_acc: f64::NEG_INFINITY,
            history: vec![],
            steps: 0,
            step_losses: vec![],
            config: Some(cfg.clone()),
            samples: Some(n),
            data: None,
            partial: None,
        }
    }
}

fn checkpoint(dir: &RunDir, w: Weights) -> Checkpoint<'_> {
    Checkpoint { dir, weights: w, key: STATE_KEY }
}

/// Weights, optimiser state and progress into the last checkpoint (one rename), then
/// the readable copy of the progress.
pub(super) fn save(vs: &nn::VarStore, opt: &AdamOptimizer, state: &TrainState, dir: &RunDir, w: Weights) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.extend(opt.state_tensors());
    checkpoint(dir, w).save(state, &tensors)?;
    write_json_atomic(&dir.train_state_file(), state)
}

/// The saved state when `dir` holds this training's (same settings, sample count and
/// data), with weights and optimiser restored from the last checkpoint; otherwise a fresh
/// start.
pub(super) fn resume(
    step: &mut dyn TrainStep,
    opt: &mut AdamOptimizer,
    cfg: &FitConfig,
    n: i64,
    dir: &RunDir,
    w: Weights,
    sink: &mut dyn EventSink,
) -> Result<TrainState> {
    let fresh = TrainState::fresh(cfg, n);
    let ckpt = checkpoint(dir, w);
    let Some(mut loaded) = ckpt.load::<TrainState>()? else {
        return Ok(fresh);
    };
    let (state, exact) = match loaded.state.take() {
        Some(state) => (state, true),
        // Written before checkpoints carried their state: the separate file, no moments.
        None if dir.train_state_file().exists() => (read_json(&dir.train_state_file())?, false),
        None => return Ok(fresh),
    };
    // Older states carry no settings; they are taken as this training's. More (or fewer)
    // epochs, or another checkpoint interval, still resume a training.
    let settings = state.config.as_ref().map(|c| {
        let fit = TrainLoop { epochs: cfg.fit.epochs, checkpoint_every: cfg.fit.checkpoint_every, ..c.fit.clone() };
        FitConfig { fit, ..c.clone() }
    });
    let data = step.data_fingerprint();
    let saved = Identity { settings: settings.as_ref(), samples: state.samples, data: state.data.as_deref() };
    let now = Identity { settings: Some(cfg), samples: Some(n), data: Some(data.as_str()) };
    if !ckpt.same_job(saved, now, "training", sink) {
        return Ok(fresh);
    }
    let last = &loaded.path;
    loaded.restore(step.vars())?;
    opt.load_state(&loaded.tensors).map_err(|e| e.in_context(last.display().to_string()))?;
    let at = match state.partial {
        Some(p) => format!("batch {} of epoch {}", p.batches, p.epoch),
        None => format!("epoch {}", state.epoch),
    };
    if exact {
        sink.info(&format!("resuming after {at} from {}", last.display()));
    } else {
        sink.warn(&format!(
            "resuming after {at} from {}, an older checkpoint without Adam's state: the moments restart from \
             zero, so results will differ from an uninterrupted run",
            last.display()
        ));
    }
    let state = TrainState { config: Some(cfg.clone()), samples: Some(n), ..state };
    // The copy may lag the checkpoint if a run died between the two writes.
    write_json_atomic(&dir.train_state_file(), &state)?;
    Ok(state)
}
