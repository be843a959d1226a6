//! `tlab`: the transfer-lab command line. Each subcommand is parsed by clap (`args`),
//! turned into the library's configs (`config`), and is then one library call.
use anyhow::{Context, Result};
use clap::Parser;
use std::io::{IsTerminal, Write};
use transfer_lab::cache::Cache;
use transfer_lab::data::cifar;
use transfer_lab::data::Split;
use transfer_lab::events::{ConsoleSink, EventSink, JsonlSink, NullSink, Tee};
use transfer_lab::models::{fetch_weights, WeightsEntry};
use transfer_lab::run;
use transfer_lab::rundir::RunDir;
use transfer_lab::tui::{DashOptions, Mode};

mod args;
#[cfg(feature = "bench")]
mod bench_args;
mod config;
mod devices;
mod predict;

use args::*;
use config::*;

fn main() {
    // Process-wide policy belongs to the binary. First thing, before any tensor exists and
    // any thread starts: c10 reads its huge-page setting once.
    if let Err(e) = transfer_lab::heap::configure_process() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let cli = Cli::parse();
    transfer_lab::interrupt::install();
    if let Some(t) = cli.threads {
        tch::set_num_threads(t);
    }
    let cache = Cache::locate(cli.cache_dir.as_deref());
    let mut console = ConsoleSink::default();
    if let Err(e) = dispatch(cli.command, &cache, &mut console, cli.threads) {
        // `let _`: stderr may be a terminal that hung up.
        let _ = writeln!(std::io::stderr(), "error: {}", report(&e));
        std::process::exit(transfer_lab::interrupt::exit_code().unwrap_or(1));
    }
    // A command that returns after a signal (a dashboard) ends by that signal.
    transfer_lab::interrupt::end_by_signal();
}

/// The error and its causes, each once: our errors already end with their cause's text,
/// which `{:#}` would print a second time.
fn report(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out += ": ";
            out += &text;
        }
    }
    out
}

#[cfg_attr(not(feature = "bench"), allow(unused_variables))]
fn dispatch(cmd: Command, cache: &Cache, console: &mut ConsoleSink, threads: Option<i32>) -> Result<()> {
    match cmd {
        Command::Fetch { what: FetchWhat::Cifar10 } => {
            println!("{}", cifar::fetch::fetch_default(cache, console)?.display());
        }
        Command::Fetch { what: FetchWhat::Weights { arch, variant } } => {
            let entry = WeightsEntry::find(arch, &variant)?;
            println!("{}", fetch_weights(entry, cache, &Default::default(), console)?.display());
        }
        Command::Extract { data, model, split, events, dash, runs_dir, share } => {
            let cfg = extract_run_config(&data, &model)?;
            if !share.devices.is_empty() {
                if dash || events.is_some() {
                    anyhow::bail!(
                        "--devices runs one process per device: watch them with `tlab dash FOLDER` (the cache \
                         folder the workers print), not --dash or --events"
                    );
                }
                devices::extract_on_devices(&share.devices, threads)?;
            }
            let action = share_action(&share)?;
            let splits: &'static [Split] = match split {
                SplitArg::Train => &[Split::Train],
                SplitArg::Test => &[Split::Test],
                SplitArg::Both => &[Split::Train, Split::Test],
            };
            let events_sink =
                || -> Result<Option<JsonlSink>> { Ok(events.as_deref().map(JsonlSink::append).transpose()?) };
            let dirs = if dash && std::io::stdout().is_terminal() {
                let (dir, extra, cache) = (RunDir::create(&runs_dir, "extract")?, events_sink()?, cache.clone());
                beside_dashboard(dir, move |dir| {
                    let mut sink = Tee(extra.into_iter().map(|s| Box::new(s) as Box<dyn EventSink>).collect());
                    run::lifecycle(dir, &mut sink, |s| run::extract_with(&cfg, splits, &cache, action, s))
                })?
            } else {
                let mut sinks: Vec<Box<dyn EventSink + '_>> = vec![Box::new(&mut *console)];
                if let Some(e) = events_sink()? {
                    sinks.push(Box::new(e));
                }
                run::extract_with(&cfg, splits, cache, action, &mut Tee(sinks))?
            };
            for d in dirs {
                println!("{}", d.display());
            }
        }
        Command::Run { args, dash } => {
            let cfg = args.config()?;
            let s = if dash && std::io::stdout().is_terminal() {
                let (dir, cache) = (RunDir::create(&args.runs_dir, &cfg.name)?, cache.clone());
                beside_dashboard(dir, move |dir| run::run_in_dir(&cfg, dir, &cache, &mut NullSink))?
            } else {
                run::run(&cfg, &args.runs_dir, cache, console)?
            };
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        Command::Train { args, resume } => {
            let (cfg, dir) = match resume {
                Some(dir) => {
                    let dir = RunDir::open(dir)?;
                    (run::RecordedConfig::read(&dir).context("reading the run to resume")?.config, dir)
                }
                None => {
                    let cfg = args.config()?;
                    let dir = RunDir::create(&args.runs_dir, &cfg.name)?;
                    (cfg, dir)
                }
            };
            run::train_in_dir(&cfg, &dir, cache, console)?;
            println!("{}", dir.path().display());
            eprintln!("trained; evaluate on the test split with: tlab evaluate {}", dir.path().display());
        }
        Command::Evaluate { run_dir } => {
            let s = run::evaluate_run(&RunDir::open(run_dir)?, cache, console)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        Command::Predict(a) => predict::predict(&a, cache)?,
        Command::Export { run_dir, out, torchscript } => {
            predict::export(&run_dir, &out, torchscript.as_deref(), cache)?;
        }
        Command::Dash(a) => {
            test_panic_hook();
            let mode = if a.plain {
                Mode::Plain
            } else if a.tui {
                Mode::Tui
            } else {
                Mode::Auto
            };
            let opts = DashOptions { mode, pid: a.pid, fps: a.fps, follow: !a.once };
            transfer_lab::tui::dash(a.run_dir.as_deref(), &a.runs_dir, opts)?;
        }
        Command::Report { runs, out } => {
            println!("{}", transfer_lab::report::write_report(&runs, out.as_deref(), cache)?.display());
        }
        Command::Info => info(cache),
        #[cfg(feature = "bench")]
        Command::Bench(args) => {
            transfer_lab::bench::run_bench(&args.config(threads)?)?;
        }
        #[cfg(not(feature = "bench"))]
        Command::Bench { .. } => {
            anyhow::bail!("this tlab was built without the bench; run it with `cargo run --features bench -- bench`")
        }
    }
    Ok(())
}

/// `--shard`, the scheduler's environment, `--merge` or `--status` as what `extract` does.
fn share_action(a: &ShareArgs) -> Result<run::ExtractAction> {
    use transfer_lab::shards::Part;
    Ok(if a.status {
        run::ExtractAction::Status
    } else if a.merge {
        run::ExtractAction::Merge { parts: a.shards.unwrap_or(1) }
    } else {
        let part = match a.shard {
            Some(p) => p,
            None => Part::from_env(|k| std::env::var(k).ok(), a.shards)?.unwrap_or_default(),
        };
        if part.n > 1 {
            eprintln!("extract: worker {part} (worker K of N, K from 0)");
        }
        run::ExtractAction::Work(part)
    })
}

/// One way to watch a job: `job` runs on a worker thread, writing `dir`'s events.jsonl,
/// and the dashboard tails that file on this thread, by the same code path as `tlab dash`.
/// Leaving the dashboard, or losing its terminal, lets the job finish; a signal stops it
/// (the job sees the signal itself and stops cleanly).
fn beside_dashboard<T: Send + 'static>(
    dir: RunDir,
    job: impl FnOnce(&RunDir) -> transfer_lab::Result<T> + Send + 'static,
) -> Result<T> {
    use transfer_lab::tui::DashExit;
    let d = dir.clone();
    let worker = std::thread::spawn(move || job(&d));
    let opts = DashOptions { pid: Some(std::process::id()), ..Default::default() };
    match transfer_lab::tui::run_dashboard(dir.path(), opts) {
        // Output goes nowhere now; the job finishes and the process exits with it.
        Ok(DashExit::Detached | DashExit::Signalled) => {}
        Ok(_) if worker.is_finished() => {}
        Ok(_) => {
            eprintln!("dashboard closed; the job goes on in {} (follow it with `tlab dash`)", dir.path().display())
        }
        // A broken dashboard must not take the job down with it.
        Err(e) => eprintln!("dashboard failed ({e}); the job goes on in {}", dir.path().display()),
    }
    Ok(worker.join().map_err(|_| anyhow::anyhow!("the job's thread panicked"))??)
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
}

#[cfg(test)]
mod report_tests {
    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let e = anyhow::Error::new(transfer_lab::Error::io("writing runs/x/head-last.safetensors", io));
        assert_eq!(super::report(&e), "writing runs/x/head-last.safetensors: No space left on device");
        let e = anyhow::anyhow!("inner").context("reading the run to resume");
        assert_eq!(super::report(&e), "reading the run to resume: inner");
    }
}
