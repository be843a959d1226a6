//! Flags -> the library's configs.
use crate::args::{DataArgs, DatasetArg, HeadArgs, ModelArgs};
use anyhow::{bail, Result};
use std::path::PathBuf;
use transfer_lab::data::DataSpec;
use transfer_lab::features::ExtractConfig;
use transfer_lab::models::Tap;
use transfer_lab::preprocess::{Normalization, Preprocess};
use transfer_lab::run::{self, RunConfig, WeightsChoice};
use transfer_lab::train::{HeadConfig, ImageTrainConfig, Strategy, Unfreeze, ValSplit};

pub(crate) fn data_spec(d: &DataArgs) -> Result<DataSpec> {
    Ok(match d.dataset {
        DatasetArg::Cifar10 => DataSpec::Cifar10 { path: d.data.clone() },
        DatasetArg::Synthetic => DataSpec::Synthetic { train: d.synthetic_train, test: d.synthetic_test, seed: d.seed },
        DatasetArg::Folder => {
            let Some(root) = d.data.clone() else { bail!("--dataset folder needs --data ROOT") };
            DataSpec::Folder { root, side: 224 }
        }
    })
}

pub(crate) fn weights_choice(w: &str, seed: u64) -> WeightsChoice {
    match w {
        "random" => WeightsChoice::Random { seed: seed as i64 },
        _ if w.ends_with(".pth") || w.ends_with(".safetensors") || w.ends_with(".pt") || w.contains('/') => {
            WeightsChoice::File { path: PathBuf::from(w) }
        }
        v => WeightsChoice::Pretrained { variant: v.to_string() },
    }
}

pub(crate) fn extract_config(m: &ModelArgs) -> Result<ExtractConfig> {
    if !(16..=1024).contains(&m.size) {
        bail!("--size {}: expected 16..=1024 pixels", m.size);
    }
    if m.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let normalization: Normalization = m.norm.parse()?;
    let tap: Tap = m.layer.parse()?;
    Ok(ExtractConfig {
        preprocess: Preprocess { size: m.size, normalization },
        tap,
        batch_size: m.batch_size,
        shard_size: m.shard_size,
        precision: m.precision,
    })
}

pub(crate) fn run_config(d: &DataArgs, m: &ModelArgs, h: &HeadArgs, name: String, fallback: bool) -> Result<RunConfig> {
    let val_split = match h.val_split.as_str() {
        "last" => ValSplit::Last,
        "random" => ValSplit::Random,
        other => bail!("--val-split `{other}`: expected last or random"),
    };
    run::parse_device(&m.device)?;
    let strategy: Strategy = h.strategy.parse()?;
    let mut images = ImageTrainConfig::for_strategy(strategy);
    images.epochs = h.image_epochs;
    images.head_lr = h.lr;
    images.seed = d.seed as i64;
    images.augment = !h.no_augment;
    if let Some(lr) = h.body_lr {
        images.body_lr = lr;
    }
    if strategy == Strategy::FineTune {
        images.unfreeze = match h.unfreeze.as_str() {
            "layer4" => Unfreeze::Layer4,
            "all" => Unfreeze::All,
            other => bail!("--unfreeze `{other}`: expected layer4 or all"),
        };
        images.freeze_bn = match h.bn.as_str() {
            "frozen" => true,
            "train" => false,
            other => bail!("--bn `{other}`: expected frozen or train"),
        };
    }
    Ok(RunConfig {
        strategy,
        images,
        name,
        data: data_spec(d)?,
        arch: m.arch.parse()?,
        weights: weights_choice(&m.weights, d.seed),
        extract: extract_config(m)?,
        head: HeadConfig {
            epochs: h.epochs,
            learning_rate: h.lr,
            val_split,
            seed: d.seed as i64,
            ..Default::default()
        },
        device: m.device.clone(),
        limit: d.limit,
        offline_fallback: fallback,
    })
}
