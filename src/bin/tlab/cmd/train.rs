//! `tlab train`: fetch, extract and train into a run directory (or resume one), leaving
//! the test split for `tlab evaluate`.
use super::Ctx;
use crate::flags::RunArgs;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use transfer_lab::run;
use transfer_lab::rundir::RunDir;

#[derive(Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    args: RunArgs,
    /// Continue an interrupted run in RUN_DIR with its recorded settings (other flags are ignored)
    #[arg(long)]
    resume: Option<PathBuf>,
}

impl TrainArgs {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        let (cfg, dir) = match self.resume {
            Some(dir) => {
                let dir = RunDir::open(dir)?;
                (run::RecordedConfig::read(&dir).context("reading the run to resume")?.config, dir)
            }
            None => {
                let cfg = self.args.config()?;
                let dir = RunDir::create(&self.args.runs_dir, &cfg.name)?;
                (cfg, dir)
            }
        };
        run::train_in_dir(&cfg, &dir, &ctx.cache, &mut ctx.console)?;
        println!("{}", dir.path().display());
        eprintln!("trained; evaluate on the test split with: tlab evaluate {}", dir.path().display());
        Ok(())
    }
}
