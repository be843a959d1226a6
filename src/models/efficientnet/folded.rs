//! The inference copy of an EfficientNet: each BatchNorm folded into its convolution (the
//! convs have no bias; the fold gives them one), channels-last, SiLU, the
//! squeeze-excitation's rescale and the residual add in place, and the squeeze-excitation
//! computed on the pooled `[N, C]` vector as two small matrix products rather than 1x1
//! convolutions on a 1x1 map. Stochastic depth is the identity in evaluation.
//!
//! A reduced-precision copy folds in fp32 and rounds the folded weights once, as
//! `models::folded` does for ResNet.
use super::{Block, Config, ConvBn, EfficientNet, Op, Se};
use crate::models::family::{channels_last, Inference, Tap};
use crate::models::folded::Precision;
use tch::{Kind, Tensor};

/// A convolution with its BatchNorm folded in: `w' = w * g/s`, `b' = beta - mean * g/s`,
/// with `s = sqrt(var + eps)`; SiLU after it when the original had one.
struct FoldedConv {
    w: Tensor,
    b: Tensor,
    stride: i64,
    padding: i64,
    groups: i64,
    act: bool,
}

impl FoldedConv {
    fn new(c: &ConvBn, eps: f64, kind: Kind) -> FoldedConv {
        let bn = &c.bn;
        let (Some(gamma), Some(beta)) = (&bn.ws, &bn.bs) else { panic!("BatchNorm without affine parameters") };
        let f32 = |t: &Tensor| t.to_kind(Kind::Float);
        let scale = f32(gamma) / (f32(&bn.running_var) + eps).sqrt();
        let w = f32(&c.conv.ws) * scale.view([-1, 1, 1, 1]);
        let b = f32(beta) - f32(&bn.running_mean) * &scale;
        FoldedConv {
            w: channels_last(&w.to_kind(kind)).detach(),
            b: b.to_kind(kind).detach(),
            stride: c.cfg.stride,
            padding: c.cfg.padding(),
            groups: c.cfg.groups,
            act: c.cfg.act,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = x.conv2d(&self.w, Some(&self.b), [self.stride], [self.padding], [1], self.groups);
        if self.act {
            let _ = y.silu_();
        }
        y
    }
}

/// Squeeze-excitation on the pooled vector: `fc1` and `fc2` as `[out, in]` matrices.
struct FoldedSe {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

impl FoldedSe {
    fn new(se: &Se, kind: Kind) -> FoldedSe {
        let mat = |c: &tch::nn::Conv2D| {
            let s = c.ws.size();
            c.ws.reshape([s[0], s[1]]).to_kind(kind).contiguous().detach()
        };
        let bias = |c: &tch::nn::Conv2D| c.bs.as_ref().expect("SE convs have a bias").to_kind(kind).detach();
        FoldedSe { w1: mat(&se.fc1), b1: bias(&se.fc1), w2: mat(&se.fc2), b2: bias(&se.fc2) }
    }

    /// Rescales `x`'s channels in place (`x` is a block's own intermediate).
    fn apply_(&self, x: &mut Tensor) {
        let (n, c) = (x.size()[0], x.size()[1]);
        let pooled = x.mean_dim([2i64, 3].as_slice(), false, None::<Kind>);
        let mut h = pooled.linear(&self.w1, Some(&self.b1));
        let _ = h.silu_();
        let mut g = h.linear(&self.w2, Some(&self.b2));
        let _ = g.sigmoid_();
        *x *= g.view([n, c, 1, 1]);
    }
}

enum FoldedOp {
    Conv(FoldedConv),
    Se(FoldedSe),
}

struct FoldedBlock {
    ops: Vec<FoldedOp>,
    residual: bool,
}

impl FoldedBlock {
    fn new(b: &Block, eps: f64, kind: Kind) -> FoldedBlock {
        let ops = b
            .ops
            .iter()
            .map(|op| match op {
                Op::Conv(c) => FoldedOp::Conv(FoldedConv::new(c, eps, kind)),
                Op::Se(s) => FoldedOp::Se(FoldedSe::new(s, kind)),
            })
            .collect();
        FoldedBlock { ops, residual: b.residual }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut ops = self.ops.iter();
        // A block starts with a conv, so everything written in place below is the block's own.
        let Some(FoldedOp::Conv(first)) = ops.next() else { unreachable!("a block starts with a convolution") };
        let mut y = first.forward(x);
        for op in ops {
            match op {
                FoldedOp::Conv(c) => y = c.forward(&y),
                FoldedOp::Se(s) => s.apply_(&mut y),
            }
        }
        if self.residual {
            y += x;
        }
        y
    }
}

/// The frozen, folded network. Build it after the weights are loaded.
pub struct FoldedEfficientNet {
    /// `features.0`, then one entry per stage, then the final conv.
    stem: FoldedConv,
    stages: Vec<Vec<FoldedBlock>>,
    head: FoldedConv,
    taps: [usize; 4],
    cfg: Config,
    kind: Kind,
}

impl FoldedEfficientNet {
    /// A copy whose weights and activations are in `precision`; folding is done in fp32
    /// before the one rounding. `features` takes and returns fp32.
    pub fn new(net: &EfficientNet, precision: Precision) -> FoldedEfficientNet {
        let kind = precision.kind();
        let cfg = net.config().clone();
        let eps = cfg.bn_eps();
        tch::no_grad(|| FoldedEfficientNet {
            stem: FoldedConv::new(&net.stem, eps, kind),
            stages: net.stages.iter().map(|s| s.iter().map(|b| FoldedBlock::new(b, eps, kind)).collect()).collect(),
            head: FoldedConv::new(&net.head, eps, kind),
            taps: cfg.tap_indices(),
            cfg,
            kind,
        })
    }

    /// `[N, 3, H, W]` normalised fp32 images -> pooled activations of `tap`, `[N, C]` fp32
    /// (convolutions in [`Inference::kind`], the final average in fp32).
    pub fn features(&self, xs: &Tensor, tap: Tap) -> Tensor {
        tch::no_grad(|| {
            let xs = if self.kind == Kind::Float { xs.shallow_clone() } else { xs.to_kind(self.kind) };
            let mut x = self.stem.forward(&channels_last(&xs));
            for i in 1..=self.taps[tap.index()] {
                x = match self.stages.get(i - 1) {
                    Some(blocks) => blocks.iter().fold(x, |x, b| b.forward(&x)),
                    None => self.head.forward(&x),
                };
            }
            let x = if self.kind == Kind::Float { x } else { x.to_kind(Kind::Float) };
            x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
        })
    }
}

impl Inference for FoldedEfficientNet {
    fn features(&self, x: &Tensor, tap: Tap) -> Tensor {
        FoldedEfficientNet::features(self, x, tap)
    }
    fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        self.cfg.macs(side, tap)
    }
    fn kind(&self) -> Kind {
        self.kind
    }
}
