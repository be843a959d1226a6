//! The post's table beyond the linear probe, trained on images rather than cached
//! features: fine-tuning, training from a pretrained initialisation, and from scratch.
use super::fit::{fit, Adam, FitConfig, Split, TrainLoop, TrainStep};
use super::head::{Evaluation, TrainOutcome};
use crate::data::Dataset;
use crate::events::EventSink;
use crate::metrics::ClassWeight;
use crate::models::{Arch, Network, Pool, Tap};
use crate::preprocess::Preprocess;
use crate::rundir::{RunDir, Weights};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// The four strategies of the post's table, plus the control every comparison needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Small data like ImageNet: a linear classifier on the last stage's features.
    #[default]
    LinearProbe,
    /// Small data unlike ImageNet: the same head on an earlier stage's features.
    EarlierLayer,
    /// Large data like ImageNet: train the head, then unfreeze the top of the body.
    FineTune,
    /// Large data unlike ImageNet: every layer trainable from the ImageNet weights.
    PretrainedInit,
    /// The same network from random init.
    Scratch,
    /// Beyond the post: multinomial logistic regression on the last stage's features by
    /// L-BFGS, its L2 penalty swept on the validation split, then refit on train + validation.
    Logreg,
    /// Beyond the post: weighted k-NN on L2-normalised features (DINO's evaluation).
    Knn,
}

impl Strategy {
    /// Whether it trains on images (not on cached features).
    pub fn on_images(self) -> bool {
        matches!(self, Strategy::FineTune | Strategy::PretrainedInit | Strategy::Scratch)
    }

    /// The convex probes (`crate::probe`), fitted on cached features without `fit`'s epochs.
    pub fn is_convex_probe(self) -> bool {
        matches!(self, Strategy::Logreg | Strategy::Knn)
    }

    /// The post's table and its control, without the probes added beyond it.
    pub fn post_table() -> &'static [Strategy] {
        &[
            Strategy::LinearProbe,
            Strategy::EarlierLayer,
            Strategy::FineTune,
            Strategy::PretrainedInit,
            Strategy::Scratch,
        ]
    }
}

crate::choice::choice!(Strategy, "strategy");

/// Which part of the body fine-tuning trains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Unfreeze {
    /// The last stage and the head.
    #[default]
    Layer4,
    /// Every layer.
    All,
}

crate::choice::choice!(Unfreeze, "unfreeze");

/// BatchNorm while fine-tuning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BatchNorm {
    /// ImageNet's statistics kept (small batches estimate them badly).
    #[default]
    Frozen,
    /// Statistics and affine parameters trained.
    Train,
}

crate::choice::choice!(BatchNorm, "batch norm");

/// `bn`, or the `freeze_bn: true|false` that runs recorded before it.
fn bn_or_freeze_bn<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<BatchNorm, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bn(BatchNorm),
        Frozen(bool),
    }
    Ok(match Either::deserialize(d)? {
        Either::Bn(b) => b,
        Either::Frozen(true) => BatchNorm::Frozen,
        Either::Frozen(false) => BatchNorm::Train,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageTrainConfig {
    #[serde(flatten)]
    pub fit: TrainLoop,
    pub head_lr: f64,
    /// Lower than the head's: the body starts from useful weights.
    pub body_lr: f64,
    pub unfreeze: Unfreeze,
    /// Fine-tuning keeps BatchNorm's ImageNet statistics (small batches estimate them badly).
    #[serde(alias = "freeze_bn", deserialize_with = "bn_or_freeze_bn")]
    pub bn: BatchNorm,
    /// Random crop (pad 4) + horizontal flip.
    pub augment: bool,
    pub dropout: f64,
    /// Layer-wise learning-rate decay (BEiT's): layer `l` of `L` from the output trains at
    /// `body_lr * decay^l`. `None`: 0.75 for ViTs (what their fine-tuning recipes use),
    /// off for CNNs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_decay: Option<f64>,
    /// How the loss weighs each class's images (the training rows' counts, as the head's).
    /// Absent when none, so configs recorded before it are unchanged.
    #[serde(default, skip_serializing_if = "is_unweighted")]
    pub class_weight: ClassWeight,
}

fn is_unweighted(w: &ClassWeight) -> bool {
    *w == ClassWeight::None
}

impl ImageTrainConfig {
    pub fn for_strategy(s: Strategy) -> ImageTrainConfig {
        let base = ImageTrainConfig {
            fit: TrainLoop { epochs: 5, ..Default::default() },
            head_lr: 1e-3,
            body_lr: 1e-4,
            unfreeze: Unfreeze::Layer4,
            bn: BatchNorm::Frozen,
            augment: true,
            dropout: 0.3,
            layer_decay: None,
            class_weight: ClassWeight::None,
        };
        match s {
            Strategy::PretrainedInit => ImageTrainConfig { unfreeze: Unfreeze::All, bn: BatchNorm::Train, ..base },
            Strategy::Scratch => {
                ImageTrainConfig { unfreeze: Unfreeze::All, bn: BatchNorm::Train, body_lr: 1e-3, ..base }
            }
            _ => base,
        }
    }

    /// The loop's settings: the body in group 0 at `body_lr`, `fc` in group 1 at `head_lr`.
    pub fn fit_config(&self) -> FitConfig {
        FitConfig {
            fit: self.fit.clone(),
            adam: Adam::default(),
            learning_rates: vec![self.body_lr, self.head_lr],
            lr_scales: Vec::new(),
            class_weights: None,
        }
    }
}

/// Body + Dropout + `fc`; the body in optimiser group 0, `fc` in group 1 (own learning rate).
pub struct ImageModel {
    pub vs: nn::VarStore,
    pub net: Box<dyn Network>,
    fc: nn::Linear,
    dropout: f64,
    pool: Pool,
}

impl ImageModel {
    /// The head on the architecture's own pooling ([`Arch::default_pool`]).
    pub fn new(arch: Arch, classes: i64, dropout: f64, device: Device) -> ImageModel {
        ImageModel::with_pool(arch, arch.default_pool(), classes, dropout, device)
    }

    /// `pool`: how the last tap becomes the head's input (see [`Arch::pool`]).
    pub fn with_pool(arch: Arch, pool: Pool, classes: i64, dropout: f64, device: Device) -> ImageModel {
        let vs = nn::VarStore::new(device);
        let net = arch.build(&vs.root());
        let fc =
            nn::linear(vs.root().set_group(1) / "fc", arch.pooled_dim(Tap::Layer4, pool), classes, Default::default());
        ImageModel { vs, net, fc, dropout, pool }
    }

    /// `[N, 3, S, S]` -> logits. `bn_train`: BatchNorm in training mode.
    pub fn forward_t(&self, x: &Tensor, bn_train: bool, dropout: bool) -> Tensor {
        self.fc.forward(&self.net.readout_t(x, Tap::Layer4, self.pool, bn_train).dropout(self.dropout, dropout))
    }

    /// Copies a trained head (`fc.weight`, `fc.bias`, e.g. the linear probe's) into `fc`.
    pub fn load_head(&mut self, path: &Path) -> Result<()> {
        let body: Vec<String> = self.vs.variables().into_keys().filter(|k| !k.starts_with("fc.")).collect();
        let body: Vec<&str> = body.iter().map(String::as_str).collect();
        crate::models::load_weights(&mut self.vs, path, &body).map(|_| ())
    }

    fn set_trainable(&self, unfreeze: Unfreeze) {
        for (name, v) in self.vs.variables() {
            let train = unfreeze == Unfreeze::All || self.net.arch().in_last_stage(&name) || name.starts_with("fc.");
            let _ = v.set_requires_grad(train && !name.contains("running_"));
        }
    }
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

/// The image strategies' part of [`fit`]: batches are gathered, augmented and
/// preprocessed images.
struct ImageStep<'a> {
    model: &'a mut ImageModel,
    data: &'a Dataset,
    pre: &'a Preprocess,
    cfg: &'a ImageTrainConfig,
}

impl TrainStep for ImageStep<'_> {
    fn vars(&mut self) -> &mut nn::VarStore {
        &mut self.model.vs
    }
    fn forward_train(&mut self, idx: &[i64]) -> Result<(Tensor, Tensor)> {
        // Photos: RandomResizedCrop + flip while decoding; in-memory CIFAR: pad-and-crop + flip.
        let (imgs, y) = match self.cfg.augment {
            true => match self.data.gather_augmented(idx)? {
                Some(b) => b,
                None => {
                    let (imgs, y) = self.data.gather(idx)?;
                    (augment(&imgs), y)
                }
            },
            false => self.data.gather(idx)?,
        };
        let x = self.pre.apply(&imgs, self.model.vs.device())?;
        Ok((self.model.forward_t(&x, self.cfg.bn == BatchNorm::Train, true), y))
    }
    fn evaluate(&mut self, idx: &[i64]) -> Result<Evaluation> {
        evaluate_images(self.model, self.data, idx, self.pre, self.cfg.fit.batch_size)
    }
    fn data_fingerprint(&self) -> String {
        format!("{} {:?}", self.data.digest, self.pre)
    }
}

/// Trains `model` on `train` images with [`fit`]: checkpoints every epoch (and every
/// `checkpoint_every` steps) into `model-last.safetensors` and resumes from it exactly;
/// the best epoch by validation accuracy is `model-best.safetensors`, loaded at the end. A
/// `STOP` file in `dir` ends training after the current batch, checkpointed.
pub fn train_on_images(
    model: &mut ImageModel,
    train: &Dataset,
    pre: &Preprocess,
    cfg: &ImageTrainConfig,
    dir: &RunDir,
    sink: &mut dyn EventSink,
) -> Result<TrainOutcome> {
    model.set_trainable(cfg.unfreeze);
    let mut fit_cfg = cfg.fit_config();
    fit_cfg.lr_scales = layer_scales(model.net.as_ref(), cfg.layer_decay, cfg.body_lr, sink)?;
    tch::manual_seed(cfg.fit.seed);
    let labels = train.labels();
    let split = Split::new(&labels, &fit_cfg)?;
    if cfg.class_weight != ClassWeight::None {
        let y = Vec::<i64>::try_from(&labels)?;
        let rows: Vec<i64> = split.train.iter().map(|&i| y[i as usize]).collect();
        fit_cfg.class_weights = Some(cfg.class_weight.weights(&rows, train.classes.len()));
    }
    fit(&mut ImageStep { model, data: train, pre, cfg }, &split, &fit_cfg, dir, Weights::Model, sink)
}

/// The default layer-wise decay where a network has a ladder of layers.
pub const VIT_LAYER_DECAY: f64 = 0.75;

/// Learning-rate multipliers by prefix for `decay` over `net`'s layer ladder, said aloud.
fn layer_scales(
    net: &dyn Network,
    decay: Option<f64>,
    body_lr: f64,
    sink: &mut dyn EventSink,
) -> Result<Vec<(String, f64)>> {
    let ladder = net.layer_ladder();
    if ladder.is_empty() {
        return match decay {
            Some(d) if d != 1.0 => Err(crate::Error::invalid(
                "--layer-decay",
                format!("{} has no ladder of layers to decay over; it applies to ViTs", net.arch().name()),
            )),
            _ => Ok(Vec::new()),
        };
    }
    let d = decay.unwrap_or(VIT_LAYER_DECAY);
    if !(d > 0.0 && d <= 1.0) {
        return Err(crate::Error::invalid("--layer-decay", format!("{d} is outside (0, 1]")));
    }
    let top = ladder.len() - 1;
    let scales: Vec<(String, f64)> = ladder
        .iter()
        .enumerate()
        .flat_map(|(i, prefixes)| prefixes.iter().map(move |p| (p.clone(), d.powi((top - i) as i32))))
        .collect();
    if d < 1.0 {
        sink.info(&format!(
            "layer-wise learning-rate decay {d}: the last block at {:.2e}, the first at {:.2e}, the embeddings at {:.2e}",
            body_lr * d,
            body_lr * d.powi(top as i32 - 1),
            body_lr * d.powi(top as i32)
        ));
    }
    Ok(scales)
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
    let (mut loss_sum, mut predictions, mut confidence, mut labels) = (0.0, Vec::new(), Vec::new(), Vec::new());
    for idx in indices.chunks(batch.max(1) as usize) {
        crate::interrupt::check(|| "stopped while evaluating; nothing was written".into())?;
        let (imgs, y) = data.gather(idx)?;
        let x = pre.apply(&imgs, device)?;
        let logits = tch::no_grad(|| model.forward_t(&x, false, false));
        let loss = logits.cross_entropy_for_logits(&y.to_device(device)).double_value(&[]);
        loss_sum += loss * idx.len() as f64;
        predictions.extend(Vec::<i64>::try_from(&logits.argmax(-1, false).to_device(Device::Cpu))?);
        let p = logits.softmax(-1, Kind::Float).amax(-1, false).to_kind(Kind::Double).to_device(Device::Cpu);
        confidence.extend(Vec::<f64>::try_from(&p)?);
        labels.extend(Vec::<i64>::try_from(&y)?);
    }
    let n = labels.len().max(1) as f64;
    let correct = predictions.iter().zip(&labels).filter(|(p, y)| p == y).count();
    Ok(Evaluation { loss: loss_sum / n, accuracy: correct as f64 / n, predictions, confidence, labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_recorded_before_bn_still_read() {
        let mut v = serde_json::to_value(ImageTrainConfig::for_strategy(Strategy::FineTune)).unwrap();
        assert_eq!(v["bn"], "frozen");
        // The shared loop settings stay flat in config.json, as runs recorded them.
        assert_eq!((v["epochs"].as_u64(), v["batch_size"].as_i64()), (Some(5), Some(32)));
        let o = v.as_object_mut().unwrap();
        o.remove("bn");
        o.insert("freeze_bn".into(), false.into());
        let c: ImageTrainConfig = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(c.bn, BatchNorm::Train);
        v["freeze_bn"] = true.into();
        assert_eq!(serde_json::from_value::<ImageTrainConfig>(v).unwrap().bn, BatchNorm::Frozen);
    }
}
