//! The subcommands, one file each: its flags (clap `Args`) and `exec`, cargo-style.
use crate::Cli;
use anyhow::Result;
use clap::Subcommand;
use transfer_lab::cache::Cache;
use transfer_lab::events::ConsoleSink;

mod bench;
mod curve;
mod dash;
mod evaluate;
mod export;
mod extract;
mod fetch;
mod info;
mod predict;
mod report;
mod run;
mod train;
mod watch;
mod workers;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Download CIFAR-10 or pretrained weights into the cache (checksummed, resumable)
    Fetch(fetch::FetchArgs),
    /// Extract backbone features of a dataset into the feature cache (resumable)
    Extract(extract::ExtractArgs),
    /// The whole post: fetch, extract, train the head, evaluate; writes a run directory
    Run(run::RunCommandArgs),
    /// Fetch, extract and train into a run directory, leaving the test split for `evaluate`
    Train(train::TrainArgs),
    /// Evaluate a trained run's best checkpoint on the test split (tables, summary.json)
    Evaluate(evaluate::EvaluateArgs),
    /// Top classes of images, by a run directory or an exported model file
    Predict(predict::PredictArgs),
    /// One file to ship: backbone, head, class names, preprocessing and metrics
    Export(export::ExportArgs),
    /// Live dashboard of a run (default: the newest under --runs-dir). `q` leaves, `s` asks
    /// the run to stop, `?` help
    Dash(dash::DashArgs),
    /// Charts (SVG + PNG) and report.md from finished run directories
    Report(report::ReportArgs),
    /// How much data do you need? Accuracy of logreg, k-NN and the head on k images per
    /// class of a run's cached features (a chart, a table, curve.csv)
    Curve(curve::CurveArgs),
    /// Versions, device and cache location
    Info,
    /// Extraction speed against PyTorch and Keras, measured side by side in one run (a
    /// benchmark, not a test; threads: the global --threads, default all cores)
    Bench(bench::BenchArgs),
}

/// What every command is handed: the cache, the global flags, the console.
pub(crate) struct Ctx {
    pub(crate) cache: Cache,
    pub(crate) threads: Option<i32>,
    pub(crate) console: ConsoleSink,
}

impl Ctx {
    pub(crate) fn new(cli: &Cli) -> Ctx {
        // The environment, read once and handed to the library.
        transfer_lab::settings::install(transfer_lab::settings::Settings::from_env());
        let from_env = transfer_lab::settings::current().cache_dir.as_deref();
        let cache = Cache::locate(cli.cache_dir.as_deref().or(from_env));
        Ctx { cache, threads: cli.threads, console: ConsoleSink::default() }
    }
}

impl Command {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        match self {
            Command::Fetch(a) => a.exec(ctx),
            Command::Extract(a) => a.exec(ctx),
            Command::Run(a) => a.exec(ctx),
            Command::Train(a) => a.exec(ctx),
            Command::Evaluate(a) => a.exec(ctx),
            Command::Predict(a) => a.exec(ctx),
            Command::Export(a) => a.exec(ctx),
            Command::Dash(a) => a.exec(ctx),
            Command::Report(a) => a.exec(ctx),
            Command::Curve(a) => a.exec(ctx),
            Command::Info => info::exec(ctx),
            Command::Bench(a) => a.exec(ctx),
        }
    }
}
