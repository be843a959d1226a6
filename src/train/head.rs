//! The post's head with Keras semantics: Dropout(0.3) -> Dense(classes), softmax
//! cross-entropy, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-7), batch 32, 10 epochs,
//! `validation_split=0.2` (the last 20%, taken before shuffling), best epoch by validation
//! accuracy kept (Keras `ModelCheckpoint(save_best_only=True)`).
use super::adam::AdamOptimizer;
use super::fit::{fit, Adam, FitConfig, Split, TrainLoop, TrainStep};
use crate::events::EventSink;
use crate::rundir::{RunDir, Weights};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    #[serde(flatten)]
    pub fit: TrainLoop,
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Keras' default epsilon (PyTorch's is 1e-8).
    pub eps: f64,
    pub dropout: f64,
    /// How each class's rows weigh in the loss (`--class-weight`).
    #[serde(default)]
    pub class_weight: crate::metrics::ClassWeight,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            fit: TrainLoop::default(),
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            dropout: 0.3,
            class_weight: Default::default(),
        }
    }
}

impl HeadConfig {
    pub fn adam(&self) -> Adam {
        Adam { beta1: self.beta1, beta2: self.beta2, eps: self.eps }
    }

    /// Adam over `vs` with these settings (PyTorch's update rule, Keras' defaults).
    pub fn optimizer(&self, vs: &nn::VarStore) -> Result<AdamOptimizer> {
        self.adam().build(vs, &[self.learning_rate])
    }

    pub fn fit_config(&self) -> FitConfig {
        FitConfig {
            fit: self.fit.clone(),
            adam: self.adam(),
            learning_rates: vec![self.learning_rate],
            lr_scales: Vec::new(),
            class_weights: None,
        }
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
    /// `(epoch, step, loss)` of every training step, those before a resume included.
    #[serde(default)]
    pub steps: Vec<(u32, u64, f64)>,
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

/// The head's part of [`fit`]: batches are rows of the feature matrix.
struct HeadStep<'a> {
    head: &'a mut Head,
    features: &'a Tensor,
    labels: &'a Tensor,
}

impl HeadStep<'_> {
    fn rows(&self, idx: &[i64]) -> (Tensor, Tensor) {
        let i = Tensor::from_slice(idx);
        (self.features.index_select(0, &i.to_device(self.features.device())), self.labels.index_select(0, &i))
    }
}

impl TrainStep for HeadStep<'_> {
    fn vars(&mut self) -> &mut nn::VarStore {
        &mut self.head.vs
    }
    fn forward_train(&mut self, idx: &[i64]) -> Result<(Tensor, Tensor)> {
        let (x, y) = self.rows(idx);
        Ok((self.head.forward_t(&x, true), y))
    }
    fn evaluate(&mut self, idx: &[i64]) -> Result<Evaluation> {
        let (x, y) = self.rows(idx);
        evaluate(self.head, &x, &y)
    }
    fn data_fingerprint(&self) -> String {
        let sum = |t: &Tensor| t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        format!("features {:?} sum {:e}, labels sum {:e}", self.features.size(), sum(self.features), sum(self.labels))
    }
}

/// Trains a head on `features` `[N, D]` / `labels` `[N]` with [`fit`]: the best epoch's
/// weights are `head-best.safetensors` in `dir`, loaded back into the returned head; a
/// `STOP` file in `dir` (the dashboard's `s`) ends training after the current batch.
pub fn train_head(
    features: &Tensor,
    labels: &Tensor,
    classes: i64,
    cfg: &HeadConfig,
    dir: &RunDir,
    sink: &mut dyn EventSink,
) -> Result<(Head, TrainOutcome)> {
    validate(features, labels, classes)?;
    let mut fit_cfg = cfg.fit_config();
    // The split and the head's init; `fit` reseeds for every epoch and batch.
    tch::manual_seed(cfg.fit.seed);
    let split = Split::new(labels, &fit_cfg)?;
    if cfg.class_weight != crate::metrics::ClassWeight::None {
        let y = Vec::<i64>::try_from(&labels.to_device(Device::Cpu))?;
        let train: Vec<i64> = split.train.iter().map(|&i| y[i as usize]).collect();
        fit_cfg.class_weights = Some(cfg.class_weight.weights(&train, classes as usize));
    }
    let mut head = Head::new(features.size()[1], classes, cfg.dropout, features.device());
    let outcome = fit(&mut HeadStep { head: &mut head, features, labels }, &split, &fit_cfg, dir, Weights::Head, sink)?;
    Ok((head, outcome))
}

/// Loss, accuracy and predictions of `head` on features `[N, D]`.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    /// `[N]` i64 predicted classes.
    pub predictions: Vec<i64>,
    /// `[N]` the probability the model gave its prediction (softmax, or k-NN's vote share).
    pub confidence: Vec<f64>,
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
        return Ok(Evaluation {
            loss: f64::NAN,
            accuracy: f64::NAN,
            predictions: vec![],
            confidence: vec![],
            labels: vec![],
        });
    }
    tch::no_grad(|| {
        let logits = head.forward_t(features, false);
        let y = labels.to_device(features.device());
        let loss = logits.cross_entropy_for_logits(&y).double_value(&[]);
        let pred = logits.argmax(-1, false).to_device(Device::Cpu);
        let accuracy = pred.eq_tensor(labels).sum(Kind::Int64).int64_value(&[]) as f64 / n as f64;
        let confidence = logits.softmax(-1, Kind::Float).amax(-1, false).to_kind(Kind::Double).to_device(Device::Cpu);
        Ok(Evaluation {
            loss,
            accuracy,
            predictions: Vec::<i64>::try_from(&pred)?,
            confidence: Vec::<f64>::try_from(&confidence)?,
            labels: Vec::<i64>::try_from(&labels.to_kind(Kind::Int64))?,
        })
    })
}
