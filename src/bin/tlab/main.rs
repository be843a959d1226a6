//! `tlab`: the transfer-lab command line.
use anyhow::{Context, Result};
use clap::Parser;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use transfer_lab::cache::Cache;
use transfer_lab::data::{self, cifar, Split};
use transfer_lab::events::{ConsoleSink, EventSink, JsonlSink, Tee};
use transfer_lab::features::extract_to_cache;
use transfer_lab::models::{fetch_weights, Arch, WeightsEntry};
use transfer_lab::run::{self, RunConfig};

mod args;
mod config;

use args::*;
use config::*;

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
    let cache = Cache::locate(cli.cache_dir.as_deref());
    let mut console = ConsoleSink::default();
    if let Err(e) = dispatch(cli.command, &cache, &mut console, cli.threads) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cmd: Command, cache: &Cache, console: &mut ConsoleSink, threads: Option<i32>) -> Result<()> {
    match cmd {
        Command::Fetch { what: FetchWhat::Cifar10 } => {
            let dir = cifar::fetch::fetch_default(cache, console)?;
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
fn run_with_dashboard(cfg: RunConfig, runs_dir: &Path, cache: &Cache) -> Result<run::RunSummary> {
    let dir = run::new_run_dir(runs_dir, &cfg.name)?;
    let (d, c) = (dir.clone(), cache.clone());
    let worker = std::thread::spawn(move || run::run_in_dir(&cfg, &d, &c, &mut transfer_lab::events::NullSink));
    let opts = transfer_lab::tui::DashOptions { pid: Some(std::process::id()), ..Default::default() };
    transfer_lab::tui::run_dashboard(&dir, opts)?;
    if !worker.is_finished() {
        eprintln!("dashboard closed; the run goes on in {} (follow it with `tlab dash`)", dir.display());
    }
    Ok(worker.join().map_err(|_| anyhow::anyhow!("the run thread panicked"))??)
}

fn extract(
    d: &DataArgs,
    m: &ModelArgs,
    split: SplitArg,
    cache: &Cache,
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
    cache: &Cache,
) -> Result<Vec<PathBuf>> {
    let dir = run::new_run_dir(runs_dir, "extract")?;
    let (run_dir, cache) = (dir.clone(), cache.clone());
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

fn info(cache: &Cache) {
    println!("transfer-lab {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch {} (tch 0.24)", transfer_lab::LIBTORCH_VERSION);
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cuda devices: {}", tch::Cuda::device_count());
    println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    println!("threads: {}", tch::get_num_threads());
    println!("cache: {}", cache.display());
    let _ = Arch::ALL;
}
