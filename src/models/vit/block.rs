//! One pre-norm transformer block under each flavour's names: norm, attention through
//! `scaled_dot_product_attention`, (layer scale), residual; norm, MLP, (layer scale),
//! residual.
use super::config::{Config, Flavour};
use tch::nn;
use tch::Tensor;

/// Query, key and value projections: three linears (`transformers`) or one fused
/// `in_proj` (torchvision's `nn.MultiheadAttention`).
#[derive(Debug)]
enum Qkv {
    Separate(nn::Linear, nn::Linear, nn::Linear),
    Fused { ws: Tensor, bs: Tensor },
}

#[derive(Debug)]
pub struct Block {
    pub(super) norm1: nn::LayerNorm,
    qkv: Qkv,
    pub(super) proj: nn::Linear,
    pub(super) scale1: Option<Tensor>,
    pub(super) norm2: nn::LayerNorm,
    pub(super) fc1: nn::Linear,
    pub(super) fc2: nn::Linear,
    pub(super) scale2: Option<Tensor>,
    heads: i64,
    quick_gelu: bool,
}

/// Fused projections `[N, T, 3D]` -> attention output `[N, T, D]` before its projection.
/// -1 for the batch: a traced export must take any batch.
pub fn attend(qkv: &Tensor, t: i64, d: i64, heads: i64) -> Tensor {
    let qkv = qkv.view([-1, t, 3, heads, d / heads]).permute([2, 0, 3, 1, 4]);
    let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
    let a = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false);
    a.transpose(1, 2).reshape([-1, t, d])
}

/// Weights drawn as `transformers` initialises ViTs (truncated normal, std 0.02).
fn linear(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    let ws_init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
    nn::linear(p, i, o, nn::LinearConfig { ws_init, bs_init: Some(nn::Init::Const(0.0)), bias: true })
}

pub fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

impl Block {
    /// The block at `p` (`encoder.layer.3`, `vision_model.encoder.layers.3`,
    /// `encoder.layers.encoder_layer_3`).
    pub fn new(p: nn::Path, c: &Config) -> Block {
        let d = c.dim;
        let ln = |name: &str| layer_norm(&p / name, d, c.eps);
        match c.flavour {
            Flavour::Dinov2 | Flavour::Dinov2Registers => {
                let a = &p / "attention";
                let q = &a / "attention";
                let scale = |name: &str| Some((&p / name).var("lambda1", &[d], nn::Init::Const(1.0)));
                Block {
                    norm1: ln("norm1"),
                    qkv: Qkv::Separate(
                        linear(&q / "query", d, d),
                        linear(&q / "key", d, d),
                        linear(&q / "value", d, d),
                    ),
                    proj: linear(&a / "output" / "dense", d, d),
                    scale1: scale("layer_scale1"),
                    norm2: ln("norm2"),
                    fc1: linear(&p / "mlp" / "fc1", d, c.mlp),
                    fc2: linear(&p / "mlp" / "fc2", c.mlp, d),
                    scale2: scale("layer_scale2"),
                    heads: c.heads,
                    quick_gelu: false,
                }
            }
            Flavour::Clip => {
                let a = &p / "self_attn";
                Block {
                    norm1: ln("layer_norm1"),
                    qkv: Qkv::Separate(
                        linear(&a / "q_proj", d, d),
                        linear(&a / "k_proj", d, d),
                        linear(&a / "v_proj", d, d),
                    ),
                    proj: linear(&a / "out_proj", d, d),
                    scale1: None,
                    norm2: ln("layer_norm2"),
                    fc1: linear(&p / "mlp" / "fc1", d, c.mlp),
                    fc2: linear(&p / "mlp" / "fc2", c.mlp, d),
                    scale2: None,
                    heads: c.heads,
                    quick_gelu: true,
                }
            }
            Flavour::Torchvision => {
                let a = &p / "self_attention";
                let ws = a.var("in_proj_weight", &[3 * d, d], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
                let bs = a.var("in_proj_bias", &[3 * d], nn::Init::Const(0.0));
                Block {
                    norm1: ln("ln_1"),
                    qkv: Qkv::Fused { ws, bs },
                    proj: linear(&a / "out_proj", d, d),
                    scale1: None,
                    norm2: ln("ln_2"),
                    fc1: linear(&p / "mlp" / "0", d, c.mlp),
                    fc2: linear(&p / "mlp" / "3", c.mlp, d),
                    scale2: None,
                    heads: c.heads,
                    quick_gelu: false,
                }
            }
        }
    }

    /// q, k and v as one `[3D, D]` matrix and its `[3D]` bias.
    pub fn qkv(&self) -> (Tensor, Tensor) {
        match &self.qkv {
            Qkv::Separate(q, k, v) => {
                let ws = Tensor::cat(&[&q.ws, &k.ws, &v.ws], 0);
                let bs = Tensor::cat(&[q.bs.as_ref().unwrap(), k.bs.as_ref().unwrap(), v.bs.as_ref().unwrap()], 0);
                (ws, bs)
            }
            Qkv::Fused { ws, bs } => (ws.shallow_clone(), bs.shallow_clone()),
        }
    }

    /// `[N, T, D]` -> `[N, T, D]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        // -1 for the batch: a traced export must take any batch.
        let (_, t, d) = x.size3().expect("tokens are [N, T, D]");
        let h = x.apply(&self.norm1);
        // One matmul for q, k and v: [N, T, 3D] -> 3 x [N, heads, T, D/heads].
        let (ws, bs) = self.qkv();
        let a = attend(&h.linear(&ws, Some(&bs)), t, d, self.heads).apply(&self.proj);
        let a = match &self.scale1 {
            Some(s) => a * s,
            None => a,
        };
        let x = x + a;
        let m = x.apply(&self.norm2).apply(&self.fc1);
        let m = if self.quick_gelu { &m * (&m * 1.702).sigmoid() } else { m.gelu("none") };
        let m = m.apply(&self.fc2);
        let m = match &self.scale2 {
            Some(s) => m * s,
            None => m,
        };
        x + m
    }

    /// Multiply-accumulates for `t` tokens.
    pub fn macs(c: &Config, t: u64) -> u64 {
        let d = c.dim as u64;
        4 * t * d * d + 2 * t * t * d + 2 * t * d * c.mlp as u64
    }
}
