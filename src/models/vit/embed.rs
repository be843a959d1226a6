//! Patch embedding, class (and register) tokens and the positions, resampled to the
//! input's grid exactly as each reference does.
use super::config::{Config, Flavour};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

#[derive(Debug)]
pub struct Embeddings {
    patch: nn::Conv2D,
    cls: Tensor,
    /// `[1, 1 + G*G, D]` (CLIP stores `[1 + G*G, D]`; viewed as the former).
    positions: Tensor,
    registers: Option<Tensor>,
    /// CLIP's norm over the embedded tokens (`pre_layrnorm`, sic).
    pre_norm: Option<nn::LayerNorm>,
    c: Config,
}

impl Embeddings {
    /// Under the model's root (`vision_model` for CLIP, the root otherwise).
    pub fn new(p: &nn::Path, c: &Config) -> Embeddings {
        let d = c.dim;
        let n_pos = 1 + c.grid * c.grid;
        let conv = |p: nn::Path, bias: bool| {
            let cfg = nn::ConvConfig { stride: c.patch, bias, ..Default::default() };
            nn::conv2d(p, 3, d, c.patch, cfg)
        };
        let normal = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        match c.flavour {
            Flavour::Dinov2 | Flavour::Dinov2Registers => {
                let e = p / "embeddings";
                let registers = (c.registers() > 0).then(|| e.var("register_tokens", &[1, c.registers(), d], normal));
                // Used only in DINOv2's pre-training; kept so its checkpoints load strictly.
                let _mask = e.var("mask_token", &[1, d], nn::Init::Const(0.0));
                Embeddings {
                    patch: conv(&e / "patch_embeddings" / "projection", true),
                    cls: e.var("cls_token", &[1, 1, d], normal),
                    positions: e.var("position_embeddings", &[1, n_pos, d], normal),
                    registers,
                    pre_norm: None,
                    c: *c,
                }
            }
            Flavour::Clip => {
                let e = p / "embeddings";
                let positions = (&e / "position_embedding").var("weight", &[n_pos, d], normal);
                Embeddings {
                    patch: conv(&e / "patch_embedding", false),
                    cls: e.var("class_embedding", &[d], normal),
                    positions,
                    registers: None,
                    pre_norm: Some(super::block::layer_norm(p / "pre_layrnorm", d, c.eps)),
                    c: *c,
                }
            }
            Flavour::Torchvision => Embeddings {
                patch: conv(p / "conv_proj", true),
                cls: p.var("class_token", &[1, 1, d], nn::Init::Const(0.0)),
                positions: (p / "encoder").var("pos_embedding", &[1, n_pos, d], normal),
                registers: None,
                pre_norm: None,
                c: *c,
            },
        }
    }

    /// `[N, 3, H, W]` -> tokens `[N, 1 + R + h*w, D]` and the grid `(h, w)`.
    pub fn forward(&self, x: &Tensor) -> (Tensor, (i64, i64)) {
        let (h, w) = (x.size()[2] / self.c.patch, x.size()[3] / self.c.patch);
        self.forward_with(x, &self.positions_for(h, w))
    }

    /// [`Self::forward`] with the positions for `x`'s grid given (the inference copy
    /// resamples them once per size).
    pub fn forward_with(&self, x: &Tensor, positions: &Tensor) -> (Tensor, (i64, i64)) {
        let patches = self.patch.forward(x);
        // No batch size as a number: a traced export must take any batch.
        let (_, d, h, w) = patches.size4().expect("patch map is 4-d");
        let patches = patches.flatten(2, 3).transpose(1, 2);
        let cls = self.cls.view([1, 1, d]).to_kind(patches.kind()).expand_as(&patches.narrow(1, 0, 1));
        let t = Tensor::cat(&[cls, patches], 1) + positions.to_kind(x.kind());
        let t = match &self.registers {
            Some(r) => {
                let r = r.to_kind(t.kind()) + t.narrow(1, 0, 1).zeros_like();
                Tensor::cat(&[t.narrow(1, 0, 1), r, t.narrow(1, 1, h * w)], 1)
            }
            None => t,
        };
        let t = match &self.pre_norm {
            Some(ln) => t.apply(ln),
            None => t,
        };
        (t, (h, w))
    }

    /// The positions for an `h` x `w` grid: `[1, 1 + h*w, D]`. The stored ones when the
    /// grid is the trained one; else the patch positions resampled bicubically in fp32,
    /// the class position kept (`transformers`' `interpolate_pos_encoding`, torchvision's
    /// `interpolate_embeddings`).
    pub fn positions_for(&self, h: i64, w: i64) -> Tensor {
        let (g, d) = (self.c.grid, self.c.dim);
        let pos = self.positions.view([1, 1 + g * g, d]);
        if h == g && w == g {
            return pos;
        }
        let grid = pos.narrow(1, 1, g * g).to_kind(Kind::Float).reshape([1, g, g, d]).permute([0, 3, 1, 2]);
        let resampled = match self.c.flavour {
            Flavour::Dinov2 | Flavour::Clip => grid.upsample_bicubic2d([h, w], false, None, None),
            Flavour::Dinov2Registers => grid.internal_upsample_bicubic2d_aa([h, w], false, None, None),
            Flavour::Torchvision => grid.upsample_bicubic2d([h, w], true, None, None),
        };
        let resampled = resampled.permute([0, 2, 3, 1]).reshape([1, h * w, d]).to_kind(pos.kind());
        Tensor::cat(&[pos.narrow(1, 0, 1), resampled], 1)
    }
}
