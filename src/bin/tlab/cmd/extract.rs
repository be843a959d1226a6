//! `tlab extract`: backbone features of a dataset into the feature cache; shared among
//! workers (`--shard`, a scheduler's environment, `--devices`), merged, or its status.
use super::watch::beside_dashboard;
use super::{workers, Ctx};
use crate::flags::{extract_run_config, DataArgs, ModelArgs};
use anyhow::{bail, Result};
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use transfer_lab::data::Split;
use transfer_lab::device::DeviceChoice;
use transfer_lab::events::{EventSink, JsonlSink, Tee};
use transfer_lab::features::shards::Part;
use transfer_lab::run::{self, RunConfig};
use transfer_lab::rundir::RunDir;

#[derive(Args)]
pub(crate) struct ExtractArgs {
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
    /// A worker of `--devices`: its settings, as its parent built them (JSON)
    #[arg(long, hide = true, value_name = "JSON")]
    worker_config: Option<String>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum SplitArg {
    Train,
    Test,
    Both,
}

impl SplitArg {
    pub(crate) fn splits(self) -> &'static [Split] {
        match self {
            SplitArg::Train => &[Split::Train],
            SplitArg::Test => &[Split::Test],
            SplitArg::Both => &[Split::Train, Split::Test],
        }
    }
}

/// Sharing one extraction among workers (see `transfer_lab::features::shards`).
#[derive(Args, Clone)]
pub(crate) struct ShareArgs {
    /// Be worker K of N (from 0): compute shards K, K+N, ... [default: from SLURM_ARRAY_TASK_ID
    /// and SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shards]
    #[arg(long, value_name = "K/N", conflicts_with_all = ["merge", "status"])]
    pub(crate) shard: Option<Part>,
    /// The number of workers N, where the environment gives only K: a Kubernetes Indexed
    /// Job's JOB_COMPLETION_INDEX, or a Slurm array task resubmitted alone (then the task ID
    /// is K: `TLAB_PARTS=N sbatch --array=K extract.sbatch`)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub(crate) shards: Option<usize>,
    /// One worker process per device, sharing the extraction and merged when the last one
    /// finishes: `cuda:0,cuda:1`, or `cpu,cpu` (the cores are split among CPU workers
    /// unless --threads says how many each)
    #[arg(long, value_name = "DEVICE,...", value_delimiter = ',',
          conflicts_with_all = ["shard", "shards", "merge", "status"])]
    pub(crate) devices: Vec<DeviceChoice>,
    /// Write the manifest of a sharded extraction whose parts are all done (names the rest)
    #[arg(long, conflicts_with = "status")]
    pub(crate) merge: bool,
    /// Show which shards and parts of the extraction are done
    #[arg(long)]
    pub(crate) status: bool,
}

impl ExtractArgs {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        let cfg: RunConfig = match &self.worker_config {
            Some(json) => serde_json::from_str(json)?,
            None => extract_run_config(&self.data, &self.model)?,
        };
        let splits = self.split.splits();
        if !self.share.devices.is_empty() {
            if self.dash || self.events.is_some() {
                bail!(
                    "--devices runs one process per device: watch them with `tlab dash FOLDER` (the cache \
                     folder the workers print), not --dash or --events"
                );
            }
            workers::extract_on_devices(&cfg, self.split, &self.share.devices, ctx)?;
        }
        let action = share_action(&self.share)?;
        let events_sink =
            || -> Result<Option<JsonlSink>> { Ok(self.events.as_deref().map(JsonlSink::append).transpose()?) };
        let dirs = if self.dash && std::io::stdout().is_terminal() {
            let (dir, extra, cache) = (RunDir::create(&self.runs_dir, "extract")?, events_sink()?, ctx.cache.clone());
            beside_dashboard(dir, move |dir| {
                let mut sink = Tee(extra.into_iter().map(|s| Box::new(s) as Box<dyn EventSink>).collect());
                run::lifecycle(dir, &mut sink, |s| run::extract_with(&cfg, splits, &cache, action, s))
            })?
        } else {
            let mut sinks: Vec<Box<dyn EventSink + '_>> = vec![Box::new(&mut ctx.console)];
            if let Some(e) = events_sink()? {
                sinks.push(Box::new(e));
            }
            run::extract_with(&cfg, splits, &ctx.cache, action, &mut Tee(sinks))?
        };
        for d in dirs {
            println!("{}", d.display());
        }
        Ok(())
    }
}

/// `--shard`, the scheduler's environment, `--merge` or `--status` as what `extract` does.
fn share_action(a: &ShareArgs) -> Result<run::ExtractAction> {
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
