//! `tlab bench`: extraction, training and probes against PyTorch, scikit-learn and Keras,
//! side by side in one run. Built with the `bench` feature; without it the command says
//! how to get it.
#[cfg(not(feature = "bench"))]
use {super::Ctx, anyhow::Result, clap::Args};

#[cfg(not(feature = "bench"))]
#[derive(Args)]
pub(crate) struct BenchArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

#[cfg(not(feature = "bench"))]
impl BenchArgs {
    pub(crate) fn exec(self, _ctx: &mut Ctx) -> Result<()> {
        anyhow::bail!("this tlab was built without the bench; run it with `cargo run --features bench -- bench`")
    }
}

#[cfg(feature = "bench")]
pub(crate) use with_bench::BenchArgs;

#[cfg(feature = "bench")]
mod with_bench {
    use crate::cmd::Ctx;
    use anyhow::{bail, Result};
    use clap::Args;
    use std::path::PathBuf;
    use transfer_lab::bench::{BenchConfig, Section};
    use transfer_lab::device::DeviceChoice;
    use transfer_lab::features::Precision;

    #[derive(Args)]
    pub(crate) struct BenchArgs {
        /// Two rounds and smaller side runs (same model, size and batch)
        #[arg(long)]
        pub(crate) quick: bool,
        /// Only these sections (default: all; e2e includes e2e-ours)
        #[arg(long, value_delimiter = ',', value_enum)]
        pub(crate) only: Option<Vec<Section>>,
        /// Precisions of the throughput candidates and the ceiling (default both fp32 and bf16)
        #[arg(long, value_delimiter = ',', value_enum)]
        pub(crate) precisions: Option<Vec<Precision>>,
        /// Interleaved rounds (default 5, --quick 2)
        #[arg(long)]
        pub(crate) reps: Option<usize>,
        /// Image side
        #[arg(long, default_value_t = BenchConfig::default().size)]
        pub(crate) size: i64,
        /// Images per batch, for every framework
        #[arg(long, default_value_t = BenchConfig::default().batch)]
        pub(crate) batch: i64,
        /// cpu, cuda or cuda:N (CUDA: bf16 and fp32 on the GPU; Keras is skipped there)
        #[arg(long, default_value_t = DeviceChoice::Cpu)]
        pub(crate) device: DeviceChoice,
        /// End to end / peak RSS: the two dataset sizes, e.g. 128,384
        #[arg(long, value_delimiter = ',')]
        pub(crate) e2e_images: Option<Vec<usize>>,
        /// Folder section: 500x375 JPEGs to generate (default 192, --quick 64)
        #[arg(long)]
        pub(crate) folder_images: Option<usize>,
        /// Head training epochs (default 10, --quick 2)
        #[arg(long)]
        pub(crate) head_epochs: Option<u32>,
        /// Probes: rows of the generated 2048-wide features (default 50000, --quick 10000)
        #[arg(long)]
        pub(crate) probe_rows: Option<i64>,
        /// Probes: time only ours' sweep, not scikit-learn's (minutes at 50,000 rows)
        #[arg(long)]
        pub(crate) skip_sklearn_sweep: bool,
        /// Families section: these architectures (default: one of each family)
        #[arg(long, value_delimiter = ',', value_enum, ignore_case = true)]
        pub(crate) arches: Option<Vec<transfer_lab::models::Arch>>,
        /// Each run writes bench.json and bench.csv into a new folder here
        #[arg(long, default_value = "bench/results")]
        pub(crate) results_dir: PathBuf,
    }

    impl BenchArgs {
        pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
            transfer_lab::bench::run_bench(&self.config(ctx.threads)?)?;
            Ok(())
        }

        fn config(self, threads: Option<i32>) -> Result<BenchConfig> {
            let mut c = BenchConfig::default();
            if self.quick {
                c = c.quick();
            }
            if let Some(only) = self.only {
                c.sections = only;
            }
            if let Some(e) = self.e2e_images {
                let [a, b] = e[..] else { bail!("--e2e-images takes two sizes, e.g. 128,384") };
                if a < 5 || b <= a {
                    bail!("--e2e-images {a},{b}: need 5 <= first < second");
                }
                c.e2e_images = [a, b];
            }
            c.precisions = self.precisions.unwrap_or(c.precisions);
            c.reps = self.reps.unwrap_or(c.reps);
            c.head_epochs = self.head_epochs.unwrap_or(c.head_epochs);
            c.folder_images = self.folder_images.unwrap_or(c.folder_images);
            if c.folder_images < 2 {
                bail!("--folder-images {}: need at least 2", c.folder_images);
            }
            c.probe_rows = self.probe_rows.unwrap_or(c.probe_rows);
            if c.probe_rows < 50 {
                bail!("--probe-rows {}: need at least 50", c.probe_rows);
            }
            c.skip_sklearn_sweep = self.skip_sklearn_sweep;
            c.arches = self.arches.unwrap_or(c.arches);
            c.threads = threads.unwrap_or(c.threads);
            (c.size, c.batch, c.device, c.results_dir) = (self.size, self.batch, self.device, self.results_dir);
            Ok(c)
        }
    }
}
