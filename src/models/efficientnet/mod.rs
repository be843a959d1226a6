//! EfficientNet B0-B3 and EfficientNetV2-S, as torchvision 0.26 builds them
//! (`torchvision/models/efficientnet.py`, with `ops/misc.py`'s `Conv2dNormActivation` and
//! `SqueezeExcitation` and `ops/stochastic_depth.py`).
//!
//! Variable paths equal torchvision's state-dict keys, so its checkpoints load strictly:
//! `features.0` is the stem (`features.0.0` conv, `features.0.1` BatchNorm), `features.1`..
//! the stages of blocks (`features.2.1.block.0.0.weight`), the last `features.N` the final
//! 1x1 conv. An MBConv's `block` is `[expand 1x1,] depthwise kxk, squeeze-excitation
//! (`fc1`, `fc2`), project 1x1`; a FusedMBConv's (V2's first stages) `[fused kxk expand,
//! project 1x1]`, or one kxk conv when it does not expand.
//!
//! Taps: `layer1..3` are the outputs of the last `features.N` at 1/4, 1/8 and 1/16 of the
//! input side, `layer4` that of the final 1x1 conv (`features.8` for V1, `features.7` for
//! V2-S), which torchvision's `avgpool` reads.
mod config;
mod folded;

use config::{BlockCfg, Config, ConvCfg, OpCfg};

pub use folded::FoldedEfficientNet;

use super::arch::{Arch, ArchSpec, Family};
use super::family::{Inference, Network, Tap};
use super::folded::Precision;
use super::weights::{tv, EvalTransform, WeightsEntry, WeightsVariant};
use crate::preprocess::{Interpolation, Normalization};
use tch::nn::{self, Init};
use tch::Tensor;

/// The registry's facts about a torchvision EfficientNet.
pub(super) fn spec(arch: Arch) -> ArchSpec {
    let cfg = Config::of(arch);
    ArchSpec {
        family: Family::EfficientNet,
        widths: cfg.widths(),
        last_stage: if cfg.v2 { LAST_STAGE_V2S } else { LAST_STAGE_V1 },
        classifier: &["classifier."],
        build: |p, arch| Box::new(EfficientNet::new(p, arch)),
        weights: WEIGHTS,
        converter: None,
    }
}

/// The 1/32 part of V1: the two last stages and the final conv.
const LAST_STAGE_V1: &[&str] = &["features.6.", "features.7.", "features.8."];
/// The 1/32 part of V2-S: its last stage and the final conv.
const LAST_STAGE_V2S: &[&str] = &["features.6.", "features.7."];

/// torchvision's EfficientNet checkpoints (torchvision 0.26 `models/efficientnet.py`):
/// B0-B3 V1 are Ross Wightman's timm ports, evaluated with bicubic resizing.
const WEIGHTS: &[WeightsEntry] = {
    use Arch::*;
    use WeightsVariant::*;
    const fn eval(resize: i64, crop: i64, interpolation: Interpolation) -> EvalTransform {
        EvalTransform { resize, crop, interpolation, normalization: Normalization::Torchvision }
    }
    use Interpolation::{Bicubic, Bilinear};
    &[
        tv(EfficientnetB0, V1, "efficientnet_b0_rwightman-7f5810bc.pth", 77.692, 20.451, eval(256, 224, Bicubic)),
        tv(EfficientnetB1, V1, "efficientnet_b1_rwightman-bac287d4.pth", 78.642, 30.134, eval(256, 240, Bicubic)),
        tv(EfficientnetB1, V2, "efficientnet_b1-c27df63c.pth", 79.838, 30.136, eval(255, 240, Bilinear)),
        tv(EfficientnetB2, V1, "efficientnet_b2_rwightman-c35c1473.pth", 80.608, 35.174, eval(288, 288, Bicubic)),
        tv(EfficientnetB3, V1, "efficientnet_b3_rwightman-b3899882.pth", 82.008, 47.184, eval(320, 300, Bicubic)),
        tv(EfficientnetV2S, V1, "efficientnet_v2_s-dd5fe13b.pth", 84.228, 82.704, eval(384, 384, Bilinear)),
    ]
};

/// torchvision's init, for training from scratch (loaded weights replace it): convs
/// `kaiming_normal_(mode="fan_out")`, biases 0, BatchNorm weights 1. In evaluation mode
/// (running statistics 0 and 1) such a random net's features vanish, as torchvision's do
/// (a random B0's are ~1e-14 at 64 px): a depthwise conv's fan-out is C x k x k.
const CONV_INIT: Init = Init::Kaiming {
    dist: nn::init::NormalOrUniform::Normal,
    fan: nn::init::FanInOut::FanOut,
    non_linearity: nn::init::NonLinearity::ReLU,
};

/// `Conv2dNormActivation`: `.0` the conv, `.1` the BatchNorm, then SiLU when `cfg.act`.
#[derive(Debug)]
struct ConvBn {
    cfg: ConvCfg,
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(p: nn::Path, cfg: ConvCfg, eps: f64) -> ConvBn {
        let cc = nn::ConvConfig {
            stride: cfg.stride,
            padding: cfg.padding(),
            groups: cfg.groups,
            bias: false,
            ws_init: CONV_INIT,
            ..Default::default()
        };
        let conv = nn::conv2d(&p / "0", cfg.c_in, cfg.c_out, cfg.kernel, cc);
        let bc = nn::BatchNormConfig { eps, momentum: 0.1, ws_init: Init::Const(1.0), ..Default::default() };
        let bn = nn::batch_norm2d(&p / "1", cfg.c_out, bc);
        ConvBn { cfg, conv, bn }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv).apply_t(&self.bn, train);
        if self.cfg.act {
            y.silu()
        } else {
            y
        }
    }
}

/// `SqueezeExcitation`: `x * sigmoid(fc2(silu(fc1(avgpool(x)))))`.
#[derive(Debug)]
struct Se {
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
}

impl Se {
    fn new(p: nn::Path, channels: i64, squeeze: i64) -> Se {
        let cc = nn::ConvConfig { ws_init: CONV_INIT, ..Default::default() };
        Se {
            fc1: nn::conv2d(&p / "fc1", channels, squeeze, 1, cc),
            fc2: nn::conv2d(&p / "fc2", squeeze, channels, 1, cc),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let scale = x.adaptive_avg_pool2d([1, 1]).apply(&self.fc1).silu().apply(&self.fc2).sigmoid();
        scale * x
    }
}

#[derive(Debug)]
enum Op {
    Conv(ConvBn),
    Se(Se),
}

/// One MBConv or FusedMBConv: `block.0`, `block.1`, ... then stochastic depth and the
/// residual add when shapes allow.
#[derive(Debug)]
struct Block {
    ops: Vec<Op>,
    residual: bool,
    sd_prob: f64,
}

impl Block {
    fn new(p: nn::Path, cfg: &BlockCfg, eps: f64) -> Block {
        let b = &p / "block";
        let ops = cfg
            .ops
            .iter()
            .enumerate()
            .map(|(i, op)| match *op {
                OpCfg::Conv(c) => Op::Conv(ConvBn::new(&b / i, c, eps)),
                OpCfg::Se { channels, squeeze } => Op::Se(Se::new(&b / i, channels, squeeze)),
            })
            .collect();
        Block { ops, residual: cfg.residual, sd_prob: cfg.sd_prob }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        for op in &self.ops {
            y = match op {
                Op::Conv(c) => c.forward_t(&y, train),
                Op::Se(s) => s.forward(&y),
            };
        }
        if !self.residual {
            return y;
        }
        if train {
            y = stochastic_depth(&y, self.sd_prob);
        }
        y + x
    }
}

/// torchvision's `stochastic_depth(x, p, "row", training=True)`: each sample's branch is
/// zeroed with probability `p`, the kept ones scaled by `1 / (1 - p)`.
fn stochastic_depth(x: &Tensor, p: f64) -> Tensor {
    if p == 0.0 {
        return x.shallow_clone();
    }
    let survival = 1.0 - p;
    let mut shape = vec![1i64; x.dim()];
    shape[0] = x.size()[0];
    let mut noise = Tensor::empty(shape.as_slice(), (x.kind(), x.device()));
    let _ = noise.bernoulli_float_(survival);
    if survival > 0.0 {
        let _ = noise.g_div_scalar_(survival);
    }
    x * noise
}

/// A torchvision EfficientNet without its classifier.
#[derive(Debug)]
pub struct EfficientNet {
    pub arch: Arch,
    cfg: Config,
    /// `features.0`.
    stem: ConvBn,
    /// `features.1..=S`.
    stages: Vec<Vec<Block>>,
    /// `features.S+1`.
    head: ConvBn,
}

impl EfficientNet {
    /// Builds the net under `p` (use `vs.root()` so names match torchvision).
    pub fn new(p: &nn::Path, arch: Arch) -> EfficientNet {
        let cfg = Config::of(arch);
        let eps = cfg.bn_eps();
        let f = p / "features";
        let stem = ConvBn::new(&f / 0, cfg.stem(), eps);
        let stages = cfg
            .blocks()
            .iter()
            .enumerate()
            .map(|(i, blocks)| {
                let sp = &f / (i + 1);
                blocks.iter().enumerate().map(|(j, b)| Block::new(&sp / j, b, eps)).collect()
            })
            .collect();
        let head = ConvBn::new(&f / (cfg.stages.len() + 1), cfg.head(), eps);
        EfficientNet { arch, cfg, stem, stages, head }
    }

    fn config(&self) -> &Config {
        &self.cfg
    }

    /// Runs `features.i` (1 ..= stages + 1).
    fn feature(&self, i: usize, x: Tensor, train: bool) -> Tensor {
        match self.stages.get(i - 1) {
            Some(blocks) => blocks.iter().fold(x, |x, b| b.forward_t(&x, train)),
            None => self.head.forward_t(&x, train),
        }
    }
}

impl Network for EfficientNet {
    fn arch(&self) -> Arch {
        self.arch
    }

    fn taps_t(&self, x: &Tensor, last: Tap, train: bool) -> Vec<Tensor> {
        let taps = self.cfg.tap_indices();
        let mut maps = Vec::with_capacity(4);
        let mut x = self.stem.forward_t(x, train);
        for i in 1..=taps[last.index()] {
            x = self.feature(i, x, train);
            if taps[maps.len()] == i {
                maps.push(x.shallow_clone());
            }
        }
        maps
    }

    fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        self.cfg.macs(side, tap)
    }

    fn inference(&self, _vs: &nn::VarStore, precision: Precision) -> Box<dyn Inference> {
        Box::new(FoldedEfficientNet::new(self, precision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn stochastic_depth_drops_whole_rows_and_rescales_the_rest() {
        tch::manual_seed(0);
        let x = Tensor::ones([4000, 3, 2, 2], (tch::Kind::Float, tch::Device::Cpu));
        let y = stochastic_depth(&x, 0.2);
        let rows = y.view([4000, 12]);
        let (lo, hi) = (rows.min_dim(1, false).0, rows.max_dim(1, false).0);
        assert!(lo.equal(&hi), "a row is kept or dropped whole");
        let kept = hi.gt(0.0).to_kind(tch::Kind::Float);
        assert!(hi.masked_select(&hi.gt(0.0)).allclose(&Tensor::from(1.25f32), 1e-6, 1e-6, false));
        let rate = kept.mean(tch::Kind::Float).double_value(&[]);
        assert!((rate - 0.8).abs() < 0.03, "{rate}");
        assert!(stochastic_depth(&x, 0.0).equal(&x));
    }
}
