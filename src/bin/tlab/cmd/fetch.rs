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
    /// Pretrained ImageNet weights, e.g. `tlab fetch weights resnet50 --variant v2`;
    /// `--list` shows every architecture's weights
    Weights {
        #[arg(value_enum, ignore_case = true, required_unless_present = "list")]
        arch: Option<Arch>,
        /// Which weights (not every architecture has v2)
        #[arg(long, value_enum, ignore_case = true, default_value_t)]
        variant: WeightsVariant,
        /// The registry as a table: architecture, weights, published ImageNet top-1,
        /// evaluation transform, file size, and whether the cache holds the file
        #[arg(long, conflicts_with = "arch")]
        list: bool,
    },
}

impl FetchArgs {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        let path = match self.what {
            FetchWhat::Cifar10 => cifar::fetch::fetch_default(&ctx.cache, &mut ctx.console)?,
            FetchWhat::Weights { list: true, .. } => {
                print!("{}", weights_table(&ctx.cache));
                return Ok(());
            }
            FetchWhat::Weights { arch, variant, .. } => {
                let arch = arch.expect("clap requires ARCH without --list");
                let entry = WeightsEntry::find(arch, variant)?;
                fetch_weights(entry, &ctx.cache, &Default::default(), &mut ctx.console)?
            }
        };
        println!("{}", path.display());
        Ok(())
    }
}

/// The registry's markdown table, with a column saying which files the cache holds.
fn weights_table(cache: &transfer_lab::cache::Cache) -> String {
    let mut out = String::new();
    for (i, line) in transfer_lab::models::weights::registry_markdown().lines().enumerate() {
        let cached = match i {
            0 => " cached |".to_string(),
            1 => "---|".to_string(),
            _ => {
                let e = transfer_lab::models::weights::registry().nth(i - 2).expect("one row per entry");
                format!(" {} |", if e.cached_path(cache).is_some() { "yes" } else { "" })
            }
        };
        out.push_str(&format!("{line}{cached}\n"));
    }
    out.push_str(&format!("cache: {}\n", cache.weights_dir().display()));
    out
}
