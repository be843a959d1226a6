//! `tlab report RUN...`: charts and report.md from finished runs.
use super::Ctx;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct ReportArgs {
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output folder (default: the run directory, when given one run)
    #[arg(long)]
    out: Option<PathBuf>,
}

impl ReportArgs {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        let md = transfer_lab::report::write_report(&self.runs, self.out.as_deref(), &ctx.cache)?;
        println!("{}", md.display());
        Ok(())
    }
}
