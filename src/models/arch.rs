//! The registry of architectures: each `--arch` value, its family, and what the rest of
//! the crate needs to know about it without building it. A family adds its variants here
//! and a `spec` in its own file.
use super::family::{Converter, Network, Pool, Tap};
use super::weights::WeightsEntry;
use serde::{Deserialize, Serialize};
use tch::nn;

/// Every network `tlab` builds. The spelling is the CLI's, serde's and the cache key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Arch {
    /// torchvision ResNet-18 (v1.5)
    #[serde(rename = "resnet18")]
    #[value(name = "resnet18")]
    ResNet18,
    /// torchvision ResNet-34 (v1.5)
    #[serde(rename = "resnet34")]
    #[value(name = "resnet34")]
    ResNet34,
    /// torchvision ResNet-50 (v1.5: the stride on the 3x3)
    #[serde(rename = "resnet50")]
    #[value(name = "resnet50")]
    ResNet50,
    /// torchvision ResNet-101 (v1.5)
    #[serde(rename = "resnet101")]
    #[value(name = "resnet101")]
    ResNet101,
    /// torchvision ResNet-152 (v1.5)
    #[serde(rename = "resnet152")]
    #[value(name = "resnet152")]
    ResNet152,
    /// Keras' ResNet50 (v1: the stride on the 1x1), the post's network, from Keras' .h5
    #[serde(rename = "keras-resnet50")]
    #[value(name = "keras-resnet50")]
    KerasResNet50,
    /// torchvision ConvNeXt-Tiny (2022; 28M parameters)
    #[serde(rename = "convnext-tiny")]
    #[value(name = "convnext-tiny")]
    ConvnextTiny,
    /// torchvision ConvNeXt-Small (50M parameters)
    #[serde(rename = "convnext-small")]
    #[value(name = "convnext-small")]
    ConvnextSmall,
    /// torchvision ConvNeXt-Base (89M parameters)
    #[serde(rename = "convnext-base")]
    #[value(name = "convnext-base")]
    ConvnextBase,
    /// torchvision EfficientNet-B0 (MBConv, squeeze-excitation, SiLU; 1280 features)
    #[serde(rename = "efficientnet-b0")]
    #[value(name = "efficientnet-b0")]
    EfficientnetB0,
    /// torchvision EfficientNet-B1 (B0 1.1x deeper)
    #[serde(rename = "efficientnet-b1")]
    #[value(name = "efficientnet-b1")]
    EfficientnetB1,
    /// torchvision EfficientNet-B2 (1.1x wider, 1.2x deeper; 1408 features)
    #[serde(rename = "efficientnet-b2")]
    #[value(name = "efficientnet-b2")]
    EfficientnetB2,
    /// torchvision EfficientNet-B3 (1.2x wider, 1.4x deeper; 1536 features)
    #[serde(rename = "efficientnet-b3")]
    #[value(name = "efficientnet-b3")]
    EfficientnetB3,
    /// torchvision EfficientNetV2-S (Fused-MBConv early stages; 1280 features)
    #[serde(rename = "efficientnet-v2-s")]
    #[value(name = "efficientnet-v2-s")]
    EfficientnetV2S,
    /// DINOv2 ViT-S/14 (self-supervised, 2023; 22M parameters; Hugging Face facebook/dinov2-small)
    #[serde(rename = "dinov2-vits14")]
    #[value(name = "dinov2-vits14")]
    Dinov2Vits14,
    /// DINOv2 ViT-B/14 (86M parameters; facebook/dinov2-base)
    #[serde(rename = "dinov2-vitb14")]
    #[value(name = "dinov2-vitb14")]
    Dinov2Vitb14,
    /// DINOv2 ViT-L/14 (300M parameters; facebook/dinov2-large)
    #[serde(rename = "dinov2-vitl14")]
    #[value(name = "dinov2-vitl14")]
    Dinov2Vitl14,
    /// DINOv2 ViT-S/14 with 4 registers (facebook/dinov2-with-registers-small)
    #[serde(rename = "dinov2-vits14-reg")]
    #[value(name = "dinov2-vits14-reg")]
    Dinov2Vits14Reg,
    /// DINOv2 ViT-B/14 with 4 registers (facebook/dinov2-with-registers-base)
    #[serde(rename = "dinov2-vitb14-reg")]
    #[value(name = "dinov2-vitb14-reg")]
    Dinov2Vitb14Reg,
    /// DINOv2 ViT-L/14 with 4 registers (facebook/dinov2-with-registers-large)
    #[serde(rename = "dinov2-vitl14-reg")]
    #[value(name = "dinov2-vitl14-reg")]
    Dinov2Vitl14Reg,
    /// CLIP ViT-B/16 image tower (OpenAI, 2021; openai/clip-vit-base-patch16)
    #[serde(rename = "clip-vitb16")]
    #[value(name = "clip-vitb16")]
    ClipVitb16,
    /// CLIP ViT-L/14 image tower (openai/clip-vit-large-patch14)
    #[serde(rename = "clip-vitl14")]
    #[value(name = "clip-vitl14")]
    ClipVitl14,
    /// torchvision ViT-B/16 (supervised on ImageNet-1k; 86M parameters)
    #[serde(rename = "vit-b16")]
    #[value(name = "vit-b16")]
    VitB16,
}

crate::choice::choice!(Arch, "architecture", ignore_case);

/// The families; a family is one file (or folder) under `src/models/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// torchvision's ResNets.
    ResNet,
    /// Keras' ResNet50 (`keras.applications`).
    KerasResNet,
    /// torchvision's ConvNeXts.
    ConvNeXt,
    /// torchvision's EfficientNets (B0-B3, V2-S).
    #[serde(rename = "efficientnet")]
    EfficientNet,
    /// Vision Transformers: DINOv2, CLIP's image tower, torchvision's ViT.
    Vit,
}

/// What an architecture is, without building it.
#[derive(Clone, Copy)]
pub struct ArchSpec {
    pub family: Family,
    /// Feature width at `layer1..layer4`.
    pub widths: [i64; 4],
    /// Variable-name prefixes of the last (1/32) stage and any final norm: what
    /// `--unfreeze layer4` trains.
    pub last_stage: &'static [&'static str],
    /// Prefixes of the published checkpoint's classifier, which a backbone leaves out.
    pub classifier: &'static [&'static str],
    /// Builds the network under a path (`vs.root()`, so names equal the checkpoint's).
    pub build: fn(&nn::Path, Arch) -> Box<dyn Network>,
    /// The published checkpoints of this family (each entry names its arch).
    pub weights: &'static [WeightsEntry],
    /// Reads a weights file in a format other than a state dict (Keras' `.h5`) into
    /// this crate's names; `None`: `.pth` / `.safetensors` state dicts only.
    pub converter: Option<Converter>,
}

impl Arch {
    pub fn spec(self) -> ArchSpec {
        use Arch::*;
        match self {
            ResNet18 | ResNet34 | ResNet50 | ResNet101 | ResNet152 => super::resnet::spec(self),
            KerasResNet50 => super::keras::resnet::spec(self),
            ConvnextTiny | ConvnextSmall | ConvnextBase => super::convnext::spec(self),
            EfficientnetB0 | EfficientnetB1 | EfficientnetB2 | EfficientnetB3 | EfficientnetV2S => {
                super::efficientnet::spec(self)
            }
            Dinov2Vits14 | Dinov2Vitb14 | Dinov2Vitl14 | Dinov2Vits14Reg | Dinov2Vitb14Reg | Dinov2Vitl14Reg
            | ClipVitb16 | ClipVitl14 | VitB16 => super::vit::spec(self),
        }
    }

    pub fn family(self) -> Family {
        self.spec().family
    }

    /// Builds the network under `p`; its variables are the published checkpoint's keys.
    pub fn build(self, p: &nn::Path) -> Box<dyn Network> {
        (self.spec().build)(p, self)
    }

    /// Feature width at `tap` by its own pooling ([`Arch::default_pool`]): `[N, C]`'s C.
    pub fn feature_dim(self, tap: Tap) -> i64 {
        self.pooled_dim(tap, self.default_pool())
    }

    /// Feature width at `tap` pooled by `pool`.
    pub fn pooled_dim(self, tap: Tap, pool: Pool) -> i64 {
        pool.width(self.spec().widths[tap.index()])
    }

    /// The pooling its published evaluation uses: the mean for CNNs, DINOv2's class
    /// token + patch mean, CLIP's and torchvision ViT's class token.
    pub fn default_pool(self) -> Pool {
        match self.family() {
            Family::Vit => super::vit::default_pool(self),
            _ => Pool::Mean,
        }
    }

    /// `pool`, or the default when `None`; an error when the network has no class token.
    pub fn pool(self, pool: Option<Pool>) -> crate::Result<Pool> {
        let pool = pool.unwrap_or(self.default_pool());
        if pool != Pool::Mean && self.family() != Family::Vit {
            return Err(crate::Error::invalid(
                "--pool",
                format!("`{}` needs a class token; {} is a CNN, pooled by its mean only", pool.name(), self.name()),
            ));
        }
        Ok(pool)
    }

    /// The patch side of a ViT (inputs must be multiples of it); `None` for CNNs.
    pub fn patch(self) -> Option<i64> {
        (self.family() == Family::Vit).then(|| super::vit::patch(self))
    }

    /// Whether `size` x `size` inputs fit: a ViT needs a multiple of its patch, and an
    /// error names the nearest sizes that are.
    pub fn check_size(self, size: i64) -> crate::Result<()> {
        let Some(p) = self.patch() else { return Ok(()) };
        if size % p == 0 && size >= p {
            return Ok(());
        }
        let below = (size / p * p).max(p);
        let above = (size / p + 1) * p;
        let near = if below == above { format!("{below}") } else { format!("{below} or {above}") };
        Err(crate::Error::invalid(
            "--size",
            format!(
                "{size} is not a multiple of {}'s {p}-pixel patch; the nearest sizes that are: {near}",
                self.name()
            ),
        ))
    }

    /// One architecture of each family, the smallest but ResNet-50 (the post's), in
    /// `--arch` order: what the bench and the pipeline tests run.
    pub fn representatives() -> Vec<Arch> {
        let mut out: Vec<Arch> = Vec::new();
        for &a in Arch::all() {
            if !out.iter().any(|o| o.family() == a.family()) {
                out.push(if a.family() == Family::ResNet { Arch::ResNet50 } else { a });
            }
        }
        out
    }

    /// Whether variable `name` belongs to the last stage (what `--unfreeze layer4` trains).
    pub fn in_last_stage(self, name: &str) -> bool {
        self.spec().last_stage.iter().any(|p| name.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arch_builds_with_its_declared_widths() {
        for &a in Arch::all() {
            // 300M parameters each: tests/testsuite/parity_vit.rs builds them against
            // their real key sets.
            if matches!(a, Arch::Dinov2Vitl14 | Arch::Dinov2Vitl14Reg | Arch::ClipVitl14) {
                continue;
            }
            assert_eq!(a.name().parse::<Arch>().unwrap(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.name()), "serde and the CLI spell {a:?} alike");
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let _net = a.build(&vs.root());
            let names: Vec<String> = vs.variables().into_keys().collect();
            assert!(names.iter().any(|n| a.in_last_stage(n)), "{a}: no variable in its last stage");
            let spec = a.spec();
            assert!(
                !names.iter().any(|n| spec.classifier.iter().any(|c| n.starts_with(c))),
                "{a}: builds a classifier"
            );
        }
    }
}
