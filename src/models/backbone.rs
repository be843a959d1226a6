//! A ResNet with its weights: where they came from, their digest, the input they expect.
use super::folded::FoldedResNet;
use super::resnet::{Arch, ResNet, Tap};
use super::weights::{fetch_weights, load_weights, WeightsEntry};
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
    pub net: ResNet,
    pub weights: WeightsInfo,
    /// The inference copy that extraction runs (BatchNorm folded, channels-last); built
    /// from `vs` once the weights are in, so later changes to `vs` do not reach it.
    folded: FoldedResNet,
}

impl Backbone {
    /// Seeded random init (no download): shows the pipeline working, not transfer learning.
    pub fn random(arch: Arch, seed: i64, device: Device) -> Backbone {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(device);
        let net = ResNet::new(&vs.root(), arch, None);
        let weights = WeightsInfo {
            label: format!("{} random(seed={seed})", arch.name()),
            digest: format!("random:{}:{seed}", arch.name()),
            normalization: None,
            pretrained: false,
        };
        Backbone::assemble(vs, net, weights)
    }

    fn assemble(vs: nn::VarStore, net: ResNet, weights: WeightsInfo) -> Backbone {
        let folded = FoldedResNet::new(&net, true);
        Backbone { vs, net, weights, folded }
    }

    /// Loads a local `.pth` or `.safetensors` state dict (torchvision names), strictly.
    pub fn from_file(arch: Arch, path: &Path, device: Device) -> Result<Backbone> {
        let mut vs = nn::VarStore::new(device);
        let net = ResNet::new(&vs.root(), arch, None);
        load_weights(&mut vs, path, &["fc."])?;
        let digest = sha256_file(path)?;
        let normalization = registry_entry_for(path).map(|e| e.normalization);
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
        b.weights.label = format!("{} {}", entry.arch.name(), entry.variant.torchvision_name());
        b.weights.normalization = Some(entry.normalization);
        Ok(b)
    }

    /// Pooled features at `tap` for preprocessed images: `[N, 3, S, S]` -> `[N, C]`.
    pub fn features(&self, x: &Tensor, tap: Tap) -> Tensor {
        self.folded.features(x, tap)
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

/// The registry entry whose file name `path` carries, if any.
fn registry_entry_for(path: &Path) -> Option<&'static WeightsEntry> {
    let name = path.file_name()?.to_str()?;
    super::weights::REGISTRY.iter().find(|e| e.file == name)
}
