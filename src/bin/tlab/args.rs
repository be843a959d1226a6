//! `tlab`'s command line: commands, flags and their defaults (clap).
use crate::config::run_config;
use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use transfer_lab::features::Precision;
use transfer_lab::run::RunConfig;

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
        #[arg(long, value_enum, default_value = "both")]
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
    /// Live dashboard of a run: `tlab dash [RUN_DIR] [--runs-dir DIR] [--pid PID] [--plain|--tui] [--once] [--fps N]`
    /// (default: the newest run under runs/). `q` leaves, `s` asks the run to stop, `?` help.
    Dash {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
    Bench(BenchArgs),
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Two rounds and smaller side runs (same model, size and batch)
    #[arg(long)]
    pub(crate) quick: bool,
    /// Only these sections: ours,torch,keras,ceiling,e2e,e2e-ours,head,accuracy (default: all; e2e includes e2e-ours)
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Option<Vec<String>>,
    /// Precisions of the throughput candidates and the ceiling: fp32,bf16 (default both)
    #[arg(long, value_delimiter = ',')]
    pub(crate) precisions: Option<Vec<Precision>>,
    /// Interleaved rounds (default 5, --quick 2)
    #[arg(long)]
    pub(crate) reps: Option<usize>,
    /// Image side
    #[arg(long, default_value_t = 200)]
    pub(crate) size: i64,
    /// Images per batch, for every framework
    #[arg(long, default_value_t = 32)]
    pub(crate) batch: i64,
    /// cpu | cuda | cuda:N (CUDA: bf16 and fp32 on the GPU; Keras is skipped there)
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    /// End to end / peak RSS: the two dataset sizes, e.g. 128,384
    #[arg(long, value_delimiter = ',')]
    pub(crate) e2e_images: Option<Vec<usize>>,
    /// Head training epochs (default 10, --quick 2)
    #[arg(long)]
    pub(crate) head_epochs: Option<u32>,
    /// Each run writes bench.json and bench.csv into a new folder here
    #[arg(long, default_value = "bench/results")]
    pub(crate) results_dir: PathBuf,
}

impl BenchArgs {
    pub(crate) fn config(self, threads: Option<i32>) -> Result<transfer_lab::bench::BenchConfig> {
        let mut c = transfer_lab::bench::BenchConfig::default();
        if self.quick {
            c = c.quick();
        }
        if let Some(only) = self.only {
            c.sections = only.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(e) = self.e2e_images {
            let [a, b] = e[..] else { bail!("--e2e-images takes two sizes, e.g. 128,384") };
            if a < 5 || b <= a {
                bail!("--e2e-images {a},{b}: need 5 <= first < second");
            }
            c.e2e_images = [a, b];
        }
        c.precisions = self.precisions.unwrap_or(c.precisions);
        c.reps = self.reps.unwrap_or(c.reps);
        c.head_epochs = self.head_epochs.unwrap_or(c.head_epochs);
        c.threads = threads.unwrap_or(c.threads);
        (c.size, c.batch, c.device, c.results_dir) = (self.size, self.batch, self.device, self.results_dir);
        Ok(c)
    }
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

impl RunArgs {
    pub(crate) fn config(&self) -> Result<RunConfig> {
        let name = self.name.clone().unwrap_or_else(|| self.head.strategy.clone());
        run_config(&self.data, &self.model, &self.head, name, !self.no_fallback)
    }
}

#[derive(Subcommand)]
pub(crate) enum FetchWhat {
    /// CIFAR-10, binary version (MD5-checked)
    Cifar10,
    /// torchvision ImageNet weights, e.g. `tlab fetch weights resnet50 --variant v2`
    Weights {
        arch: String,
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
    Cifar10,
    Synthetic,
    Folder,
}

#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// Dataset: cifar10 (fetched unless --data), synthetic (generated), folder (--data ROOT)
    #[arg(long, value_enum, default_value = "cifar10")]
    pub(crate) dataset: DatasetArg,
    /// Local data: a cifar-10-batches-bin folder, or an image folder root
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Use only the first N images of each split
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Synthetic dataset sizes
    #[arg(long, default_value_t = 2000)]
    pub(crate) synthetic_train: usize,
    #[arg(long, default_value_t = 500)]
    pub(crate) synthetic_test: usize,
    /// Seed for synthetic data, random weights and training
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

#[derive(Args, Clone)]
pub(crate) struct ModelArgs {
    #[arg(long, default_value = "resnet50")]
    pub(crate) arch: String,
    /// v1 | v2 (torchvision ImageNet weights), random (seeded), or a .pth/.safetensors path
    #[arg(long, default_value = "v1")]
    pub(crate) weights: String,
    /// Image side after upscaling (the post: 200)
    #[arg(long, default_value_t = 200)]
    pub(crate) size: i64,
    /// torchvision | keras-caffe
    #[arg(long, default_value = "torchvision")]
    pub(crate) norm: String,
    /// Stage whose pooled activations are the features: layer1..layer4
    #[arg(long, default_value = "layer4")]
    pub(crate) layer: String,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    pub(crate) device: String,
    #[arg(long, default_value_t = 32)]
    pub(crate) batch_size: usize,
    /// Rows per feature-cache shard (rounded up to a multiple of the batch size)
    #[arg(long, default_value_t = 2048)]
    pub(crate) shard_size: usize,
    /// Arithmetic of the backbone when extracting: fp32, bf16 (CPU or CUDA), fp16 (CUDA
    /// only); features are stored as fp32, each precision in its own cache entry
    #[arg(long, default_value = "fp32")]
    pub(crate) precision: Precision,
}

#[derive(Args)]
pub(crate) struct HeadArgs {
    /// linear-probe | earlier-layer | fine-tune | pretrained-init | scratch
    #[arg(long, default_value = "linear-probe")]
    pub(crate) strategy: String,
    /// Epochs of the head (the post: 10)
    #[arg(long, default_value_t = 10)]
    pub(crate) epochs: u32,
    /// Epochs of image training (fine-tune, pretrained-init, scratch)
    #[arg(long, default_value_t = 5)]
    pub(crate) image_epochs: u32,
    /// Body learning rate for image training (the head keeps --lr)
    #[arg(long)]
    pub(crate) body_lr: Option<f64>,
    /// Fine-tuning: layer4 | all
    #[arg(long, default_value = "layer4")]
    pub(crate) unfreeze: String,
    /// BatchNorm during fine-tuning: frozen (ImageNet statistics) | train
    #[arg(long, default_value = "frozen")]
    pub(crate) bn: String,
    /// No random crop + flip during image training
    #[arg(long)]
    pub(crate) no_augment: bool,
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f64,
    /// last (Keras validation_split) | random
    #[arg(long, default_value = "last")]
    pub(crate) val_split: String,
}

impl Default for HeadArgs {
    fn default() -> Self {
        HeadArgs {
            strategy: "linear-probe".into(),
            epochs: 10,
            image_epochs: 5,
            body_lr: None,
            unfreeze: "layer4".into(),
            bn: "frozen".into(),
            no_augment: false,
            lr: 1e-3,
            val_split: "last".into(),
        }
    }
}
