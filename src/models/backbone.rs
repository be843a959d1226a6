//! A network of any family with its weights: where they came from, their digest, the
//! input they expect, and the inference copy extraction runs.
use super::arch::Arch;
use super::family::{Inference, Network, Pool, Tap};
use super::folded::Precision;
use super::weights::{fetch_weights, load_tensors, load_weights, WeightsEntry};
use crate::cache::Cache;
use crate::download::{sha256_file, Downloader};
use crate::events::EventSink;
use crate::preprocess::Normalization;
use crate::Result;
use std::path::Path;
use tch::{nn, Device, Tensor};

/// Where a backbone's weights came from; recorded in caches and run configs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightsInfo {
    /// e.g. "resnet50 IMAGENET1K_V1", "file:/path/x.pth", "random(seed=0)".
    pub label: String,
    /// SHA-256 of the weights file, or a description of the seeded init.
    pub digest: String,
    /// The normalisation the weights were trained with, when known.
    pub normalization: Option<Normalization>,
    /// False for seeded random weights: results then show the pipeline, not transfer.
    pub pretrained: bool,
}

/// A frozen feature extractor.
pub struct Backbone {
    pub vs: nn::VarStore,
    pub net: Box<dyn Network>,
    pub weights: WeightsInfo,
    /// The fp32 inference copy that extraction runs (BatchNorm folded, channels-last where
    /// the family gains); built from `vs` once the weights are in, so later changes to
    /// `vs` do not reach it.
    inference: Box<dyn Inference>,
}

impl Backbone {
    /// Seeded random init (no download): shows the pipeline working, not transfer learning.
    pub fn random(arch: Arch, seed: i64, device: Device) -> Backbone {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(device);
        let net = arch.build(&vs.root());
        let weights = WeightsInfo {
            label: format!("{} random(seed={seed})", arch.name()),
            digest: format!("random:{}:{seed}", arch.name()),
            normalization: None,
            pretrained: false,
        };
        Backbone::assemble(vs, net, weights)
    }

    fn assemble(vs: nn::VarStore, net: Box<dyn Network>, weights: WeightsInfo) -> Backbone {
        let inference = net.inference(&vs, Precision::Fp32);
        Backbone { vs, net, weights, inference }
    }

    /// Loads a local weights file strictly: a `.pth` or `.safetensors` state dict under
    /// the published names, or the family's own format (Keras' `.h5`).
    pub fn from_file(arch: Arch, path: &Path, device: Device) -> Result<Backbone> {
        let mut vs = nn::VarStore::new(device);
        let net = arch.build(&vs.root());
        load_backbone_weights(arch, &mut vs, path)?;
        let digest = sha256_file(path)?;
        let normalization = registry_entry_for(arch, path).map(|e| e.normalization());
        let label = format!("{} file:{}", arch.name(), path.display());
        Ok(Backbone::assemble(vs, net, WeightsInfo { label, digest, normalization, pretrained: true }))
    }

    /// torchvision's ImageNet weights from the cache, downloading them when absent.
    pub fn pretrained(
        entry: &WeightsEntry,
        cache: &Cache,
        device: Device,
        sink: &mut dyn EventSink,
    ) -> Result<Backbone> {
        let path = fetch_weights(entry, cache, &Downloader::default(), sink)?;
        let mut b = Backbone::from_file(entry.arch, &path, device)?;
        b.weights.label = entry.label();
        b.weights.normalization = Some(entry.normalization());
        Ok(b)
    }

    pub fn arch(&self) -> Arch {
        self.net.arch()
    }

    /// Pooled features at `tap` for preprocessed images: `[N, 3, S, S]` -> `[N, C]`, by
    /// the architecture's own pooling.
    pub fn features(&self, x: &Tensor, tap: Tap) -> Tensor {
        self.inference.features(x, tap)
    }

    /// Features at `tap` pooled by `pool`: `[N, 3, S, S]` -> `[N, pool.width(C)]`.
    pub fn readout(&self, x: &Tensor, tap: Tap, pool: Pool) -> Tensor {
        self.inference.readout(x, tap, pool)
    }

    /// Feature width at `tap` by the architecture's own pooling.
    pub fn feature_dim(&self, tap: Tap) -> i64 {
        self.arch().feature_dim(tap)
    }

    /// Feature width at `tap` pooled by `pool`.
    pub fn pooled_dim(&self, tap: Tap, pool: Pool) -> i64 {
        self.arch().pooled_dim(tap, pool)
    }

    /// Another inference copy in `precision` (bf16, fp16), made from the fp32 weights.
    pub fn inference_copy(&self, precision: Precision) -> Box<dyn Inference> {
        self.net.inference(&self.vs, precision)
    }

    /// Multiply-accumulates per `side` x `side` image up to `tap`.
    pub fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        self.net.macs_per_image(side, tap)
    }

    /// Warns loudly when `norm` is not what the weights were trained with.
    pub fn check_normalization(&self, norm: Normalization, sink: &mut dyn EventSink) {
        if let Some(want) = self.weights.normalization.filter(|w| *w != norm) {
            sink.warn(&format!(
                "normalisation `{}` does not match the weights {} which expect `{}`: features will be poor",
                norm.name(),
                self.weights.label,
                want.name()
            ));
        }
    }
}

/// Copies a weights file into `vs` (built by `arch.build`), strictly, leaving out the
/// published checkpoint's classifier: `.h5` through the family's converter, any other
/// file as a state dict.
pub fn load_backbone_weights(arch: Arch, vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    let spec = arch.spec();
    let h5 = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("h5"));
    let res = match spec.converter {
        Some(convert) if h5 => load_tensors(vs, convert(path)?, path, spec.classifier).map(|_| ()),
        None if h5 => Err(crate::Error::Weights {
            path: path.to_path_buf(),
            reason: format!(
                "a `.h5` file is Keras' format; {} reads `.pth` or `.safetensors` state dicts \
                 (Keras' ResNet50 is `--arch keras-resnet50`)",
                arch.name()
            ),
        }),
        _ => load_weights(vs, path, spec.classifier).map(|_| ()),
    };
    // Both missing and unexpected names: most likely another network's file.
    res.map_err(|e| match e {
        crate::Error::Weights { path, reason } if reason.contains("missing") && reason.contains("unexpected") => {
            let reason = format!("{reason}; is it a checkpoint of another architecture? this is --arch {arch}");
            crate::Error::Weights { path, reason }
        }
        other => other,
    })
}

/// The registry entry whose file name `path` carries, if any.
fn registry_entry_for(arch: Arch, path: &Path) -> Option<&'static WeightsEntry> {
    let name = path.file_name()?.to_str()?;
    super::weights::registry().find(|e| e.arch == arch && e.file == name)
}
