//! `tlab run`: the whole post (fetch, extract, train, evaluate) into a run directory.
use super::watch::beside_dashboard;
use super::Ctx;
use crate::flags::RunArgs;
use anyhow::Result;
use clap::Args;
use std::io::IsTerminal;
use transfer_lab::events::NullSink;
use transfer_lab::run;
use transfer_lab::rundir::RunDir;

#[derive(Args)]
pub(crate) struct RunCommandArgs {
    #[command(flatten)]
    args: RunArgs,
    /// Watch the run in the terminal dashboard (plain lines when not a terminal)
    #[arg(long)]
    dash: bool,
}

impl RunCommandArgs {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        let cfg = self.args.config()?;
        let s = if self.dash && std::io::stdout().is_terminal() {
            let (dir, cache) = (RunDir::create(&self.args.runs_dir, &cfg.name)?, ctx.cache.clone());
            beside_dashboard(dir, move |dir| run::run_in_dir(&cfg, dir, &cache, &mut NullSink))?
        } else {
            run::run(&cfg, &self.args.runs_dir, &ctx.cache, &mut ctx.console)?
        };
        println!("{}", serde_json::to_string_pretty(&s)?);
        Ok(())
    }
}
