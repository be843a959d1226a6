//! Vision Transformers: DINOv2 (with and without registers) and CLIP's image tower in
//! `transformers`' layout, torchvision's ViT-B/16 in its own.
//!
//! Variable paths equal the published checkpoints' keys (`encoder.layer.0.attention.
//! attention.query.weight`, `vision_model.encoder.layers.0.self_attn.q_proj.weight`,
//! `encoder.layers.encoder_layer_0.self_attention.in_proj_weight`), so `model.safetensors`
//! and torchvision's `.pth` load strictly. Attention runs through libtorch's
//! `scaled_dot_product_attention`.
//!
//! Taps: `layer1..layer4` are the outputs of blocks at a quarter, half, three quarters
//! and all of the depth, each through the final norm (as DINOv2's own evaluation reads
//! intermediate blocks). The tap maps are the patch tokens as `[N, D, h, w]`.
mod block;
pub mod config;
mod embed;
mod inference;

use super::arch::{Arch, ArchSpec, Family};
use super::family::{Inference, Network, Pool, Tap, TokenNet};
use super::folded::Precision;
use super::weights::{tv, EvalTransform, WeightsEntry, WeightsVariant, TV_RESNET};
use crate::preprocess::{Interpolation, Normalization};
use block::Block;
use config::{Config, Flavour};
use embed::Embeddings;
use tch::nn;
use tch::Tensor;

/// The registry's facts about a ViT.
pub(super) fn spec(arch: Arch) -> ArchSpec {
    let c = Config::of(arch);
    ArchSpec {
        family: Family::Vit,
        widths: [c.dim; 4],
        last_stage: Config::last_stage(arch),
        classifier: Config::skipped(c.flavour),
        build: |p, arch| Box::new(Vit::new(p, arch)),
        weights: WEIGHTS,
        converter: None,
    }
}

/// The pooling a ViT's published evaluation uses: DINOv2's linear probe reads the class
/// token and the patch mean; CLIP's and torchvision's heads read the class token.
pub(super) fn default_pool(arch: Arch) -> Pool {
    match Config::of(arch).flavour {
        Flavour::Dinov2 | Flavour::Dinov2Registers => Pool::ClsMean,
        Flavour::Clip | Flavour::Torchvision => Pool::Cls,
    }
}

/// The patch side: inputs must be a multiple of it.
pub(super) fn patch(arch: Arch) -> i64 {
    Config::of(arch).patch
}

/// DINOv2's evaluation transform: resize 256 bicubic, crop 224, ImageNet mean/std.
pub const DINOV2_EVAL: EvalTransform = EvalTransform { interpolation: Interpolation::Bicubic, ..TV_RESNET };
/// CLIP's image processor: shorter side to 224 bicubic, crop 224, CLIP's mean/std.
pub const CLIP_EVAL: EvalTransform =
    EvalTransform { resize: 224, crop: 224, interpolation: Interpolation::Bicubic, normalization: Normalization::Clip };

/// The Hub's files (ImageNet top-1: the papers' linear probes, DINOv2 table 4 and CLIP
/// table 10; sizes: fp32 parameters) and torchvision 0.26's ViT-B/16 (resize 256
/// bilinear, crop 224; supervised top-1). dinov2-with-registers small and base have no
/// commit pinned here yet: `--weights PATH`.
const WEIGHTS: &[WeightsEntry] = {
    use crate::hub::*;
    use Arch::*;
    const fn hub(arch: Arch, f: &'static HubFile, eval: EvalTransform, top1: f32, size_mib: f32) -> WeightsEntry {
        let source = super::weights::Source::Hub(f);
        WeightsEntry { arch, variant: WeightsVariant::V1, file: f.file, source, eval, imagenet_top1: top1, size_mib }
    }
    &[
        hub(Dinov2Vits14, &DINOV2_SMALL, DINOV2_EVAL, 81.1, 84.2),
        hub(Dinov2Vitb14, &DINOV2_BASE, DINOV2_EVAL, 84.5, 330.3),
        hub(Dinov2Vitl14, &DINOV2_LARGE, DINOV2_EVAL, 86.3, 1161.2),
        // No top-1 published for this file: NaN shows as "-".
        hub(Dinov2Vitl14Reg, &DINOV2_WITH_REGISTERS_LARGE, DINOV2_EVAL, f32::NAN, 1161.2),
        hub(ClipVitb16, &CLIP_VIT_BASE_PATCH16, CLIP_EVAL, 80.2, 570.9),
        hub(ClipVitl14, &CLIP_VIT_LARGE_PATCH14, CLIP_EVAL, 83.9, 1631.2),
        tv(VitB16, WeightsVariant::V1, "vit_b_16-c867db91.pth", 81.072, 330.285, TV_RESNET),
    ]
};

/// The evaluation transform of a ViT's weights, with or without a registry entry.
pub(super) fn eval_for(arch: Arch) -> Option<EvalTransform> {
    (arch.family() == Family::Vit).then(|| match Config::of(arch).flavour {
        Flavour::Dinov2 | Flavour::Dinov2Registers => DINOV2_EVAL,
        Flavour::Clip => CLIP_EVAL,
        Flavour::Torchvision => TV_RESNET,
    })
}

/// Where a ViT's weights are published, for an error that has no pinned download.
pub(super) fn hub_hint(arch: Arch) -> Option<String> {
    let repo = match arch {
        Arch::Dinov2Vits14Reg => "facebook/dinov2-with-registers-small",
        Arch::Dinov2Vitb14Reg => "facebook/dinov2-with-registers-base",
        _ => return None,
    };
    Some(format!(" (`hf download {repo} model.safetensors`, then --weights the path it prints)"))
}

/// A Vision Transformer of any flavour.
#[derive(Debug)]
pub struct Vit {
    arch: Arch,
    c: Config,
    embed: Embeddings,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
}

impl Vit {
    pub fn new(p: &nn::Path, arch: Arch) -> Vit {
        Vit::with_config(p, arch, Config::of(arch))
    }

    /// A ViT of shape `c` under `arch`'s names and pooling (the parity tests' small ones).
    pub fn with_config(p: &nn::Path, arch: Arch, c: Config) -> Vit {
        let clip_root;
        let root: &nn::Path = if c.flavour == Flavour::Clip {
            clip_root = p / "vision_model";
            &clip_root
        } else {
            p
        };
        let embed = Embeddings::new(root, &c);
        let layers = match c.flavour {
            Flavour::Dinov2 | Flavour::Dinov2Registers => root / "encoder" / "layer",
            _ => root / "encoder" / "layers",
        };
        let blocks = (0..c.depth)
            .map(|i| match c.flavour {
                Flavour::Torchvision => Block::new(&layers / format!("encoder_layer_{i}"), &c),
                _ => Block::new(&layers / i, &c),
            })
            .collect();
        let norm = match c.flavour {
            Flavour::Dinov2 | Flavour::Dinov2Registers => root / "layernorm",
            Flavour::Clip => root / "post_layernorm",
            Flavour::Torchvision => root / "encoder" / "ln",
        };
        let norm = block::layer_norm(norm, c.dim, c.eps);
        Vit { arch, c, embed, blocks, norm }
    }

    /// The positions added to an `h` x `w` grid of patches: `[1, 1 + h*w, D]`.
    pub fn positions(&self, h: i64, w: i64) -> Tensor {
        self.embed.positions_for(h, w)
    }

    /// Tokens through the final norm after the blocks of taps `0..=last`: `[N, T, D]` each.
    pub fn tokens(&self, x: &Tensor, last: Tap) -> (Vec<Tensor>, (i64, i64)) {
        let (mut t, grid) = self.embed.forward(x);
        let mut out = Vec::new();
        let mut done = 0;
        for i in 0..=last.index() {
            for b in &self.blocks[done..self.c.blocks_to(i)] {
                t = b.forward(&t);
            }
            done = self.c.blocks_to(i);
            out.push(t.apply(&self.norm));
        }
        (out, grid)
    }

    /// `[N, T, D]` normed tokens -> `[N, pool.width(D)]`.
    fn pool(&self, t: &Tensor, pool: Pool) -> Tensor {
        let skip = 1 + self.c.registers();
        let n = t.size()[1];
        let cls = t.select(1, 0);
        let mean = || t.narrow(1, skip, n - skip).mean_dim(1, false, None);
        match pool {
            Pool::Cls => cls,
            Pool::Mean => mean(),
            Pool::ClsMean => Tensor::cat(&[cls, mean()], 1),
        }
    }
}

impl Network for Vit {
    fn arch(&self) -> Arch {
        self.arch
    }

    fn taps_t(&self, x: &Tensor, last: Tap, _train: bool) -> Vec<Tensor> {
        let (tokens, grid) = self.tokens(x, last);
        tokens.iter().map(|t| self.patch_map(t, grid)).collect()
    }

    fn token_net(&self) -> Option<&dyn TokenNet> {
        Some(self)
    }

    fn features_t(&self, x: &Tensor, tap: Tap, train: bool) -> Tensor {
        self.readout_t(x, tap, default_pool(self.arch), train)
    }

    fn readout_t(&self, x: &Tensor, tap: Tap, pool: Pool, _train: bool) -> Tensor {
        let (tokens, _) = self.tokens(x, tap);
        self.pool(&tokens[tap.index()], pool)
    }

    fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        macs(&self.c, side, tap)
    }

    fn layer_ladder(&self) -> Vec<Vec<String>> {
        self.c.ladder()
    }

    fn inference(&self, from: &nn::VarStore, precision: Precision) -> Box<dyn Inference> {
        let mut vs = nn::VarStore::new(from.device());
        let net = Vit::with_config(&vs.root(), self.arch, self.c);
        tch::no_grad(|| vs.copy(from)).expect("an inference copy of the same ViT has the same variables");
        vs.freeze();
        if precision.kind() != tch::Kind::Float {
            vs.set_kind(precision.kind());
        }
        Box::new(inference::FrozenVit::new(net, precision))
    }
}

/// Patch embedding plus the blocks up to `tap`, for `side` x `side` inputs.
/// The last block up to `tap` (the first, for a tap no block reaches in a tiny config).
fn last_block(c: &Config, tap: Tap) -> usize {
    c.blocks_to(tap.index()).max(1) - 1
}

impl TokenNet for Vit {
    fn entering(&self, x: &Tensor, tap: Tap) -> (Tensor, (i64, i64)) {
        let (mut t, grid) = self.embed.forward(x);
        for b in &self.blocks[..last_block(&self.c, tap)] {
            t = b.forward(&t);
        }
        (t, grid)
    }

    fn onward(&self, tokens: &Tensor, tap: Tap, pool: Pool) -> Tensor {
        let last = &self.blocks[last_block(&self.c, tap)];
        self.pool(&last.forward(tokens).apply(&self.norm), pool)
    }

    fn patch_map(&self, t: &Tensor, (h, w): (i64, i64)) -> Tensor {
        let skip = 1 + self.c.registers();
        t.narrow(1, skip, h * w).transpose(1, 2).reshape([-1, self.c.dim, h, w])
    }
}

fn macs(c: &Config, side: i64, tap: Tap) -> u64 {
    let g = (side / c.patch) as u64;
    let t = g * g + 1 + c.registers() as u64;
    let embed = g * g * (3 * c.patch * c.patch) as u64 * c.dim as u64;
    embed + c.blocks_to(tap.index()) as u64 * Block::macs(c, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_b16_macs_match_torchvision_published_count() {
        // torchvision publishes 17.56 GFLOPS (MACs) for vit_b_16 at 224.
        let m = macs(&Config::of(Arch::VitB16), 224, Tap::Layer4) as f64 / 1e9;
        assert!((m - 17.56).abs() < 0.1, "{m}");
    }
}
