//! `tlab`'s command line, as parsed (clap). Every choice is a `ValueEnum` derived on the
//! library's own enum, so `--help` lists the values and a typo is a parse error; every
//! default is read from the library's `Default` for that config.
use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use transfer_lab::data::synthetic::Difficulty;
use transfer_lab::features::{ExtractConfig, Precision};
use transfer_lab::models::{Arch, Tap};
use transfer_lab::preprocess::{Normalization, ResizeMode};
use transfer_lab::probe::{log_grid, KnnConfig, LogregConfig};
use transfer_lab::train::{BatchNorm, HeadConfig, ImageTrainConfig, Strategy, Unfreeze, ValSplit};

/// How `predict` writes its rows.
#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub(crate) enum PredictFormat {
    /// Aligned columns (the default on a terminal)
    Table,
    Csv,
    /// One JSON array
    Json,
    /// One JSON object a line
    Jsonl,
}

#[derive(Parser)]
#[command(name = "tlab", version, about = "Transfer learning with pretrained ResNets: fetch, extract, train, evaluate")]
pub(crate) struct Cli {
    /// Cache folder for downloads, datasets, weights and features [env: TLAB_CACHE_DIR]
    #[arg(long, global = true)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// libtorch intra-op threads (default: libtorch's choice)
    #[arg(long, global = true)]
    pub(crate) threads: Option<i32>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Download CIFAR-10 or pretrained weights into the cache (checksummed, resumable)
    Fetch {
        #[command(subcommand)]
        what: FetchWhat,
    },
    /// Extract backbone features of a dataset into the feature cache (resumable)
    Extract {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Which split(s) to extract
        #[arg(long, value_enum, default_value_t = SplitArg::Both)]
        split: SplitArg,
        /// Also append events (JSON lines) to this file
        #[arg(long)]
        events: Option<PathBuf>,
        /// Watch in the terminal dashboard (events go to runs/<time>-extract/)
        #[arg(long)]
        dash: bool,
        /// Folder for the dashboard's run directory
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        #[command(flatten)]
        share: ShareArgs,
    },
    /// The whole post: fetch, extract, train the head, evaluate; writes a run directory
    Run {
        #[command(flatten)]
        args: RunArgs,
        /// Watch the run in the terminal dashboard (plain lines when not a terminal)
        #[arg(long)]
        dash: bool,
    },
    /// Fetch, extract and train into a run directory, leaving the test split for `evaluate`
    Train {
        #[command(flatten)]
        args: RunArgs,
        /// Continue an interrupted run in RUN_DIR with its recorded settings (other flags are ignored)
        #[arg(long)]
        resume: Option<PathBuf>,
    },
    /// Evaluate a trained run's best checkpoint on the test split (tables, summary.json)
    Evaluate { run_dir: PathBuf },
    /// Top classes of images, by a run directory or an exported model file
    Predict(PredictArgs),
    /// One file to ship: backbone, head, class names, preprocessing and metrics
    Export {
        run_dir: PathBuf,
        /// The model file to write (.safetensors)
        #[arg(short, long)]
        out: PathBuf,
        /// Also trace the whole classifier as TorchScript (`torch.jit.load` runs it)
        #[arg(long, value_name = "FILE")]
        torchscript: Option<PathBuf>,
    },
    /// Live dashboard of a run (default: the newest under --runs-dir). `q` leaves, `s` asks
    /// the run to stop, `?` help
    Dash(DashArgs),
    /// Charts (SVG + PNG) and report.md from finished run directories
    Report {
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output folder (default: the run directory, when given one run)
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Versions, device and cache location
    Info,
    /// Extraction speed against PyTorch and Keras, measured side by side in one run (a
    /// benchmark, not a test; threads: the global --threads, default all cores)
    #[cfg(feature = "bench")]
    Bench(crate::bench_args::BenchArgs),
    /// The benchmark (needs `--features bench`)
    #[cfg(not(feature = "bench"))]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

/// Sharing one extraction among workers (see `transfer_lab::features::shards`).
#[derive(Args, Clone)]
pub(crate) struct ShareArgs {
    /// Be worker K of N (from 0): compute shards K, K+N, ... [default: from SLURM_ARRAY_TASK_ID
    /// and SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shards]
    #[arg(long, value_name = "K/N", conflicts_with_all = ["merge", "status"])]
    pub(crate) shard: Option<transfer_lab::features::shards::Part>,
    /// The number of workers N, where the environment gives only K: a Kubernetes Indexed
    /// Job's JOB_COMPLETION_INDEX, or a Slurm array task resubmitted alone (then the task ID
    /// is K: `TLAB_PARTS=N sbatch --array=K extract.sbatch`)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub(crate) shards: Option<usize>,
    /// One worker process per device, sharing the extraction and merged when the last one
    /// finishes: `cuda:0,cuda:1`, or `cpu,cpu` (the cores are split among CPU workers
    /// unless --threads says how many each)
    #[arg(long, value_name = "DEVICE,...", value_delimiter = ',', value_parser = parse_device,
          conflicts_with_all = ["shard", "shards", "merge", "status"])]
    pub(crate) devices: Vec<String>,
    /// Write the manifest of a sharded extraction whose parts are all done (names the rest)
    #[arg(long, conflicts_with = "status")]
    pub(crate) merge: bool,
    /// Show which shards and parts of the extraction are done
    #[arg(long)]
    pub(crate) status: bool,
}

#[derive(Args)]
pub(crate) struct PredictArgs {
    /// A run directory or a file written by `tlab export`
    pub(crate) model: PathBuf,
    /// Images, folders (walked) or quoted glob patterns
    #[arg(required = true)]
    pub(crate) paths: Vec<PathBuf>,
    /// Classes per image
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub(crate) top_k: usize,
    /// Output format [default: table]
    #[arg(long, value_enum, default_value_t = PredictFormat::Table)]
    pub(crate) format: PredictFormat,
    /// Write to this file (atomically) instead of stdout
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Device: auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub(crate) device: String,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub(crate) batch_size: usize,
}

#[derive(Args)]
pub(crate) struct DashArgs {
    /// A run directory, an events file (`tlab extract --events`), or a feature-cache folder
    /// (a sharded extraction's progress, from any host that sees the folder)
    pub(crate) run_dir: Option<PathBuf>,
    /// Where to look for the newest run when RUN_DIR is not given
    #[arg(long, default_value = "runs")]
    pub(crate) runs_dir: PathBuf,
    /// The run's process, for the device panel (default: the run directory's pid file)
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// Plain lines even on a terminal
    #[arg(long, conflicts_with = "tui")]
    pub(crate) plain: bool,
    /// The full-screen dashboard even when stdout is not a terminal
    #[arg(long)]
    pub(crate) tui: bool,
    /// Print what is there and return, instead of following the run (plain mode)
    #[arg(long)]
    pub(crate) once: bool,
    /// Redraws per second at most
    #[arg(long, default_value_t = transfer_lab::tui::DashOptions::default().fps, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub(crate) fps: u32,
}

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

#[derive(Subcommand)]
pub(crate) enum FetchWhat {
    /// CIFAR-10, binary version (MD5-checked)
    Cifar10,
    /// torchvision ImageNet weights, e.g. `tlab fetch weights resnet50 --variant v2`
    Weights {
        #[arg(value_enum, ignore_case = true)]
        arch: Arch,
        /// v1 | v2 (IMAGENET1K_V1 | IMAGENET1K_V2; not every depth has v2)
        #[arg(long, default_value = "v1")]
        variant: String,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum SplitArg {
    Train,
    Test,
    Both,
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
    /// Image folders: a file that is not a usable PNG or JPEG is an error, not a warning
    #[arg(long)]
    pub(crate) strict: bool,
    /// Synthetic dataset sizes
    #[arg(long, default_value_t = 2000)]
    pub(crate) synthetic_train: usize,
    #[arg(long, default_value_t = 500)]
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
    Variant(String),
    Random,
    File(PathBuf),
}

fn parse_weights(s: &str) -> Result<WeightsArg, String> {
    match s {
        "random" => Ok(WeightsArg::Random),
        _ if s.ends_with(".pth") || s.ends_with(".safetensors") || s.ends_with(".pt") || s.contains('/') => {
            Ok(WeightsArg::File(PathBuf::from(s)))
        }
        v if v.eq_ignore_ascii_case("v1") || v.eq_ignore_ascii_case("v2") || v.starts_with("IMAGENET1K_") => {
            Ok(WeightsArg::Variant(v.to_string()))
        }
        other => Err(format!("`{other}`; expected v1, v2, random, or a .pth/.pt/.safetensors file")),
    }
}

fn parse_size(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(v) if (16..=1024).contains(&v) => Ok(v),
        _ => Err(format!("--size {s}: expected 16..=1024 pixels")),
    }
}

fn parse_device(s: &str) -> Result<String, String> {
    transfer_lab::run::parse_device(s).map(|_| s.to_string()).map_err(|e| e.to_string())
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
    /// Pixel normalisation
    #[arg(long, value_enum, default_value_t = ExtractConfig::default().preprocess.normalization)]
    pub(crate) norm: Normalization,
    /// Non-square images: crop (shorter side to --size, centre crop: torchvision's
    /// evaluation transform) or squash (both sides to --size)
    #[arg(long, value_enum, default_value_t = ExtractConfig::default().preprocess.resize)]
    pub(crate) resize: ResizeMode,
    /// Stage whose pooled activations are the features
    #[arg(long, value_enum, default_value_t = ExtractConfig::default().tap)]
    pub(crate) layer: Tap,
    /// Device: auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub(crate) device: String,
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
    #[arg(long, default_value_t = HeadConfig::default().epochs)]
    pub(crate) epochs: u32,
    /// Epochs of image training (fine-tune, pretrained-init, scratch)
    #[arg(long, default_value_t = ImageTrainConfig::for_strategy(Strategy::FineTune).epochs)]
    pub(crate) image_epochs: u32,
    /// Body learning rate for image training (the head keeps --lr; default per strategy)
    #[arg(long)]
    pub(crate) body_lr: Option<f64>,
    /// Fine-tuning: which part of the body trains
    #[arg(long, value_enum, default_value_t = Unfreeze::default())]
    pub(crate) unfreeze: Unfreeze,
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
    #[arg(long, value_name = "GRID", default_value = "1e-6:1e5:45", value_parser = parse_lambdas)]
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
    /// knn: neighbours that vote
    #[arg(long, default_value_t = KnnConfig::default().k, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub(crate) k: usize,
    /// knn: temperature of the votes' weights exp(similarity / T)
    #[arg(long, default_value_t = KnnConfig::default().temperature, value_parser = parse_positive)]
    pub(crate) temperature: f64,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_weights_parse() {
        Cli::command().debug_assert();
        assert_eq!(parse_weights("random"), Ok(WeightsArg::Random));
        assert_eq!(parse_weights("w/r.pth"), Ok(WeightsArg::File("w/r.pth".into())));
        assert!(parse_weights("v3").unwrap_err().contains("v3"));
        let cli = Cli::try_parse_from(["tlab", "dash", "runs/x", "--plain", "--pid", "42", "--once"]).unwrap();
        let Command::Dash(d) = cli.command else { panic!("not dash") };
        assert_eq!((d.run_dir, d.pid, d.plain, d.once), (Some("runs/x".into()), Some(42), true, true));
        assert!(Cli::try_parse_from(["tlab", "dash", "--bogus"]).is_err());
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
