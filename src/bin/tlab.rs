//! `tlab`: the transfer-lab command line.
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use transfer_lab::data::{self, fetch, DataSpec, Split};
use transfer_lab::events::{ConsoleSink, EventSink, JsonlSink, Tee};
use transfer_lab::features::{extract_to_cache, ExtractConfig, Precision};
use transfer_lab::models::{backbone::fetch_weights, Arch, Tap, WeightsEntry};
use transfer_lab::preprocess::{Normalization, Preprocess};
use transfer_lab::run::{self, RunConfig, WeightsChoice};
use transfer_lab::train::{HeadConfig, ImageTrainConfig, Strategy, Unfreeze, ValSplit};

#[derive(Parser)]
#[command(name = "tlab", version, about = "Transfer learning with pretrained ResNets: fetch, extract, train, evaluate")]
struct Cli {
    /// Cache folder for downloads, datasets, weights and features [env: TLAB_CACHE_DIR]
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// libtorch intra-op threads (default: libtorch's choice)
    #[arg(long, global = true)]
    threads: Option<i32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
struct BenchArgs {
    /// Two rounds and smaller side runs (same model, size and batch)
    #[arg(long)]
    quick: bool,
    /// Only these sections: ours,torch,keras,ceiling,e2e,e2e-ours,head,accuracy (default: all; e2e includes e2e-ours)
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Precisions of the throughput candidates and the ceiling: fp32,bf16 (default both)
    #[arg(long, value_delimiter = ',')]
    precisions: Option<Vec<Precision>>,
    /// Interleaved rounds (default 5, --quick 2)
    #[arg(long)]
    reps: Option<usize>,
    /// Image side
    #[arg(long, default_value_t = 200)]
    size: i64,
    /// Images per batch, for every framework
    #[arg(long, default_value_t = 32)]
    batch: i64,
    /// cpu | cuda | cuda:N (CUDA: bf16 and fp32 on the GPU; Keras is skipped there)
    #[arg(long, default_value = "cpu")]
    device: String,
    /// End to end / peak RSS: the two dataset sizes, e.g. 128,384
    #[arg(long, value_delimiter = ',')]
    e2e_images: Option<Vec<usize>>,
    /// Head training epochs (default 10, --quick 2)
    #[arg(long)]
    head_epochs: Option<u32>,
    /// Each run writes bench.json and bench.csv into a new folder here
    #[arg(long, default_value = "bench/results")]
    results_dir: PathBuf,
}

impl BenchArgs {
    fn config(self, threads: Option<i32>) -> Result<transfer_lab::bench::BenchConfig> {
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
struct RunArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    head: HeadArgs,
    /// Folder that holds run directories
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Run name (part of the run directory's name; default: the strategy)
    #[arg(long)]
    name: Option<String>,
    /// Fail instead of falling back to synthetic data / random weights when offline
    #[arg(long)]
    no_fallback: bool,
}

impl RunArgs {
    fn config(&self) -> Result<RunConfig> {
        let name = self.name.clone().unwrap_or_else(|| self.head.strategy.clone());
        run_config(&self.data, &self.model, &self.head, name, !self.no_fallback)
    }
}

#[derive(Subcommand)]
enum FetchWhat {
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
enum SplitArg {
    Train,
    Test,
    Both,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum DatasetArg {
    Cifar10,
    Synthetic,
    Folder,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Dataset: cifar10 (fetched unless --data), synthetic (generated), folder (--data ROOT)
    #[arg(long, value_enum, default_value = "cifar10")]
    dataset: DatasetArg,
    /// Local data: a cifar-10-batches-bin folder, or an image folder root
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use only the first N images of each split
    #[arg(long)]
    limit: Option<usize>,
    /// Synthetic dataset sizes
    #[arg(long, default_value_t = 2000)]
    synthetic_train: usize,
    #[arg(long, default_value_t = 500)]
    synthetic_test: usize,
    /// Seed for synthetic data, random weights and training
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Clone)]
struct ModelArgs {
    #[arg(long, default_value = "resnet50")]
    arch: String,
    /// v1 | v2 (torchvision ImageNet weights), random (seeded), or a .pth/.safetensors path
    #[arg(long, default_value = "v1")]
    weights: String,
    /// Image side after upscaling (the post: 200)
    #[arg(long, default_value_t = 200)]
    size: i64,
    /// torchvision | keras-caffe
    #[arg(long, default_value = "torchvision")]
    norm: String,
    /// Stage whose pooled activations are the features: layer1..layer4
    #[arg(long, default_value = "layer4")]
    layer: String,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Rows per feature-cache shard (rounded up to a multiple of the batch size)
    #[arg(long, default_value_t = 2048)]
    shard_size: usize,
    /// Arithmetic of the backbone when extracting: fp32, bf16 (CPU or CUDA), fp16 (CUDA
    /// only); features are stored as fp32, each precision in its own cache entry
    #[arg(long, default_value = "fp32")]
    precision: Precision,
}

#[derive(Args)]
struct HeadArgs {
    /// linear-probe | earlier-layer | fine-tune | pretrained-init | scratch
    #[arg(long, default_value = "linear-probe")]
    strategy: String,
    /// Epochs of the head (the post: 10)
    #[arg(long, default_value_t = 10)]
    epochs: u32,
    /// Epochs of image training (fine-tune, pretrained-init, scratch)
    #[arg(long, default_value_t = 5)]
    image_epochs: u32,
    /// Body learning rate for image training (the head keeps --lr)
    #[arg(long)]
    body_lr: Option<f64>,
    /// Fine-tuning: layer4 | all
    #[arg(long, default_value = "layer4")]
    unfreeze: String,
    /// BatchNorm during fine-tuning: frozen (ImageNet statistics) | train
    #[arg(long, default_value = "frozen")]
    bn: String,
    /// No random crop + flip during image training
    #[arg(long)]
    no_augment: bool,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// last (Keras validation_split) | random
    #[arg(long, default_value = "last")]
    val_split: String,
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

fn main() {
    // Before any tensor exists and any thread starts: c10 reads its huge-page setting once.
    if let Err(e) = transfer_lab::heap::configure_process() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
    let cli = Cli::parse();
    if let Some(t) = cli.threads {
        tch::set_num_threads(t);
    }
    let cache = transfer_lab::cache::cache_dir(cli.cache_dir.as_deref());
    let mut console = ConsoleSink::default();
    if let Err(e) = dispatch(cli.command, &cache, &mut console, cli.threads) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cmd: Command, cache: &Path, console: &mut ConsoleSink, threads: Option<i32>) -> Result<()> {
    match cmd {
        Command::Fetch { what: FetchWhat::Cifar10 } => {
            let dir =
                fetch::fetch_cifar10(cache, &fetch::cifar10_url(), fetch::CIFAR10_MD5, &Default::default(), console)?;
            println!("{}", dir.display());
        }
        Command::Fetch { what: FetchWhat::Weights { arch, variant } } => {
            let entry = WeightsEntry::find(arch.parse()?, &variant)?;
            let path = fetch_weights(entry, cache, &Default::default(), console)?;
            println!("{}", path.display());
        }
        Command::Extract { data, model, split, events, dash, runs_dir } => {
            let dirs = if dash && std::io::stdout().is_terminal() {
                extract_with_dashboard(data, model, split, events, &runs_dir, cache)?
            } else {
                let mut sinks: Vec<Box<dyn EventSink + '_>> = vec![Box::new(Forwarding(console))];
                if let Some(p) = &events {
                    sinks.push(Box::new(JsonlSink::append(p)?));
                }
                extract(&data, &model, split, cache, &mut Tee(sinks))?
            };
            for d in dirs {
                println!("{}", d.display());
            }
        }
        Command::Run { args, dash } => {
            let cfg = args.config()?;
            let s = if dash && std::io::stdout().is_terminal() {
                run_with_dashboard(cfg, &args.runs_dir, cache)?
            } else {
                run::run(&cfg, &args.runs_dir, cache, console)?
            };
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        Command::Train { args, resume } => {
            let (cfg, dir) = match resume {
                Some(dir) => (run::read_run_config(&dir).context("reading the run to resume")?, dir),
                None => {
                    let cfg = args.config()?;
                    let dir = run::new_run_dir(&args.runs_dir, &cfg.name)?;
                    (cfg, dir)
                }
            };
            run::train_in_dir(&cfg, &dir, cache, console)?;
            println!("{}", dir.display());
            eprintln!("trained; evaluate on the test split with: tlab evaluate {}", dir.display());
        }
        Command::Evaluate { run_dir } => {
            let s = run::evaluate_run(&run_dir, cache, console)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        Command::Dash { args } => {
            test_panic_hook();
            let code = transfer_lab::tui::dash_main(&args);
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Report { runs, out } => {
            println!("{}", transfer_lab::report::write_report(&runs, out.as_deref())?.display());
        }
        Command::Info => info(cache),
        Command::Bench(args) => {
            transfer_lab::bench::run_bench(&args.config(threads)?)?;
        }
    }
    Ok(())
}

/// The run on a worker thread writing events.jsonl; the dashboard tails that file on this
/// thread, by the same code path as `tlab dash`. Leaving the dashboard lets the run finish.
fn run_with_dashboard(cfg: RunConfig, runs_dir: &Path, cache: &Path) -> Result<run::RunSummary> {
    let dir = run::new_run_dir(runs_dir, &cfg.name)?;
    let (d, c) = (dir.clone(), cache.to_path_buf());
    let worker = std::thread::spawn(move || run::run_in_dir(&cfg, &d, &c, &mut transfer_lab::events::NullSink));
    let opts = transfer_lab::tui::DashOptions { pid: Some(std::process::id()), ..Default::default() };
    transfer_lab::tui::run_dashboard(&dir, opts)?;
    if !worker.is_finished() {
        eprintln!("dashboard closed; the run goes on in {} (follow it with `tlab dash`)", dir.display());
    }
    Ok(worker.join().map_err(|_| anyhow::anyhow!("the run thread panicked"))??)
}

fn data_spec(d: &DataArgs) -> Result<DataSpec> {
    Ok(match d.dataset {
        DatasetArg::Cifar10 => DataSpec::Cifar10 { path: d.data.clone() },
        DatasetArg::Synthetic => DataSpec::Synthetic { train: d.synthetic_train, test: d.synthetic_test, seed: d.seed },
        DatasetArg::Folder => {
            let Some(root) = d.data.clone() else { bail!("--dataset folder needs --data ROOT") };
            DataSpec::Folder { root, side: 224 }
        }
    })
}

fn weights_choice(w: &str, seed: u64) -> WeightsChoice {
    match w {
        "random" => WeightsChoice::Random { seed: seed as i64 },
        _ if w.ends_with(".pth") || w.ends_with(".safetensors") || w.ends_with(".pt") || w.contains('/') => {
            WeightsChoice::File { path: PathBuf::from(w) }
        }
        v => WeightsChoice::Pretrained { variant: v.to_string() },
    }
}

fn extract_config(m: &ModelArgs) -> Result<ExtractConfig> {
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

fn run_config(d: &DataArgs, m: &ModelArgs, h: &HeadArgs, name: String, fallback: bool) -> Result<RunConfig> {
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

/// Extracts the chosen splits into the cache; returns their cache folders.
fn extract(
    d: &DataArgs,
    m: &ModelArgs,
    split: SplitArg,
    cache: &Path,
    sink: &mut dyn EventSink,
) -> Result<Vec<PathBuf>> {
    let cfg = RunConfig {
        limit: d.limit,
        offline_fallback: false,
        ..run_config(d, m, &HeadArgs::default(), "extract".into(), false)?
    };
    let device = run::parse_device(&cfg.device)?;
    cfg.extract.precision.check_device(device)?;
    let backbone = run::open_backbone(&cfg, cache, device, sink)?;
    let splits: &[Split] = match split {
        SplitArg::Train => &[Split::Train],
        SplitArg::Test => &[Split::Test],
        SplitArg::Both => &[Split::Train, Split::Test],
    };
    let mut dirs = Vec::new();
    for &s in splits {
        let mut ds =
            data::open(&cfg.data, s, cache, sink).with_context(|| format!("opening the {} split", s.as_str()))?;
        if let Some(n) = cfg.limit {
            ds = ds.take(n);
        }
        if ds.synthetic {
            sink.warn(&format!("dataset {}: generated data, not CIFAR-10", ds.describe()));
        }
        dirs.push(extract_to_cache(&backbone, &ds, &cfg.extract, cache, sink)?);
    }
    Ok(dirs)
}

/// `extract --dash`: extraction on a worker thread writing a run directory's events.jsonl,
/// the dashboard on this thread (the same code path as `tlab dash`).
fn extract_with_dashboard(
    d: DataArgs,
    m: ModelArgs,
    split: SplitArg,
    events: Option<PathBuf>,
    runs_dir: &Path,
    cache: &Path,
) -> Result<Vec<PathBuf>> {
    let dir = run::new_run_dir(runs_dir, "extract")?;
    let (run_dir, cache) = (dir.clone(), cache.to_path_buf());
    let worker = std::thread::spawn(move || -> Result<Vec<PathBuf>> {
        let mut sinks: Vec<Box<dyn EventSink>> = vec![Box::new(JsonlSink::append(&run_dir.join("events.jsonl"))?)];
        if let Some(p) = &events {
            sinks.push(Box::new(JsonlSink::append(p)?));
        }
        let mut sink = Tee(sinks);
        let started = std::time::Instant::now();
        let out = extract(&d, &m, split, &cache, &mut sink);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        sink.emit(&match &out {
            Ok(_) => transfer_lab::events::RunEvent::RunFinished { elapsed_ms, test_accuracy: None },
            Err(e) => transfer_lab::events::RunEvent::RunFailed { error: format!("{e:#}") },
        });
        out
    });
    let opts = transfer_lab::tui::DashOptions { pid: Some(std::process::id()), ..Default::default() };
    transfer_lab::tui::run_dashboard(&dir, opts)?;
    worker.join().map_err(|_| anyhow::anyhow!("the extraction thread panicked"))?
}

struct Forwarding<'a>(&'a mut ConsoleSink);
impl EventSink for Forwarding<'_> {
    fn emit(&mut self, e: &transfer_lab::events::RunEvent) {
        self.0.emit(e)
    }
}

/// Test hook: `TLAB_DASH_TEST_PANIC_MS=N` panics on another thread after N ms, so a
/// test can see the dashboard give the terminal back.
fn test_panic_hook() {
    if let Some(ms) = std::env::var("TLAB_DASH_TEST_PANIC_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            panic!("test panic while the dashboard is up");
        });
    }
}

fn info(cache: &Path) {
    println!("transfer-lab {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch {} (tch 0.24)", transfer_lab::LIBTORCH_VERSION);
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cuda devices: {}", tch::Cuda::device_count());
    println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    println!("threads: {}", tch::get_num_threads());
    println!("cache: {}", cache.display());
    let _ = Arch::ALL;
}
