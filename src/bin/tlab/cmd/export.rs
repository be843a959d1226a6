//! `tlab export RUN -o FILE`: one file to ship, and optionally TorchScript.
use super::Ctx;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use transfer_lab::classifier::Classifier;

#[derive(Args)]
pub(crate) struct ExportArgs {
    run_dir: PathBuf,
    /// The model file to write (.safetensors)
    #[arg(short, long)]
    out: PathBuf,
    /// Also trace the whole classifier as TorchScript (`torch.jit.load` runs it)
    #[arg(long, value_name = "FILE")]
    torchscript: Option<PathBuf>,
}

impl ExportArgs {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        let model = Classifier::load(&self.run_dir, &ctx.cache, tch::Device::Cpu)?;
        model.export(&self.out)?;
        println!("{}", self.out.display());
        if let Some(ts) = &self.torchscript {
            model.export_torchscript(ts)?;
            println!("{}", ts.display());
        }
        Ok(())
    }
}
