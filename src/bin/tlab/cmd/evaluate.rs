//! `tlab evaluate RUN`: a trained run's best checkpoint on the test split.
use super::Ctx;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use transfer_lab::run;
use transfer_lab::rundir::RunDir;

#[derive(Args)]
pub(crate) struct EvaluateArgs {
    run_dir: PathBuf,
}

impl EvaluateArgs {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        let s = run::evaluate_run(&RunDir::open(self.run_dir)?, &ctx.cache, &mut ctx.console)?;
        println!("{}", serde_json::to_string_pretty(&s)?);
        Ok(())
    }
}
