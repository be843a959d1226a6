//! ConvNeXt Tiny/Small/Base in torchvision's layout (`models/convnext.py`).
//!
//! Variable paths equal torchvision's state-dict keys (`features.1.0.block.0.weight`,
//! `features.1.0.layer_scale`, `classifier.0.weight`), so its checkpoints load unchanged.
//! No BatchNorm to fold: the inference copy (`inference.rs`) folds the layer scales.
mod inference;

use super::arch::{Arch, ArchSpec, Family};
use super::family::{Inference, Network, Tap};
use super::folded::Precision;
use super::weights::{tv, EvalTransform, WeightsEntry, WeightsVariant, TV_RESNET};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// torchvision's LayerNorm epsilon for ConvNeXt.
const LN_EPS: f64 = 1e-6;

/// `(channels, blocks)` per stage and the stochastic-depth probability of the last block.
fn config(arch: Arch) -> ([i64; 4], [usize; 4], f64) {
    match arch {
        Arch::ConvnextTiny => ([96, 192, 384, 768], [3, 3, 9, 3], 0.1),
        Arch::ConvnextSmall => ([96, 192, 384, 768], [3, 3, 27, 3], 0.4),
        _ => ([128, 256, 512, 1024], [3, 3, 27, 3], 0.5),
    }
}

/// The registry's facts about a ConvNeXt.
pub(super) fn spec(arch: Arch) -> ArchSpec {
    ArchSpec {
        family: Family::ConvNeXt,
        widths: config(arch).0,
        // The last downsampling, the last stage and the norm after pooling.
        last_stage: &["features.6.", "features.7.", "classifier.0."],
        classifier: &["classifier.2."],
        build: |p, arch| Box::new(ConvNeXt::new(p, arch)),
        weights: WEIGHTS,
        converter: None,
    }
}

/// torchvision 0.26's checkpoints: bilinear, crop 224, resize 236 / 230 / 232.
const WEIGHTS: &[WeightsEntry] = {
    use Arch::*;
    use WeightsVariant::V1;
    const fn t(resize: i64) -> EvalTransform {
        EvalTransform { resize, ..TV_RESNET }
    }
    &[
        tv(ConvnextTiny, V1, "convnext_tiny-983f1562.pth", 82.520, 109.119, t(236)),
        tv(ConvnextSmall, V1, "convnext_small-0c510722.pth", 83.616, 191.703, t(230)),
        tv(ConvnextBase, V1, "convnext_base-6075fbad.pth", 84.062, 338.064, t(232)),
    ]
};

/// LayerNorm over the channels of an NCHW map (torchvision's `LayerNorm2d`).
#[derive(Debug)]
struct LayerNorm2d(nn::LayerNorm);

impl LayerNorm2d {
    fn new(p: nn::Path, c: i64) -> LayerNorm2d {
        LayerNorm2d(nn::layer_norm(p, vec![c], nn::LayerNormConfig { eps: LN_EPS, ..Default::default() }))
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.permute([0, 2, 3, 1]).apply(&self.0).permute([0, 3, 1, 2])
    }
}

/// Depthwise 7x7, LayerNorm, 4x expansion with GELU, layer scale, residual.
#[derive(Debug)]
struct Block {
    dwconv: nn::Conv2D,
    norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    layer_scale: Tensor,
    /// Stochastic-depth probability, used in training mode only.
    drop: f64,
}

impl Block {
    fn new(p: nn::Path, dim: i64, drop: f64) -> Block {
        let b = &p / "block";
        let dw = nn::ConvConfig { padding: 3, groups: dim, ..Default::default() };
        let ln = nn::LayerNormConfig { eps: LN_EPS, ..Default::default() };
        Block {
            dwconv: nn::conv2d(&b / "0", dim, dim, 7, dw),
            norm: nn::layer_norm(&b / "2", vec![dim], ln),
            fc1: nn::linear(&b / "3", dim, 4 * dim, Default::default()),
            fc2: nn::linear(&b / "5", 4 * dim, dim, Default::default()),
            layer_scale: p.var("layer_scale", &[dim, 1, 1], nn::Init::Const(1e-6)),
            drop,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.dwconv).permute([0, 2, 3, 1]);
        let y = self.fc2.forward(&self.fc1.forward(&y.apply(&self.norm)).gelu("none"));
        let y = y.permute([0, 3, 1, 2]) * &self.layer_scale;
        stochastic_depth(y, self.drop, train) + x
    }
}

/// torchvision's `StochasticDepth(p, "row")`: each sample's branch dropped with
/// probability `p` in training, the kept ones scaled by `1 / (1 - p)`.
pub(super) fn stochastic_depth(y: Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return y;
    }
    let keep = 1.0 - p;
    let mut shape = vec![y.size()[0]];
    shape.resize(y.dim(), 1);
    let mask = Tensor::empty(&shape, (y.kind(), y.device())).bernoulli_float_(keep);
    y * (mask / keep)
}

/// The 2x2 stride-2 conv (after a LayerNorm) between stages.
#[derive(Debug)]
struct Downsample {
    norm: LayerNorm2d,
    conv: nn::Conv2D,
}

/// A ConvNeXt whose four stages can be read one by one.
#[derive(Debug)]
pub struct ConvNeXt {
    arch: Arch,
    stem_conv: nn::Conv2D,
    stem_norm: LayerNorm2d,
    stages: [Vec<Block>; 4],
    downsamples: Vec<Downsample>,
    /// `classifier.0`: the LayerNorm applied to the pooled features.
    head_norm: LayerNorm2d,
}

impl ConvNeXt {
    pub fn new(p: &nn::Path, arch: Arch) -> ConvNeXt {
        let (dims, depths, sd) = config(arch);
        let f = p / "features";
        let stem = nn::ConvConfig { stride: 4, ..Default::default() };
        let total = depths.iter().sum::<usize>() as f64;
        let mut id = 0.0;
        let stages = std::array::from_fn(|i| {
            let sp = &f / (2 * i + 1);
            (0..depths[i])
                .map(|b| {
                    let block = Block::new(&sp / b, dims[i], sd * id / (total - 1.0));
                    id += 1.0;
                    block
                })
                .collect()
        });
        let downsamples = (0..3)
            .map(|i| {
                let dp = &f / (2 * i + 2);
                let cfg = nn::ConvConfig { stride: 2, ..Default::default() };
                Downsample {
                    norm: LayerNorm2d::new(&dp / "0", dims[i]),
                    conv: nn::conv2d(&dp / "1", dims[i], dims[i + 1], 2, cfg),
                }
            })
            .collect();
        ConvNeXt {
            arch,
            stem_conv: nn::conv2d(&f / "0" / "0", 3, dims[0], 4, stem),
            stem_norm: LayerNorm2d::new(&f / "0" / "1", dims[0]),
            stages,
            downsamples,
            head_norm: LayerNorm2d::new(p / "classifier" / "0", dims[3]),
        }
    }
}

impl Network for ConvNeXt {
    fn arch(&self) -> Arch {
        self.arch
    }

    fn taps_t(&self, x: &Tensor, last: Tap, train: bool) -> Vec<Tensor> {
        let mut maps = Vec::with_capacity(4);
        let mut x = self.stem_norm.forward(&x.apply(&self.stem_conv));
        for i in 0..=last.index() {
            if i > 0 {
                let d = &self.downsamples[i - 1];
                x = d.norm.forward(&x).apply(&d.conv);
            }
            x = self.stages[i].iter().fold(x, |x, b| b.forward_t(&x, train));
            maps.push(x.shallow_clone());
        }
        maps
    }

    /// The last tap's pooled features go through `classifier.0`, as torchvision's
    /// classifier reads them.
    fn pool_t(&self, map: &Tensor, tap: Tap) -> Tensor {
        let pooled = map.adaptive_avg_pool2d([1, 1]);
        let pooled = if tap == Tap::Layer4 { self.head_norm.forward(&pooled) } else { pooled };
        pooled.flatten(1, -1).to_kind(Kind::Float)
    }

    fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        macs(self.arch, side, tap)
    }

    fn inference(&self, _vs: &nn::VarStore, precision: Precision) -> Box<dyn Inference> {
        Box::new(inference::ConvNeXtInference::new(self, precision))
    }
}

/// Multiply-accumulates per image up to `tap`.
fn macs(arch: Arch, side: i64, tap: Tap) -> u64 {
    let (dims, depths, _) = config(arch);
    let mut s = side / 4;
    let mut macs = (s * s * dims[0] * 3 * 16) as u64;
    for i in 0..=tap.index() {
        if i > 0 {
            s /= 2;
            macs += (s * s * dims[i - 1] * dims[i] * 4) as u64;
        }
        // Depthwise 7x7 plus the two linear layers (d -> 4d -> d).
        macs += (depths[i] as i64 * s * s * (dims[i] * 49 + 8 * dims[i] * dims[i])) as u64;
    }
    macs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_match_torchvision_published_counts() {
        // torchvision's `_ops` (GFLOPS, counted as multiply-accumulates) at 224, which
        // include the classifier's linear layer (768 x 1000 for Tiny).
        for (arch, gmacs, fc) in [(Arch::ConvnextTiny, 4.456, 768.0), (Arch::ConvnextBase, 15.355, 1024.0)] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = ConvNeXt::new(&vs.root(), arch);
            let ours = net.macs_per_image(224, Tap::Layer4) as f64 + fc * 1000.0;
            assert!((ours / 1e9 - gmacs).abs() / gmacs < 0.01, "{arch}: {ours:.4e} vs {gmacs}e9");
        }
    }
}
