//! The post's head with Keras semantics: Dropout(0.3) -> Dense(classes), softmax
//! cross-entropy, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-7), batch 32, 10 epochs,
//! `validation_split=0.2` (the last 20%, taken before shuffling), best epoch by validation
//! accuracy kept (Keras `ModelCheckpoint(save_best_only=True)`).
use crate::events::{EventSink, RunEvent};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// How the validation set is cut from the training arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValSplit {
    /// Keras: the last fraction of the arrays, before any shuffling.
    Last,
    /// A seeded random subset.
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    pub epochs: u32,
    pub batch_size: i64,
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Keras' default epsilon (PyTorch's is 1e-8).
    pub eps: f64,
    pub dropout: f64,
    pub val_fraction: f64,
    pub val_split: ValSplit,
    pub seed: i64,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            epochs: 10,
            batch_size: 32,
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            dropout: 0.3,
            val_fraction: 0.2,
            val_split: ValSplit::Last,
            seed: 0,
        }
    }
}

impl HeadConfig {
    /// Adam over `vs` with these settings (PyTorch's update rule, Keras' defaults).
    pub fn optimizer(&self, vs: &nn::VarStore) -> Result<nn::Optimizer> {
        let adam = nn::Adam { beta1: self.beta1, beta2: self.beta2, wd: 0.0, eps: self.eps, amsgrad: false };
        Ok(adam.build(vs, self.learning_rate)?)
    }
}

/// Dropout -> Linear. The linear layer is named `fc`, so backbone + head export as a
/// torchvision-style checkpoint.
pub struct Head {
    pub vs: nn::VarStore,
    fc: nn::Linear,
    dropout: f64,
}

impl Head {
    pub fn new(in_dim: i64, classes: i64, dropout: f64, device: Device) -> Head {
        let vs = nn::VarStore::new(device);
        let fc = nn::linear(vs.root() / "fc", in_dim, classes, Default::default());
        Head { vs, fc, dropout }
    }

    /// The feature width D the head was built for.
    pub fn in_dim(&self) -> i64 {
        self.fc.ws.size()[1]
    }

    /// `[N, D]` features -> `[N, classes]` logits.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.fc.forward(&xs.dropout(self.dropout, train))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: u32,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub history: Vec<EpochMetrics>,
    pub best_epoch: u32,
    pub best_val_acc: f64,
    pub checkpoint: PathBuf,
    pub train_samples: usize,
    pub val_samples: usize,
}

/// Checks features `[N, D]` and labels `[N]` before any training.
fn validate(features: &Tensor, labels: &Tensor, classes: i64) -> Result<()> {
    let fs = features.size();
    if fs.len() != 2 || labels.size() != [fs[0]] {
        return Err(Error::invalid(
            "training data",
            format!("features {fs:?} and labels {:?} do not pair up", labels.size()),
        ));
    }
    if fs[0] < 2 {
        return Err(Error::invalid("training data", format!("{} samples; need at least 2", fs[0])));
    }
    let (lo, hi) = (labels.min().int64_value(&[]), labels.max().int64_value(&[]));
    if lo < 0 || hi >= classes {
        return Err(Error::invalid("labels", format!("range {lo}..={hi} outside 0..{classes}")));
    }
    if lo == hi {
        return Err(Error::invalid("training data", format!("every label is {lo}: a single class cannot be learned")));
    }
    Ok(())
}

/// Splits indices into (train, val) as `cfg` says.
fn split_indices(n: i64, cfg: &HeadConfig) -> (Tensor, Tensor) {
    let n_val = ((n as f64) * cfg.val_fraction).floor() as i64;
    let order = match cfg.val_split {
        ValSplit::Last => Tensor::arange(n, (Kind::Int64, Device::Cpu)),
        ValSplit::Random => Tensor::randperm(n, (Kind::Int64, Device::Cpu)),
    };
    (order.narrow(0, 0, n - n_val), order.narrow(0, n - n_val, n_val))
}

/// Trains a head on `features` `[N, D]` / `labels` `[N]`; the best epoch's weights are
/// saved to `<out_dir>/head-best.safetensors` and loaded back into the returned head.
/// A `STOP` file in `out_dir` (the dashboard's `s`) ends training after the current batch.
pub fn train_head(
    features: &Tensor,
    labels: &Tensor,
    classes: i64,
    cfg: &HeadConfig,
    out_dir: &Path,
    sink: &mut dyn EventSink,
) -> Result<(Head, TrainOutcome)> {
    validate(features, labels, classes)?;
    tch::manual_seed(cfg.seed);
    let device = features.device();
    let (tr_idx, va_idx) = split_indices(features.size()[0], cfg);
    let (xt, yt) = (features.index_select(0, &tr_idx.to_device(device)), labels.index_select(0, &tr_idx));
    let (xv, yv) = (features.index_select(0, &va_idx.to_device(device)), labels.index_select(0, &va_idx));
    let mut head = Head::new(features.size()[1], classes, cfg.dropout, device);
    let mut opt = cfg.optimizer(&head.vs)?;
    let checkpoint = out_dir.join("head-best.safetensors");
    let mut history = Vec::new();
    let (mut best_epoch, mut best_acc) = (0u32, f64::NEG_INFINITY);
    let mut step = 0u64;
    for epoch in 1..=cfg.epochs {
        let n = xt.size()[0];
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0i64);
        let mut stopped = false;
        for start in (0..n).step_by(cfg.batch_size as usize) {
            let len = cfg.batch_size.min(n - start);
            let idx = perm.narrow(0, start, len);
            let (x, y) = (xt.index_select(0, &idx.to_device(device)), yt.index_select(0, &idx).to_device(device));
            let logits = head.forward_t(&x, true);
            let loss = logits.cross_entropy_for_logits(&y);
            let loss_v = loss.double_value(&[]);
            step += 1;
            if !loss_v.is_finite() {
                return Err(Error::Training(format!(
                    "loss is {loss_v} at epoch {epoch} step {step}; the best checkpoint so far is kept at {}",
                    checkpoint.display()
                )));
            }
            opt.backward_step(&loss);
            loss_sum += loss_v * len as f64;
            seen += len;
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            sink.emit(&RunEvent::StepFinished { epoch, step, loss: loss_v });
            if out_dir.join("STOP").exists() {
                stopped = true;
                break;
            }
        }
        let ev = evaluate(&head, &xv, &yv)?;
        let m = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            val_loss: ev.loss,
            val_acc: ev.accuracy,
        };
        let best = m.val_acc > best_acc;
        if best {
            best_acc = m.val_acc;
            best_epoch = epoch;
            save_atomic(&head.vs, &checkpoint)?;
        }
        sink.emit(&RunEvent::EpochFinished {
            epoch,
            train_loss: m.train_loss,
            train_acc: m.train_acc,
            val_loss: m.val_loss,
            val_acc: m.val_acc,
            best,
        });
        history.push(m);
        if stopped {
            sink.warn(&format!("stopped on request after step {step} of epoch {epoch}; best checkpoint kept"));
            break;
        }
    }
    head.vs.load(&checkpoint)?;
    let outcome = TrainOutcome {
        history,
        best_epoch,
        best_val_acc: best_acc,
        checkpoint,
        train_samples: xt.size()[0] as usize,
        val_samples: xv.size()[0] as usize,
    };
    Ok((head, outcome))
}

/// Saves a var store through a temp file, so the previous best stays whole on a crash.
pub fn save_atomic(vs: &nn::VarStore, path: &Path) -> Result<()> {
    use crate::error::IoContext;
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp)?;
    std::fs::rename(&tmp, path).ctx(|| format!("renaming {}", tmp.display()))
}

/// Loss, accuracy and predictions of `head` on features `[N, D]`.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    /// `[N]` i64 predicted classes.
    pub predictions: Vec<i64>,
    pub labels: Vec<i64>,
}

pub fn evaluate(head: &Head, features: &Tensor, labels: &Tensor) -> Result<Evaluation> {
    let (fs, want) = (features.size(), head.in_dim());
    if fs.len() != 2 || fs[1] != want || labels.size() != [fs[0]] {
        return Err(Error::invalid(
            "features for the head",
            format!(
                "features {fs:?} with labels {:?}; the head takes [N, {want}] (a different layer or backbone?)",
                labels.size()
            ),
        ));
    }
    let n = fs[0];
    if n == 0 {
        return Ok(Evaluation { loss: f64::NAN, accuracy: f64::NAN, predictions: vec![], labels: vec![] });
    }
    tch::no_grad(|| {
        let logits = head.forward_t(features, false);
        let y = labels.to_device(features.device());
        let loss = logits.cross_entropy_for_logits(&y).double_value(&[]);
        let pred = logits.argmax(-1, false).to_device(Device::Cpu);
        let accuracy = pred.eq_tensor(labels).sum(Kind::Int64).int64_value(&[]) as f64 / n as f64;
        Ok(Evaluation {
            loss,
            accuracy,
            predictions: Vec::<i64>::try_from(&pred)?,
            labels: Vec::<i64>::try_from(&labels.to_kind(Kind::Int64))?,
        })
    })
}
