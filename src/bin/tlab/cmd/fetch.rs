//! `tlab fetch`: CIFAR-10 or pretrained weights into the cache.
use super::Ctx;
use anyhow::Result;
use clap::{Args, Subcommand};
use transfer_lab::data::cifar;
use transfer_lab::models::{fetch_weights, Arch, WeightsEntry, WeightsVariant};

#[derive(Args)]
pub(crate) struct FetchArgs {
    #[command(subcommand)]
    what: FetchWhat,
}

#[derive(Subcommand)]
enum FetchWhat {
    /// CIFAR-10, binary version (MD5-checked)
    Cifar10,
    /// torchvision ImageNet weights, e.g. `tlab fetch weights resnet50 --variant v2`
    Weights {
        #[arg(value_enum, ignore_case = true)]
        arch: Arch,
        /// Which weights (not every depth has v2)
        #[arg(long, value_enum, ignore_case = true, default_value_t)]
        variant: WeightsVariant,
    },
}

impl FetchArgs {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        let path = match self.what {
            FetchWhat::Cifar10 => cifar::fetch::fetch_default(&ctx.cache, &mut ctx.console)?,
            FetchWhat::Weights { arch, variant } => {
                let entry = WeightsEntry::find(arch, variant)?;
                fetch_weights(entry, &ctx.cache, &Default::default(), &mut ctx.console)?
            }
        };
        println!("{}", path.display());
        Ok(())
    }
}
