//! The sizes of each Vision Transformer and the published names its variables take.
use crate::models::arch::Arch;

/// Whose layout (variable names, norms, activation, position-embedding resampling) a
/// ViT follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `transformers`' `Dinov2Model` (`facebook/dinov2-*`): layer scale, GELU, final
    /// `layernorm`; positions resampled bicubic without antialiasing.
    Dinov2,
    /// `Dinov2WithRegistersModel`: four register tokens after the class token; positions
    /// resampled bicubic with antialiasing (as `transformers` does for it).
    Dinov2Registers,
    /// `CLIPVisionModel` (`openai/clip-vit-*`): a norm before the blocks, QuickGELU,
    /// `post_layernorm`; no patch bias.
    Clip,
    /// torchvision's `vit_b_16`: fused `in_proj`, `encoder.ln`; positions resampled
    /// bicubic with `align_corners=True` (its `interpolate_embeddings`).
    Torchvision,
}

/// One ViT's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub flavour: Flavour,
    /// Token width.
    pub dim: i64,
    pub depth: usize,
    pub heads: i64,
    /// MLP hidden width.
    pub mlp: i64,
    pub patch: i64,
    /// The side of the square grid of positions the weights were trained with.
    pub grid: i64,
    pub eps: f64,
}

impl Config {
    pub fn of(arch: Arch) -> Config {
        use Flavour::*;
        let (flavour, dim, depth, heads, patch, grid) = match arch {
            // DINOv2 checkpoints carry 37 x 37 positions (518 px).
            Arch::Dinov2Vits14 => (Dinov2, 384, 12, 6, 14, 37),
            Arch::Dinov2Vitb14 => (Dinov2, 768, 12, 12, 14, 37),
            Arch::Dinov2Vitl14 => (Dinov2, 1024, 24, 16, 14, 37),
            Arch::Dinov2Vits14Reg => (Dinov2Registers, 384, 12, 6, 14, 37),
            Arch::Dinov2Vitb14Reg => (Dinov2Registers, 768, 12, 12, 14, 37),
            Arch::Dinov2Vitl14Reg => (Dinov2Registers, 1024, 24, 16, 14, 37),
            Arch::ClipVitb16 => (Clip, 768, 12, 12, 16, 14),
            Arch::ClipVitl14 => (Clip, 1024, 24, 16, 14, 16),
            Arch::VitB16 => (Torchvision, 768, 12, 12, 16, 14),
            _ => unreachable!("{arch:?} is not a ViT"),
        };
        let eps = if flavour == Clip { 1e-5 } else { 1e-6 };
        Config { flavour, dim, depth, heads, mlp: 4 * dim, patch, grid, eps }
    }

    /// Register tokens between the class token and the patches.
    pub fn registers(&self) -> i64 {
        if self.flavour == Flavour::Dinov2Registers {
            4
        } else {
            0
        }
    }

    /// Blocks run to reach tap `i` (0..4): a quarter of the depth per tap.
    pub fn blocks_to(&self, tap: usize) -> usize {
        self.depth * (tap + 1) / 4
    }

    /// Prefixes from input to output: the embeddings, each block, the final norm (what
    /// layer-wise learning-rate decay scales, BEiT's way).
    pub fn ladder(&self) -> Vec<Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let (embed, block, norm): (Vec<String>, &str, Vec<String>) = match self.flavour {
            Flavour::Dinov2 | Flavour::Dinov2Registers => (s(&["embeddings."]), "encoder.layer.", s(&["layernorm."])),
            Flavour::Clip => (
                s(&["vision_model.embeddings.", "vision_model.pre_layrnorm."]),
                "vision_model.encoder.layers.",
                s(&["vision_model.post_layernorm."]),
            ),
            Flavour::Torchvision => (
                s(&["class_token", "conv_proj.", "encoder.pos_embedding"]),
                "encoder.layers.encoder_layer_",
                s(&["encoder.ln."]),
            ),
        };
        let mut out = vec![embed];
        out.extend((0..self.depth).map(|i| vec![format!("{block}{i}.")]));
        out.push(norm);
        out
    }

    /// The published checkpoint's classifier or text tower, which a backbone leaves out.
    pub fn skipped(flavour: Flavour) -> &'static [&'static str] {
        match flavour {
            // CLIPModel's file holds both towers; the vision tower's projection maps to the
            // shared text-image space, which a probe does not need.
            Flavour::Clip => &[
                "text_model.",
                "text_projection.",
                "visual_projection.",
                "logit_scale",
                "vision_model.embeddings.position_ids",
            ],
            Flavour::Torchvision => &["heads."],
            _ => &["classifier."],
        }
    }

    /// Prefixes of the last quarter of the blocks and the final norm: what `--unfreeze
    /// layer4` trains.
    pub fn last_stage(arch: Arch) -> &'static [&'static str] {
        match arch {
            Arch::Dinov2Vits14 | Arch::Dinov2Vitb14 | Arch::Dinov2Vits14Reg | Arch::Dinov2Vitb14Reg => {
                &["encoder.layer.9.", "encoder.layer.10.", "encoder.layer.11.", "layernorm."]
            }
            Arch::Dinov2Vitl14 | Arch::Dinov2Vitl14Reg => &[
                "encoder.layer.18.",
                "encoder.layer.19.",
                "encoder.layer.20.",
                "encoder.layer.21.",
                "encoder.layer.22.",
                "encoder.layer.23.",
                "layernorm.",
            ],
            Arch::ClipVitb16 => &[
                "vision_model.encoder.layers.9.",
                "vision_model.encoder.layers.10.",
                "vision_model.encoder.layers.11.",
                "vision_model.post_layernorm.",
            ],
            Arch::ClipVitl14 => &[
                "vision_model.encoder.layers.18.",
                "vision_model.encoder.layers.19.",
                "vision_model.encoder.layers.20.",
                "vision_model.encoder.layers.21.",
                "vision_model.encoder.layers.22.",
                "vision_model.encoder.layers.23.",
                "vision_model.post_layernorm.",
            ],
            _ => &[
                "encoder.layers.encoder_layer_9.",
                "encoder.layers.encoder_layer_10.",
                "encoder.layers.encoder_layer_11.",
                "encoder.ln.",
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    #[test]
    fn every_variable_of_every_layout_is_on_one_rung_of_the_ladder() {
        for arch in [Arch::Dinov2Vits14, Arch::Dinov2Vits14Reg, Arch::ClipVitb16, Arch::VitB16] {
            let c = Config { dim: 16, depth: 3, heads: 2, mlp: 32, ..Config::of(arch) };
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let _net = super::super::Vit::with_config(&vs.root(), arch, c);
            let ladder = c.ladder();
            assert_eq!(ladder.len(), 3 + 2);
            for name in vs.variables().keys() {
                let rungs = ladder.iter().filter(|r| r.iter().any(|p| name.starts_with(p.as_str()))).count();
                assert_eq!(rungs, 1, "{arch}: {name} is on {rungs} rungs");
            }
        }
    }
}
