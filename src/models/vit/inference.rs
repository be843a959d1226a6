//! The frozen copy extraction runs: q, k and v fused into one matrix, the layer scales
//! folded into the projections they follow, elementwise steps in place, and the
//! positions resampled once per input size.
use super::config::{Config, Flavour};
use super::Vit;
use crate::models::family::{Inference, Pool, Tap};
use crate::models::folded::Precision;
use std::collections::HashMap;
use std::sync::Mutex;
use tch::{Kind, Tensor};

struct Norm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl Norm {
    fn apply(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.w.size()[0]], Some(&self.w), Some(&self.b), self.eps, false)
    }
}

struct FrozenBlock {
    norm1: Norm,
    qkv_w: Tensor,
    qkv_b: Tensor,
    proj_w: Tensor,
    proj_b: Tensor,
    norm2: Norm,
    fc1_w: Tensor,
    fc1_b: Tensor,
    fc2_w: Tensor,
    fc2_b: Tensor,
}

pub struct FrozenVit {
    net: Vit,
    blocks: Vec<FrozenBlock>,
    norm: Norm,
    kind: Kind,
    /// Positions per grid `(h, w)`, resampled once.
    positions: Mutex<HashMap<(i64, i64), Tensor>>,
}

fn cast(t: &Tensor, kind: Kind) -> Tensor {
    t.detach().to_kind(kind).contiguous()
}

impl FrozenVit {
    /// From the eager net `net` (which keeps the embeddings) with its loaded weights.
    pub fn new(net: Vit, precision: Precision) -> FrozenVit {
        let kind = precision.kind();
        let c = net.c;
        let norm = |n: &tch::nn::LayerNorm| Norm {
            w: cast(n.ws.as_ref().unwrap(), kind),
            b: cast(n.bs.as_ref().unwrap(), kind),
            eps: c.eps,
        };
        let blocks = tch::no_grad(|| {
            net.blocks
                .iter()
                .map(|b| {
                    let (qkv_w, qkv_b) = b.qkv();
                    // y = s * (W x + b): the scale goes into W's rows and b.
                    let fold = |l: &tch::nn::Linear, s: &Option<Tensor>| match s {
                        Some(s) => (&l.ws * s.unsqueeze(1), l.bs.as_ref().unwrap() * s),
                        None => (l.ws.shallow_clone(), l.bs.as_ref().unwrap().shallow_clone()),
                    };
                    let (proj_w, proj_b) = fold(&b.proj, &b.scale1);
                    let (fc2_w, fc2_b) = fold(&b.fc2, &b.scale2);
                    FrozenBlock {
                        norm1: norm(&b.norm1),
                        qkv_w: cast(&qkv_w, kind),
                        qkv_b: cast(&qkv_b, kind),
                        proj_w: cast(&proj_w, kind),
                        proj_b: cast(&proj_b, kind),
                        norm2: norm(&b.norm2),
                        fc1_w: cast(&b.fc1.ws, kind),
                        fc1_b: cast(b.fc1.bs.as_ref().unwrap(), kind),
                        fc2_w: cast(&fc2_w, kind),
                        fc2_b: cast(&fc2_b, kind),
                    }
                })
                .collect()
        });
        let norm = norm(&net.norm);
        FrozenVit { net, blocks, norm, kind, positions: Mutex::new(HashMap::new()) }
    }

    fn block(&self, b: &FrozenBlock, x: Tensor, heads: i64, quick_gelu: bool) -> Tensor {
        let (_, t, d) = x.size3().expect("tokens are [N, T, D]");
        let qkv = b.norm1.apply(&x).linear(&b.qkv_w, Some(&b.qkv_b));
        let a = super::block::attend(&qkv, t, d, heads).linear(&b.proj_w, Some(&b.proj_b));
        let mut x = x + a;
        let mut m = b.norm2.apply(&x).linear(&b.fc1_w, Some(&b.fc1_b));
        if quick_gelu {
            let s = (&m * 1.702).sigmoid_();
            m *= &s;
        } else {
            let _ = m.gelu_("none");
        }
        x += m.linear(&b.fc2_w, Some(&b.fc2_b));
        x
    }

    fn run(&self, x: &Tensor, tap: Tap, pool: Pool) -> Tensor {
        let c: &Config = &self.net.c;
        tch::no_grad(|| {
            let x = x.to_kind(self.kind);
            let (h, w) = (x.size()[2] / c.patch, x.size()[3] / c.patch);
            let pos = {
                let mut cache = self.positions.lock().unwrap_or_else(|e| e.into_inner());
                cache
                    .entry((h, w))
                    .or_insert_with(|| self.net.embed.positions_for(h, w).to_kind(self.kind))
                    .shallow_clone()
            };
            let (mut t, _) = self.net.embed.forward_with(&x, &pos);
            let quick = c.flavour == Flavour::Clip;
            for b in &self.blocks[..c.blocks_to(tap.index())] {
                t = self.block(b, t, c.heads, quick);
            }
            self.net.pool(&self.norm.apply(&t), pool).to_kind(Kind::Float)
        })
    }
}

impl Inference for FrozenVit {
    fn features(&self, x: &Tensor, tap: Tap) -> Tensor {
        self.run(x, tap, super::default_pool(self.net.arch))
    }
    fn readout(&self, x: &Tensor, tap: Tap, pool: Pool) -> Tensor {
        self.run(x, tap, pool)
    }
    fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        super::macs(&self.net.c, side, tap)
    }
    fn kind(&self) -> Kind {
        self.kind
    }
}
