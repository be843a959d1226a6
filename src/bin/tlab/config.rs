//! Flags -> the library's configs (the objects built from what was parsed).
use crate::args::{DataArgs, DatasetArg, HeadArgs, ModelArgs, RunArgs, WeightsArg};
use anyhow::{bail, Result};
use transfer_lab::data::folder::FolderSpec;
use transfer_lab::data::DataSpec;
use transfer_lab::features::ExtractConfig;
use transfer_lab::preprocess::Preprocess;
use transfer_lab::probe::{KnnConfig, LogregConfig, ProbeConfig};
use transfer_lab::run::{RunConfig, WeightsChoice};
use transfer_lab::train::{BatchNorm, HeadConfig, ImageTrainConfig, Strategy};

pub(crate) fn data_spec(d: &DataArgs, m: &ModelArgs) -> Result<DataSpec> {
    Ok(match d.dataset {
        DatasetArg::Cifar10 => DataSpec::Cifar10 { path: d.data.clone() },
        DatasetArg::Synthetic => DataSpec::Synthetic {
            train: d.synthetic_train,
            test: d.synthetic_test,
            seed: d.seed,
            difficulty: d.synthetic_difficulty,
        },
        DatasetArg::Folder => {
            let Some(root) = d.data.clone() else { bail!("--dataset folder needs --data ROOT") };
            DataSpec::Folder(FolderSpec { root, size: m.size, resize: m.resize, strict: d.strict })
        }
    })
}

fn weights_choice(w: &WeightsArg, seed: u64) -> WeightsChoice {
    match w {
        WeightsArg::Random => WeightsChoice::Random { seed: seed as i64 },
        WeightsArg::File(path) => WeightsChoice::File { path: path.clone() },
        WeightsArg::Variant(v) => WeightsChoice::Pretrained { variant: v.clone() },
    }
}

fn extract_config(m: &ModelArgs) -> ExtractConfig {
    ExtractConfig {
        preprocess: Preprocess { size: m.size, normalization: m.norm, resize: m.resize },
        tap: m.layer,
        batch_size: m.batch_size,
        shard_size: m.shard_size,
        precision: m.precision,
    }
}

fn image_config(d: &DataArgs, h: &HeadArgs) -> ImageTrainConfig {
    let mut images = ImageTrainConfig::for_strategy(h.strategy);
    images.epochs = h.image_epochs;
    images.head_lr = h.lr;
    images.seed = d.seed as i64;
    images.augment = !h.no_augment;
    images.checkpoint_every = h.checkpoint_every;
    if let Some(lr) = h.body_lr {
        images.body_lr = lr;
    }
    if h.strategy == Strategy::FineTune {
        images.unfreeze = h.unfreeze;
        images.freeze_bn = h.bn == BatchNorm::Frozen;
    }
    images
}

pub(crate) fn run_config(d: &DataArgs, m: &ModelArgs, h: &HeadArgs, name: String, fallback: bool) -> Result<RunConfig> {
    let data = data_spec(d, m)?;
    let val_split = h.val_split.unwrap_or_else(|| transfer_lab::train::ValSplit::default_for(&data));
    Ok(RunConfig {
        strategy: h.strategy,
        images: ImageTrainConfig { val_split, ..image_config(d, h) },
        name,
        data,
        arch: m.arch,
        weights: weights_choice(&m.weights, d.seed),
        extract: extract_config(m),
        head: HeadConfig {
            epochs: h.epochs,
            learning_rate: h.lr,
            val_split,
            seed: d.seed as i64,
            checkpoint_every: h.checkpoint_every,
            ..Default::default()
        },
        device: m.device.clone(),
        limit: d.limit,
        offline_fallback: fallback,
        probe: ProbeConfig {
            logreg: LogregConfig {
                lambdas: h.lambdas.0.clone(),
                max_iter: h.max_iter,
                tol: h.tol,
                standardize: h.standardize,
            },
            knn: KnnConfig { k: h.k, temperature: h.temperature, ..Default::default() },
        },
    })
}

impl RunArgs {
    pub(crate) fn config(&self) -> Result<RunConfig> {
        let name = self.name.clone().unwrap_or_else(|| self.head.strategy.name());
        run_config(&self.data, &self.model, &self.head, name, !self.no_fallback)
    }
}

/// `extract`'s settings: a run's data and model, without training or fallbacks.
pub(crate) fn extract_run_config(d: &DataArgs, m: &ModelArgs) -> Result<RunConfig> {
    Ok(RunConfig {
        name: "extract".into(),
        data: data_spec(d, m)?,
        arch: m.arch,
        weights: weights_choice(&m.weights, d.seed),
        extract: extract_config(m),
        device: m.device.clone(),
        limit: d.limit,
        offline_fallback: false,
        ..Default::default()
    })
}
