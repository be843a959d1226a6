//! The post's table beyond the linear probe, trained on images rather than cached
//! features: fine-tuning, training from a pretrained initialisation, and from scratch.
use super::head::{save_atomic, EpochMetrics, Evaluation, TrainOutcome};
use crate::data::Dataset;
use crate::events::{EventSink, RunEvent};
use crate::fsutil::{read_json, write_json_atomic};
use crate::models::{Arch, ResNet, Tap};
use crate::preprocess::Preprocess;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// The four strategies of the post's table, plus the control every comparison needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Small data like ImageNet: a linear classifier on the last stage's features.
    LinearProbe,
    /// Small data unlike ImageNet: the same head on an earlier stage's features.
    EarlierLayer,
    /// Large data like ImageNet: train the head, then unfreeze the top of the body.
    FineTune,
    /// Large data unlike ImageNet: every layer trainable from the ImageNet weights.
    PretrainedInit,
    /// The same network from random init.
    Scratch,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::LinearProbe,
        Strategy::EarlierLayer,
        Strategy::FineTune,
        Strategy::PretrainedInit,
        Strategy::Scratch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::LinearProbe => "linear-probe",
            Strategy::EarlierLayer => "earlier-layer",
            Strategy::FineTune => "fine-tune",
            Strategy::PretrainedInit => "pretrained-init",
            Strategy::Scratch => "scratch",
        }
    }

    /// Whether it trains on images (not on cached features).
    pub fn on_images(self) -> bool {
        matches!(self, Strategy::FineTune | Strategy::PretrainedInit | Strategy::Scratch)
    }
}

impl std::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Strategy::ALL.into_iter().find(|x| x.name() == s).ok_or_else(|| {
            let names: Vec<_> = Strategy::ALL.iter().map(|x| x.name()).collect();
            Error::invalid("strategy", format!("`{s}`; expected one of {}", names.join(", ")))
        })
    }
}

/// Which part of the body fine-tuning trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unfreeze {
    Layer4,
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageTrainConfig {
    pub epochs: u32,
    pub batch_size: i64,
    pub head_lr: f64,
    /// Lower than the head's: the body starts from useful weights.
    pub body_lr: f64,
    pub unfreeze: Unfreeze,
    /// Fine-tuning keeps BatchNorm's ImageNet statistics (small batches estimate them badly).
    pub freeze_bn: bool,
    /// Random crop (pad 4) + horizontal flip.
    pub augment: bool,
    pub dropout: f64,
    pub val_fraction: f64,
    pub seed: i64,
}

impl ImageTrainConfig {
    pub fn for_strategy(s: Strategy) -> ImageTrainConfig {
        let base = ImageTrainConfig {
            epochs: 5,
            batch_size: 32,
            head_lr: 1e-3,
            body_lr: 1e-4,
            unfreeze: Unfreeze::Layer4,
            freeze_bn: true,
            augment: true,
            dropout: 0.3,
            val_fraction: 0.2,
            seed: 0,
        };
        match s {
            Strategy::PretrainedInit => ImageTrainConfig { unfreeze: Unfreeze::All, freeze_bn: false, ..base },
            Strategy::Scratch => ImageTrainConfig { unfreeze: Unfreeze::All, freeze_bn: false, body_lr: 1e-3, ..base },
            _ => base,
        }
    }
}

/// Body + Dropout + `fc`; the body in optimiser group 0, `fc` in group 1 (own learning rate).
pub struct ImageModel {
    pub vs: nn::VarStore,
    pub net: ResNet,
    fc: nn::Linear,
    dropout: f64,
}

impl ImageModel {
    pub fn new(arch: Arch, classes: i64, dropout: f64, device: Device) -> ImageModel {
        let vs = nn::VarStore::new(device);
        let net = ResNet::new(&vs.root(), arch, None);
        let fc = nn::linear(vs.root().set_group(1) / "fc", arch.stage_channels()[3], classes, Default::default());
        ImageModel { vs, net, fc, dropout }
    }

    /// `[N, 3, S, S]` -> logits. `bn_train`: BatchNorm in training mode.
    pub fn forward_t(&self, x: &Tensor, bn_train: bool, dropout: bool) -> Tensor {
        self.fc.forward(&self.net.features(x, Tap::Layer4, bn_train).dropout(self.dropout, dropout))
    }

    /// Copies a trained head (`fc.weight`, `fc.bias`, e.g. the linear probe's) into `fc`.
    pub fn load_head(&mut self, path: &Path) -> Result<()> {
        crate::models::load_weights(&mut self.vs, path, &["conv1.", "bn1.", "layer"]).map(|_| ())
    }

    fn set_trainable(&self, unfreeze: Unfreeze) {
        for (name, v) in self.vs.variables() {
            let train = unfreeze == Unfreeze::All || name.starts_with("layer4.") || name.starts_with("fc.");
            let _ = v.set_requires_grad(train && !name.contains("running_"));
        }
    }
}

/// Per-epoch progress, saved so an interrupted run resumes at the next epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    epoch: u32,
    best_epoch: u32,
    best_val_acc: f64,
    history: Vec<EpochMetrics>,
}

/// Random crop after 4-pixel reflection padding, and horizontal flip, per sample.
fn augment(x: &Tensor) -> Tensor {
    let (n, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
    let padded = x.to_kind(Kind::Float).reflection_pad2d([4, 4, 4, 4]);
    let offs = Tensor::randint(9, [n, 2], (Kind::Int64, Device::Cpu));
    let flips = Tensor::rand([n], (Kind::Float, Device::Cpu)).lt(0.5);
    let crops: Vec<Tensor> = (0..n)
        .map(|i| {
            let c = padded.get(i).narrow(1, offs.int64_value(&[i, 0]), h).narrow(2, offs.int64_value(&[i, 1]), w);
            if flips.int64_value(&[i]) != 0 {
                c.flip([2])
            } else {
                c
            }
        })
        .collect();
    Tensor::stack(&crops, 0)
}

/// Trains `model` on `train` images (the last `val_fraction` held out, as Keras does).
/// Checkpoints every epoch (`model-last.safetensors` + `train-state.json`) and resumes
/// from them; the best epoch by validation accuracy is `model-best.safetensors`, loaded at
/// the end. A `STOP` file in `dir` ends training after the current batch, checkpointed.
pub fn train_on_images(
    model: &mut ImageModel,
    train: &Dataset,
    pre: &Preprocess,
    cfg: &ImageTrainConfig,
    dir: &Path,
    sink: &mut dyn EventSink,
) -> Result<TrainOutcome> {
    let n = train.len() as i64;
    let n_val = (n as f64 * cfg.val_fraction).floor() as i64;
    if n - n_val < 2 || n_val < 1 {
        return Err(Error::invalid("training data", format!("{n} images; need more to train and validate")));
    }
    model.set_trainable(cfg.unfreeze);
    crate::heap::reuse_freed_memory();
    let adam = nn::Adam { eps: 1e-7, ..Default::default() };
    let mut opt = adam.build(&model.vs, cfg.head_lr)?;
    opt.set_lr_group(0, cfg.body_lr);
    opt.set_lr_group(1, cfg.head_lr);
    let (last, best, state_path) =
        (dir.join("model-last.safetensors"), dir.join("model-best.safetensors"), dir.join("train-state.json"));
    let mut state = TrainState { epoch: 0, best_epoch: 0, best_val_acc: f64::NEG_INFINITY, history: vec![] };
    if state_path.exists() && last.exists() {
        state = read_json(&state_path)?;
        model.vs.load(&last)?;
        sink.info(&format!("resuming after epoch {} from {}", state.epoch, last.display()));
    }
    let device = model.vs.device();
    let val_idx: Vec<i64> = (n - n_val..n).collect();
    let mut step = 0u64;
    for epoch in state.epoch + 1..=cfg.epochs {
        tch::manual_seed(cfg.seed + epoch as i64);
        let perm = Vec::<i64>::try_from(&Tensor::randperm(n - n_val, (Kind::Int64, Device::Cpu)))?;
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0i64);
        let mut stopped = false;
        for idx in perm.chunks(cfg.batch_size as usize) {
            let (imgs, y) = train.gather(idx)?;
            let imgs = if cfg.augment { augment(&imgs) } else { imgs };
            let x = pre.apply(&imgs, device)?;
            let y = y.to_device(device);
            let logits = model.forward_t(&x, !cfg.freeze_bn, true);
            let loss = logits.cross_entropy_for_logits(&y);
            let loss_v = loss.double_value(&[]);
            step += 1;
            if !loss_v.is_finite() {
                return Err(Error::Training(format!(
                    "loss is {loss_v} at epoch {epoch} step {step}; the last good checkpoint is {}",
                    last.display()
                )));
            }
            opt.backward_step(&loss);
            loss_sum += loss_v * idx.len() as f64;
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            seen += idx.len() as i64;
            sink.emit(&RunEvent::StepFinished { epoch, step, loss: loss_v });
            if dir.join("STOP").exists() {
                stopped = true;
                break;
            }
        }
        let ev = evaluate_images(model, train, &val_idx, pre, cfg.batch_size)?;
        let m = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            val_loss: ev.loss,
            val_acc: ev.accuracy,
        };
        let is_best = m.val_acc > state.best_val_acc;
        if is_best {
            state.best_val_acc = m.val_acc;
            state.best_epoch = epoch;
            save_atomic(&model.vs, &best)?;
        }
        save_atomic(&model.vs, &last)?;
        state.epoch = epoch;
        state.history.push(m.clone());
        write_json_atomic(&state_path, &state)?;
        sink.emit(&RunEvent::EpochFinished {
            epoch,
            train_loss: m.train_loss,
            train_acc: m.train_acc,
            val_loss: m.val_loss,
            val_acc: m.val_acc,
            best: is_best,
        });
        if stopped {
            sink.warn(&format!("stopped on request after step {step} of epoch {epoch}; checkpoint saved"));
            break;
        }
    }
    if best.exists() {
        model.vs.load(&best)?;
    }
    crate::heap::release_free_pages();
    Ok(TrainOutcome {
        history: state.history,
        best_epoch: state.best_epoch,
        best_val_acc: state.best_val_acc,
        checkpoint: best,
        train_samples: (n - n_val) as usize,
        val_samples: n_val as usize,
    })
}

/// Loss and accuracy of `model` (eval mode) on `data[indices]`, in batches.
pub fn evaluate_images(
    model: &ImageModel,
    data: &Dataset,
    indices: &[i64],
    pre: &Preprocess,
    batch: i64,
) -> Result<Evaluation> {
    let device = model.vs.device();
    let (mut loss_sum, mut predictions, mut labels) = (0.0, Vec::new(), Vec::new());
    for idx in indices.chunks(batch.max(1) as usize) {
        let (imgs, y) = data.gather(idx)?;
        let x = pre.apply(&imgs, device)?;
        let logits = tch::no_grad(|| model.forward_t(&x, false, false));
        let loss = logits.cross_entropy_for_logits(&y.to_device(device)).double_value(&[]);
        loss_sum += loss * idx.len() as f64;
        predictions.extend(Vec::<i64>::try_from(&logits.argmax(-1, false).to_device(Device::Cpu))?);
        labels.extend(Vec::<i64>::try_from(&y)?);
    }
    let n = labels.len().max(1) as f64;
    let correct = predictions.iter().zip(&labels).filter(|(p, y)| p == y).count();
    Ok(Evaluation { loss: loss_sum / n, accuracy: correct as f64 / n, predictions, labels })
}
