//! What a run is told (`RunConfig`) and reports (`RunSummary`), and the small helpers
//! every phase shares; [`super::records`] reads and writes them.
use crate::data::DataSpec;
use crate::events::{EventSink, RunEvent};
use crate::features::ExtractConfig;
use crate::models::{Arch, WeightsVariant};
use crate::probe::{ProbeConfig, ProbeResult};
use crate::train::{HeadConfig, ImageTrainConfig, Strategy};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// Which weights the backbone starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WeightsChoice {
    /// torchvision's ImageNet weights (written "IMAGENET1K_V1" in config.json).
    Pretrained {
        variant: WeightsVariant,
    },
    File {
        path: PathBuf,
    },
    /// Seeded random init: shows the pipeline working, not transfer learning.
    Random {
        seed: i64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub name: String,
    pub data: DataSpec,
    pub arch: Arch,
    pub weights: WeightsChoice,
    pub extract: ExtractConfig,
    pub head: HeadConfig,
    /// "auto", "cpu", "cuda" or "cuda:N".
    pub device: crate::device::DeviceChoice,
    /// Use only the first N images of each split (quick looks).
    pub limit: Option<usize>,
    /// When CIFAR-10 or the weights cannot be fetched, carry on with synthetic data or
    /// random weights (saying so) instead of failing.
    pub offline_fallback: bool,
    pub strategy: Strategy,
    /// Settings of the image-trained strategies (fine-tune, pretrained-init, scratch).
    pub images: ImageTrainConfig,
    /// Settings of the convex probes (logreg, knn); absent in older runs.
    #[serde(default)]
    pub probe: ProbeConfig,
    /// After training, fit a temperature on the validation split (`calibration.json`).
    #[serde(default)]
    pub calibrate: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: "linear-probe".into(),
            data: DataSpec::Cifar10 { path: None },
            arch: Arch::ResNet50,
            weights: WeightsChoice::Pretrained { variant: WeightsVariant::V1 },
            extract: ExtractConfig::default(),
            head: HeadConfig::default(),
            device: Default::default(),
            limit: None,
            offline_fallback: true,
            strategy: Strategy::LinearProbe,
            images: ImageTrainConfig::for_strategy(Strategy::FineTune),
            probe: ProbeConfig::default(),
            calibrate: false,
        }
    }
}

/// What a finished run reports (`summary.json`). Fields added later have defaults, so
/// older runs still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    /// Absent in runs from before strategies existed.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// True when a `STOP` request ended training early.
    #[serde(default)]
    pub stopped: bool,
    pub dataset: String,
    pub synthetic: bool,
    pub weights: String,
    pub pretrained: bool,
    pub best_epoch: u32,
    pub best_val_acc: f64,
    pub test_accuracy: f64,
    pub test_samples: usize,
    /// Mean recall over the test split's classes, and mean F1: what a small class gets.
    /// Absent in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balanced_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    #[serde(default)]
    pub note: String,
    /// What a convex probe chose (logreg's lambda, k-NN's k).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeResult>,
    /// Milliseconds of fitting the classifier (extraction not included; for a resumed
    /// run, its last part only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_ms: Option<u64>,
}

pub(crate) fn stage<T>(
    sink: &mut dyn EventSink,
    name: &str,
    f: impl FnOnce(&mut dyn EventSink) -> Result<T>,
) -> Result<T> {
    crate::interrupt::check(|| format!("stopped before the {name} stage; what earlier stages wrote is kept"))?;
    sink.emit(&RunEvent::StageStarted { stage: name.into() });
    let t = Instant::now();
    let out = f(sink)?;
    sink.emit(&RunEvent::StageFinished { stage: name.into(), elapsed_ms: t.elapsed().as_millis() as u64 });
    Ok(out)
}

/// The plain statement printed at the start and stored with every result.
/// `data` is what [`crate::data::Dataset::kind_label`] says.
pub fn run_note(data: &str, pretrained: bool) -> String {
    let weights = if pretrained {
        "pretrained weights"
    } else {
        "SEEDED RANDOM weights: this shows the pipeline working, not transfer learning"
    };
    format!("{data}; {weights}")
}
