//! "Token features and input sizes": a ViT's poolings side by side on the tutorial's data
//! (our runs, labelled synthetic or random where they are), and each ViT's patch and
//! default pooling.
use super::backbones::table_error;
use super::{Html, Table, Tutorial};
use crate::events::ConsoleSink;
use crate::models::{Arch, Family, Pool, Tap};
use crate::run;
use crate::Result;
use polars::prelude::df;

/// One `--pool` of one ViT: the width it gives and the logreg probe's accuracy on it.
#[derive(Debug, Clone)]
pub struct PoolRow {
    pub pool: Pool,
    pub feature_dim: i64,
    pub test_accuracy: f64,
}

/// A ViT's poolings on one data set at one size.
#[derive(Debug, Clone)]
pub struct PoolComparison {
    pub arch: Arch,
    pub weights: String,
    pub pretrained: bool,
    pub dataset: String,
    pub synthetic: bool,
    pub size: i64,
    /// Penalties logreg swept per row.
    pub sweep: usize,
    pub rows: Vec<PoolRow>,
}

impl Tutorial {
    /// The logreg probe on `arch`'s layer4 tokens pooled each of `pools` ways, set up as
    /// in [`Tutorial::compare_backbones`] (so its default pooling reuses that run's features).
    pub fn compare_pools(&self, arch: Arch, pools: &[Pool]) -> Result<PoolComparison> {
        let mut rows = Vec::new();
        let mut last = None;
        for &pool in pools {
            let mut cfg = self.probe_config(arch);
            cfg.name = format!("tutorial-pool-{}-{}", arch.name(), pool.name());
            cfg.extract.pool = Some(pool);
            let s = run::run(&cfg, &self.runs, &self.cache, &mut ConsoleSink::new(false))?;
            rows.push(PoolRow {
                pool,
                feature_dim: arch.pooled_dim(Tap::Layer4, pool),
                test_accuracy: s.test_accuracy,
            });
            last = Some((s, cfg.extract.preprocess.size, cfg.probe.logreg.lambdas.len()));
        }
        let (s, size, sweep) = last.ok_or_else(|| crate::Error::invalid("poolings", "none given"))?;
        let (dataset, synthetic, weights, pretrained) = (s.dataset, s.synthetic, s.weights, s.pretrained);
        Ok(PoolComparison { arch, weights, pretrained, dataset, synthetic, size, sweep, rows })
    }
}

impl PoolComparison {
    pub fn table(&self) -> Result<Html> {
        let r = &self.rows;
        let default = self.arch.default_pool();
        let df = df!(
            "--pool" => r.iter().map(|r| format!("{}{}", r.pool.name(), if r.pool == default { " (default)" } else { "" })).collect::<Vec<_>>(),
            "features" => r.iter().map(|r| r.feature_dim).collect::<Vec<_>>(),
            "logreg test accuracy" => r.iter().map(|r| (r.test_accuracy * 1e4).round() / 1e4).collect::<Vec<_>>(),
        )
        .map_err(table_error)?;
        let caption = format!(
            "Our runs: logreg ({} penalties swept) on {} ({}) layer4 tokens, {} at {}x{}{}{}",
            self.sweep,
            self.arch.name(),
            self.weights,
            self.dataset,
            self.size,
            self.size,
            if self.synthetic && !self.dataset.contains("SYNTHETIC") { " (SYNTHETIC data)" } else { "" },
            if self.pretrained {
                ""
            } else {
                "; RANDOM weights: widths are real, accuracies show the pipeline, not transfer"
            },
        );
        Ok(Table::new(&df, &caption))
    }
}

/// Each ViT's patch, its tokens at 224 px, its width and its own pooling: facts, no run.
pub fn vit_table() -> Result<Html> {
    let v: Vec<Arch> = Arch::all().iter().copied().filter(|a| a.family() == Family::Vit).collect();
    let patch = |a: &Arch| a.patch().unwrap_or(1);
    let df = df!(
        "--arch" => v.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "patch" => v.iter().map(patch).collect::<Vec<_>>(),
        "patch tokens at 224" => v.iter().map(|a| (224 / patch(a)).pow(2)).collect::<Vec<_>>(),
        "token width" => v.iter().map(|a| a.pooled_dim(Tap::Layer4, Pool::Mean)).collect::<Vec<_>>(),
        "default --pool" => v.iter().map(|a| a.default_pool().name()).collect::<Vec<_>>(),
        "features" => v.iter().map(|a| a.feature_dim(Tap::Layer4)).collect::<Vec<_>>(),
    )
    .map_err(table_error)?;
    Ok(Table::new(&df, "The Vision Transformers tlab builds (from the code: no run)"))
}
