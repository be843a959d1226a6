//! "Which backbone?": the families side by side on the tutorial's data (our runs, labelled
//! synthetic or random where they are), and others' published CIFAR-10 linear-probe
//! figures, labelled as theirs with their source.
use super::{Html, Table, Tutorial, TutorialScale};
use crate::events::ConsoleSink;
use crate::models::{eval_transform_for, registry, Arch, Tap, WeightsEntry};
use crate::run::{self, RunConfig, WeightsChoice};
use crate::train::Strategy;
use crate::Result;
use polars::prelude::{df, DataFrame};
use std::time::Instant;
use tch::{Kind, Tensor};

/// One family's result on the tutorial's data.
#[derive(Debug, Clone)]
pub struct BackboneRow {
    pub arch: Arch,
    /// "convnext-tiny IMAGENET1K_V1", or "... random(seed=0)".
    pub weights: String,
    pub pretrained: bool,
    pub feature_dim: i64,
    /// The input side this row ran at (see [`Tutorial::probe_config`]).
    pub size: i64,
    /// The logreg probe's test accuracy.
    pub test_accuracy: f64,
    /// Extraction of a batch of 16 at the comparison's size, this machine, this process.
    pub images_per_s: f64,
    pub weights_mib: f64,
    pub gflop_per_image: f64,
}

/// Every family's row, on one data set, at one input size (a ViT's fitted to its patch).
#[derive(Debug, Clone)]
pub struct BackboneComparison {
    pub rows: Vec<BackboneRow>,
    pub dataset: String,
    pub synthetic: bool,
    /// The comparison's size, before fitting to a ViT's patch.
    pub size: i64,
    /// Penalties logreg swept per row.
    pub sweep: usize,
}

/// `size` for a CNN; for a ViT the largest multiple of its patch not above it, at least
/// a 2x2 grid: 64 -> 56 for a 14-pixel patch, 64 for 16, 224 for both.
pub fn fitted_size(arch: Arch, size: i64) -> i64 {
    match arch.patch() {
        Some(p) => (size / p * p).max(2 * p),
        None => size,
    }
}

impl Tutorial {
    /// The comparison's input side: quick, 64 px (a ViT at 2x2 patches), so every family
    /// fits in a notebook's minutes; full, 224 (each arch then runs at its weights' crop).
    pub fn comparison_size(&self) -> i64 {
        match self.scale {
            TutorialScale::Quick => 64,
            TutorialScale::Full => 224,
        }
    }

    /// The logreg run of `arch` at [`Tutorial::comparison_size`] fitted to it: its
    /// ImageNet weights when the cache (or the Hub cache) holds them, else seeded random
    /// ones, preprocessed as its weights were evaluated.
    pub fn probe_config(&self, arch: Arch) -> RunConfig {
        let entry = registry().find(|e| e.arch == arch).copied();
        let cached = entry.filter(|e| e.cached_path(&self.cache).is_some_and(|p| p.is_file()));
        let mut cfg = self.config(Strategy::Logreg);
        cfg.name = format!("tutorial-backbone-{}", arch.name());
        cfg.arch = arch;
        cfg.weights = match cached {
            Some(e) => WeightsChoice::Pretrained { variant: e.variant },
            None => WeightsChoice::Random { seed: 0 },
        };
        let eval = eval_transform_for(arch, cached.map(|e| e.variant), None);
        cfg.extract.preprocess.size = match (self.scale, arch.patch()) {
            // A ViT's cost grows with its tokens: CLIP-B/16 at 64 px costs about four
            // ResNet-50s, so the quick check runs the smallest grid, 2x2 patches.
            (TutorialScale::Quick, Some(p)) => 2 * p,
            (TutorialScale::Quick, None) => self.comparison_size(),
            (TutorialScale::Full, _) => fitted_size(arch, eval.crop),
        };
        if self.scale == TutorialScale::Quick {
            // One penalty a decade instead of 45: the sweep is most of a quick row's time.
            let (lo, hi, _) = crate::probe::DEFAULT_LAMBDA_GRID;
            cfg.probe.logreg.lambdas = crate::probe::log_grid(lo, hi, 12);
        }
        cfg.extract.preprocess.normalization = eval.normalization;
        cfg.extract.preprocess.interpolation = eval.interpolation;
        cfg
    }

    /// Runs the logreg probe on each of `arches`' features (the post's data at this
    /// tutorial's scale, see [`Tutorial::probe_config`]) and measures its extraction rate.
    pub fn compare_backbones(&self, arches: &[Arch]) -> Result<BackboneComparison> {
        let mut rows = Vec::new();
        let mut summary = None;
        let mut sweep = 0;
        for &arch in arches {
            let cfg = self.probe_config(arch);
            sweep = cfg.probe.logreg.lambdas.len();
            let size = cfg.extract.preprocess.size;
            let s = run::run(&cfg, &self.runs, &self.cache, &mut ConsoleSink::new(false))?;
            let backbone = run::open_backbone(&cfg, &self.cache, cfg.device.resolve(), &mut ConsoleSink::new(false))?;
            let params: i64 = backbone.vs.variables().values().map(|t| t.numel() as i64).sum();
            rows.push(BackboneRow {
                arch,
                weights: s.weights.clone(),
                pretrained: s.pretrained,
                feature_dim: backbone.feature_dim(Tap::Layer4),
                size,
                test_accuracy: s.test_accuracy,
                images_per_s: rate(&backbone, size),
                weights_mib: params as f64 * 4.0 / (1u64 << 20) as f64,
                gflop_per_image: 2.0 * backbone.macs_per_image(size, Tap::Layer4) as f64 / 1e9,
            });
            summary = Some(s);
        }
        let s = summary.ok_or_else(|| crate::Error::invalid("architectures", "none given"))?;
        let (dataset, synthetic, size) = (s.dataset, s.synthetic, self.comparison_size());
        Ok(BackboneComparison { rows, dataset, synthetic, size, sweep })
    }
}

/// Images per second of the backbone's inference copy on a batch of 16 (one warm-up pass).
fn rate(backbone: &crate::models::Backbone, size: i64) -> f64 {
    let x = Tensor::randn([16, 3, size, size], (Kind::Float, backbone.vs.device()));
    let _ = backbone.features(&x, Tap::Layer4);
    let t = Instant::now();
    let _ = backbone.features(&x, Tap::Layer4);
    16.0 / t.elapsed().as_secs_f64()
}

pub(super) fn table_error(e: polars::prelude::PolarsError) -> crate::Error {
    crate::Error::Table { path: "backbone table".into(), reason: e.to_string() }
}

impl BackboneComparison {
    pub fn frame(&self) -> Result<DataFrame> {
        let r = &self.rows;
        df!(
            "arch" => r.iter().map(|r| r.arch.name()).collect::<Vec<_>>(),
            "weights" => r.iter().map(|r| r.weights.clone()).collect::<Vec<_>>(),
            "size" => r.iter().map(|r| r.size).collect::<Vec<_>>(),
            "features" => r.iter().map(|r| r.feature_dim).collect::<Vec<_>>(),
            "logreg test accuracy" => r.iter().map(|r| (r.test_accuracy * 1e4).round() / 1e4).collect::<Vec<_>>(),
            "images/s" => r.iter().map(|r| (r.images_per_s * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "GFLOP/image" => r.iter().map(|r| (r.gflop_per_image * 100.0).round() / 100.0).collect::<Vec<_>>(),
            "weights MiB" => r.iter().map(|r| r.weights_mib.round()).collect::<Vec<_>>(),
        )
        .map_err(table_error)
    }

    /// The table, captioned with what the figures are (and are not).
    pub fn table(&self) -> Result<Html> {
        let random = self.rows.iter().any(|r| !r.pretrained);
        let caption = format!(
            "Our runs: logreg ({} penalties swept) on each backbone's pooled features, {} at {}x{} (a ViT at {}: \
             the size column){}{}; extraction rate on this machine",
            self.sweep,
            self.dataset,
            self.size,
            self.size,
            if self.size == 64 { "2x2 patches" } else { "a multiple of its patch" },
            if self.synthetic && !self.dataset.contains("SYNTHETIC") { " (SYNTHETIC data)" } else { "" },
            if random { "; rows with random(seed) weights show the pipeline, not transfer" } else { "" },
        );
        Ok(Table::new(&self.frame()?, &caption))
    }
}

/// Others' published CIFAR-10 linear-probe accuracies (frozen ImageNet features, logistic
/// regression), with their source: not our measurements.
pub fn published_linear_probe() -> Result<Html> {
    const CLIP: &str = "Radford et al. 2021 (CLIP), table 10";
    const DINOV2: &str = "Oquab et al. 2023 (DINOv2), table 8";
    let rows = [
        ("ResNet-50 (original MSRA weights)", 91.8, CLIP),
        ("EfficientNet-B0", 92.5, CLIP),
        ("EfficientNet-B7", 94.9, CLIP),
        ("CLIP ViT-B/16", 96.2, CLIP),
        ("CLIP ViT-L/14", 98.0, CLIP),
        ("DINOv2 ViT-S/14", 97.7, DINOV2),
        ("DINOv2 ViT-B/14", 98.7, DINOV2),
        ("DINOv2 ViT-L/14", 99.3, DINOV2),
    ];
    let df = df!(
        "network" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "CIFAR-10 linear probe %" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "source" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
    )
    .map_err(table_error)?;
    Ok(Table::new(&df, "Published by others (their protocol, full CIFAR-10, 224 px): not our runs"))
}

/// The weights registry: what `tlab fetch weights --list` shows.
pub fn weights_registry() -> Result<Html> {
    let e: Vec<&WeightsEntry> = registry().collect();
    let df = df!(
        "--arch" => e.iter().map(|e| e.arch.name()).collect::<Vec<_>>(),
        "--weights" => e.iter().map(|e| e.variant.name()).collect::<Vec<_>>(),
        "ImageNet top-1 %" => e.iter().map(|e| e.imagenet_top1 as f64).collect::<Vec<_>>(),
        "eval transform" => e.iter().map(|e| format!("resize {} {}, crop {}, {}", e.eval.resize, e.eval.interpolation.name(), e.eval.crop, e.eval.normalization.name())).collect::<Vec<_>>(),
        "MiB" => e.iter().map(|e| e.size_mib.round() as f64).collect::<Vec<_>>(),
    )
    .map_err(table_error)?;
    Ok(Table::new(&df, "Pretrained weights tlab fetches (published figures)"))
}
