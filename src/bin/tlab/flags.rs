//! The flag groups several commands share (data, model, head, run), as parsed (clap), and
//! the library configs built from them. Every choice is a `ValueEnum` derived on the
//! library's own enum, so `--help` lists the values and a typo is a parse error; every
//! default is read from the library's `Default` for that config.
use anyhow::{bail, Result};
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use transfer_lab::data::folder::{FolderSpec, DEFAULT_MAX_PIXELS};
use transfer_lab::data::synthetic::{Difficulty, DEFAULT_SIZES};
use transfer_lab::data::DataSpec;
use transfer_lab::device::DeviceChoice;
use transfer_lab::features::{ExtractConfig, Precision};
use transfer_lab::metrics::ClassWeight;
use transfer_lab::models::{Arch, Pool, Tap, WeightsVariant};
use transfer_lab::preprocess::{resize_side_for, Interpolation, Normalization, Preprocess, ResizeMode};
use transfer_lab::probe::{log_grid, KnnConfig, LogregConfig, ProbeConfig};
use transfer_lab::run::{RunConfig, WeightsChoice};
use transfer_lab::train::{BatchNorm, HeadConfig, ImageTrainConfig, Strategy, TrainLoop, Unfreeze, ValSplit};

/// What `run` and `train` share: data, model, head, and where the run directory goes.
#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[command(flatten)]
    pub(crate) head: HeadArgs,
    /// Folder that holds run directories
    #[arg(long, default_value = "runs")]
    pub(crate) runs_dir: PathBuf,
    /// Run name (part of the run directory's name; default: the strategy)
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Fail instead of falling back to synthetic data / random weights when offline
    #[arg(long)]
    pub(crate) no_fallback: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum DatasetArg {
    /// CIFAR-10, fetched into the cache unless --data points at it
    Cifar10,
    /// Generated, CIFAR-shaped (labelled synthetic everywhere)
    Synthetic,
    /// An image folder (--data ROOT)
    Folder,
}

#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// Dataset
    #[arg(long, value_enum, default_value_t = DatasetArg::Cifar10)]
    pub(crate) dataset: DatasetArg,
    /// Local data: a cifar-10-batches-bin folder, or an image folder root
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Use only the first N images of each split
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Image folders: a file that is not a usable image (unsupported, cut off, damaged,
    /// over --max-image-pixels, a broken link) is an error, not a warning
    #[arg(long)]
    pub(crate) strict: bool,
    /// Image folders: pixels (width x height) an image's header may claim; a larger one is
    /// skipped unread (PIL's limit by default)
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_image_pixels: u64,
    /// Synthetic dataset sizes
    #[arg(long, default_value_t = DEFAULT_SIZES.0)]
    pub(crate) synthetic_train: usize,
    #[arg(long, default_value_t = DEFAULT_SIZES.1)]
    pub(crate) synthetic_test: usize,
    /// Synthetic classes: easy (apart) or hard (overlapping: probes differ)
    #[arg(long, value_enum, default_value_t = Difficulty::default())]
    pub(crate) synthetic_difficulty: Difficulty,
    /// Seed for synthetic data, random weights and training
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

/// `--weights`: a torchvision variant, seeded random weights, or a file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum WeightsArg {
    Variant(WeightsVariant),
    Random,
    File(PathBuf),
}

fn parse_weights(s: &str) -> Result<WeightsArg, String> {
    match s {
        "random" => Ok(WeightsArg::Random),
        _ if s.ends_with(".pth") || s.ends_with(".safetensors") || s.ends_with(".pt") || s.contains('/') => {
            Ok(WeightsArg::File(PathBuf::from(s)))
        }
        v => v.parse::<WeightsVariant>().map(WeightsArg::Variant).map_err(|_| {
            let names: Vec<String> = WeightsVariant::all().iter().map(|w| w.name()).collect();
            format!("`{v}`; expected {}, random, or a .pth/.pt/.safetensors file", names.join(", "))
        }),
    }
}

fn parse_size(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(v) if (16..=1024).contains(&v) => Ok(v),
        _ => Err(format!("--size {s}: expected 16..=1024 pixels")),
    }
}

#[derive(Args, Clone)]
pub(crate) struct ModelArgs {
    #[arg(long, value_enum, ignore_case = true, default_value_t = Arch::ResNet50)]
    pub(crate) arch: Arch,
    /// Starting weights: v1 | v2 (torchvision ImageNet), random (seeded), or a .pth/.safetensors path
    #[arg(long, default_value = "v1", value_parser = parse_weights)]
    pub(crate) weights: WeightsArg,
    /// Image side after upscaling (the post: 200)
    #[arg(long, default_value_t = ExtractConfig::default().preprocess.size, value_parser = parse_size)]
    pub(crate) size: i64,
    /// Pixel normalisation [default: what the weights were trained with, e.g.
    /// keras-caffe for keras-resnet50, torchvision for torchvision's]
    #[arg(long, value_enum)]
    pub(crate) norm: Option<Normalization>,
    /// Resampling filter when resizing [default: the weights' evaluation transform:
    /// bicubic for EfficientNet B0-B3, bilinear for the others]
    #[arg(long, value_enum)]
    pub(crate) interpolation: Option<Interpolation>,
    /// Photos: crop (shorter side to --resize-side, centre --size crop: torchvision's
    /// evaluation transform) or squash (both sides to --size)
    #[arg(long, value_enum, default_value_t = ExtractConfig::default().preprocess.resize)]
    pub(crate) resize: ResizeMode,
    /// Photos with --resize crop: the shorter side before the centre --size crop
    /// [default: the weights' ratio, e.g. 256/224 of --size for torchvision's ResNets]
    #[arg(long, value_parser = parse_size)]
    pub(crate) resize_side: Option<i64>,
    /// Stage whose pooled activations are the features
    #[arg(long, value_enum, default_value_t = ExtractConfig::default().tap)]
    pub(crate) layer: Tap,
    /// How the tap's map becomes one vector: mean (global average pooling), cls (a ViT's
    /// class token) or cls+mean [default: what the weights' own evaluation uses: mean
    /// for CNNs, cls+mean for DINOv2, cls for CLIP and vit-b16]
    #[arg(long, value_enum)]
    pub(crate) pool: Option<Pool>,
    /// Device: auto, cpu, cuda or cuda:N
    #[arg(long, default_value_t)]
    pub(crate) device: DeviceChoice,
    #[arg(long, default_value_t = ExtractConfig::default().batch_size, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub(crate) batch_size: usize,
    /// Rows per feature-cache shard (rounded up to a multiple of the batch size)
    #[arg(long, default_value_t = ExtractConfig::default().shard_size)]
    pub(crate) shard_size: usize,
    /// Arithmetic of the backbone when extracting: bf16 runs on CPU or CUDA, fp16 on CUDA
    /// only; features are stored as fp32, each precision in its own cache entry
    #[arg(long, value_enum, default_value_t = ExtractConfig::default().precision)]
    pub(crate) precision: Precision,
}

#[derive(Args, Clone)]
pub(crate) struct HeadArgs {
    /// What to train (the post's table)
    #[arg(long, value_enum, default_value_t = Strategy::default())]
    pub(crate) strategy: Strategy,
    /// Epochs of the head (the post: 10)
    #[arg(long, default_value_t = HeadConfig::default().fit.epochs)]
    pub(crate) epochs: u32,
    /// Epochs of image training (fine-tune, pretrained-init, scratch)
    #[arg(long, default_value_t = ImageTrainConfig::for_strategy(Strategy::FineTune).fit.epochs)]
    pub(crate) image_epochs: u32,
    /// Body learning rate for image training (the head keeps --lr; default per strategy)
    #[arg(long)]
    pub(crate) body_lr: Option<f64>,
    /// Fine-tuning: which part of the body trains
    #[arg(long, value_enum, default_value_t = Unfreeze::default())]
    pub(crate) unfreeze: Unfreeze,
    /// Layer-wise learning-rate decay for image training: each layer below the last trains
    /// at this fraction of the one above (BEiT's) [default: 0.75 for ViTs, off for CNNs]
    #[arg(long)]
    pub(crate) layer_decay: Option<f64>,
    /// Fine-tuning: BatchNorm's statistics
    #[arg(long, value_enum, default_value_t = BatchNorm::default())]
    pub(crate) bn: BatchNorm,
    /// No random crop + flip during image training
    #[arg(long)]
    pub(crate) no_augment: bool,
    #[arg(long, default_value_t = HeadConfig::default().learning_rate)]
    pub(crate) lr: f64,
    /// How the validation set is cut [default: last (Keras' validation_split) for CIFAR-10
    /// and synthetic data, stratified for image folders; a folder's val/ is used as given]
    #[arg(long, value_enum)]
    pub(crate) val_split: Option<ValSplit>,
    /// Also checkpoint every N training steps (default: at the end of each epoch); a
    /// resumed run continues from the last one exactly
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) checkpoint_every: Option<u64>,
    /// logreg: L2 penalties to sweep, a comma list (0.01,0.1,1) or LO:HI:COUNT log-spaced
    #[arg(long, value_name = "GRID", default_value = DEFAULT_LAMBDAS.as_str(), value_parser = parse_lambdas)]
    pub(crate) lambdas: Lambdas,
    /// logreg: L-BFGS iterations per fit, at most
    #[arg(long, default_value_t = LogregConfig::default().max_iter, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub(crate) max_iter: usize,
    /// logreg: converged when no gradient entry exceeds this
    #[arg(long, default_value_t = LogregConfig::default().tol, value_parser = parse_positive)]
    pub(crate) tol: f64,
    /// logreg: scale each feature to zero mean and unit variance before fitting
    #[arg(long)]
    pub(crate) standardize: bool,
    /// After training, fit a temperature on the validation split so that probabilities
    /// can be trusted (temperature scaling; predict and export use it)
    #[arg(long)]
    pub(crate) calibrate: bool,
    /// The loss of the head, logreg and the image strategies: balanced weighs each class's
    /// photos by n / (k n_c) (scikit-learn's class_weight='balanced'), for classes with few
    /// photos; k-NN refuses it
    #[arg(long, value_enum, default_value_t = ClassWeight::None)]
    pub(crate) class_weight: ClassWeight,
    /// knn: neighbours that vote
    #[arg(long, default_value_t = KnnConfig::default().k, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub(crate) k: usize,
    /// knn: temperature of the votes' weights exp(similarity / T)
    #[arg(long, default_value_t = KnnConfig::default().temperature, value_parser = parse_positive)]
    pub(crate) temperature: f64,
}

/// The library's default grid, as `--lambdas` spells it: `1e-6:1e5:45`.
static DEFAULT_LAMBDAS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (lo, hi, n) = transfer_lab::probe::DEFAULT_LAMBDA_GRID;
    format!("{lo:e}:{hi:e}:{n}")
});

/// `--lambdas`: the penalties, already checked.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Lambdas(pub(crate) Vec<f64>);

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number > 0")),
    }
}

fn parse_lambdas(s: &str) -> Result<Lambdas, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let values = match parts[..] {
        [lo, hi, n] => {
            let (lo, hi) = (parse_positive(lo)?, parse_positive(hi)?);
            let n = n.parse::<usize>().ok().filter(|&n| n >= 1).ok_or(format!("`{n}`: the count must be 1 or more"))?;
            log_grid(lo, hi, n)
        }
        [list] => {
            let items: Vec<&str> = list.split(',').map(str::trim).filter(|x| !x.is_empty()).collect();
            if items.is_empty() {
                return Err("the grid is empty; give penalties like 0.01,0.1,1 or 1e-6:1e5:45".into());
            }
            items.into_iter().map(parse_positive).collect::<Result<_, _>>()?
        }
        _ => return Err(format!("`{s}`; expected a comma list (0.01,0.1,1) or LO:HI:COUNT (1e-6:1e5:45)")),
    };
    Ok(Lambdas(values))
}

// Flags -> the library's configs.

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
            let interpolation = extract_config(m).preprocess.interpolation;
            let eval = weights_eval(m);
            // Photos are cropped as the weights were evaluated: the shorter side to the
            // weights' resize/crop ratio of --size, then the centre --size.
            let resize_side = m.resize_side.or_else(|| resize_side_for(m.size, eval.resize, eval.crop));
            let (size, resize) = (m.size, m.resize);
            let (strict, max_pixels) = (d.strict, d.max_image_pixels);
            DataSpec::Folder(FolderSpec { root, size, resize, strict, interpolation, resize_side, max_pixels })
        }
    })
}

fn weights_choice(w: &WeightsArg, seed: u64) -> WeightsChoice {
    match w {
        WeightsArg::Random => WeightsChoice::Random { seed: seed as i64 },
        WeightsArg::File(path) => WeightsChoice::File { path: path.clone() },
        WeightsArg::Variant(v) => WeightsChoice::Pretrained { variant: *v },
    }
}

/// The evaluation transform of the weights the flags name.
fn weights_eval(m: &ModelArgs) -> transfer_lab::models::weights::EvalTransform {
    let file = match &m.weights {
        WeightsArg::File(p) => Some(p.as_path()),
        _ => None,
    };
    let variant = match m.weights {
        WeightsArg::Variant(v) => Some(v),
        _ => None,
    };
    transfer_lab::models::eval_transform_for(m.arch, variant, file)
}

fn extract_config(m: &ModelArgs) -> ExtractConfig {
    // Unset choices follow the weights' own evaluation transform.
    let eval = weights_eval(m);
    ExtractConfig {
        preprocess: Preprocess {
            size: m.size,
            normalization: m.norm.unwrap_or(eval.normalization),
            resize: m.resize,
            interpolation: m.interpolation.unwrap_or(eval.interpolation),
            // Only photos are cropped (below); CIFAR's squares are scaled whole, as the post did.
            resize_side: None,
        },
        tap: m.layer,
        pool: m.pool,
        batch_size: m.batch_size,
        shard_size: m.shard_size,
        precision: m.precision,
    }
}

/// The loop's settings both trainings take from the flags.
fn train_loop(d: &DataArgs, h: &HeadArgs, epochs: u32, val_split: ValSplit) -> TrainLoop {
    TrainLoop { epochs, seed: d.seed as i64, checkpoint_every: h.checkpoint_every, val_split, ..Default::default() }
}

fn image_config(d: &DataArgs, h: &HeadArgs, val_split: ValSplit) -> ImageTrainConfig {
    let mut images = ImageTrainConfig::for_strategy(h.strategy);
    images.fit = train_loop(d, h, h.image_epochs, val_split);
    images.head_lr = h.lr;
    images.augment = !h.no_augment;
    images.layer_decay = h.layer_decay;
    images.class_weight = h.class_weight;
    if let Some(lr) = h.body_lr {
        images.body_lr = lr;
    }
    if h.strategy == Strategy::FineTune {
        images.unfreeze = h.unfreeze;
        images.bn = h.bn;
    }
    images
}

pub(crate) fn run_config(d: &DataArgs, m: &ModelArgs, h: &HeadArgs, name: String, fallback: bool) -> Result<RunConfig> {
    let data = data_spec(d, m)?;
    let val_split = h.val_split.unwrap_or_else(|| ValSplit::default_for(&data));
    Ok(RunConfig {
        strategy: h.strategy,
        images: image_config(d, h, val_split),
        name,
        data,
        arch: m.arch,
        weights: weights_choice(&m.weights, d.seed),
        extract: extract_config(m),
        head: HeadConfig {
            fit: train_loop(d, h, h.epochs, val_split),
            learning_rate: h.lr,
            class_weight: h.class_weight,
            ..Default::default()
        },
        device: m.device,
        limit: d.limit,
        offline_fallback: fallback,
        probe: ProbeConfig {
            logreg: LogregConfig {
                lambdas: h.lambdas.0.clone(),
                max_iter: h.max_iter,
                tol: h.tol,
                standardize: h.standardize,
                class_weight: h.class_weight,
            },
            knn: KnnConfig { k: h.k, temperature: h.temperature, ..Default::default() },
        },
        calibrate: h.calibrate,
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
        device: m.device,
        limit: d.limit,
        offline_fallback: false,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse() {
        assert_eq!(parse_weights("random"), Ok(WeightsArg::Random));
        assert_eq!(parse_weights("w/r.pth"), Ok(WeightsArg::File("w/r.pth".into())));
        assert!(parse_weights("v3").unwrap_err().contains("v3"));
    }

    #[test]
    fn lambda_grids_parse_and_bad_ones_are_named() {
        assert_eq!(parse_lambdas("0.1, 1,10").unwrap(), Lambdas(vec![0.1, 1.0, 10.0]));
        let g = parse_lambdas("1e-6:1e5:45").unwrap().0;
        assert_eq!((g.len(), g[0], g[44]), (45, 1e-6, 1e5));
        assert!(parse_lambdas("").unwrap_err().contains("empty"));
        assert!(parse_lambdas("0.1,0").unwrap_err().contains("`0`"));
        assert!(parse_lambdas("0.1,-1").unwrap_err().contains("`-1`"));
        assert!(parse_lambdas("1:10:0").unwrap_err().contains("count"));
        assert!(parse_lambdas("nan").is_err() && parse_lambdas("1:2").is_err());
    }
}
