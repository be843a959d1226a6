//! ResNet-18/34/50/101/152 in torchvision's v1.5 layout.
//!
//! Variable paths equal torchvision's state-dict keys (`layer1.0.downsample.0.weight`), so
//! its checkpoints load unchanged. Unlike `tch::vision::resnet`, the stages are reachable:
//! the earlier-layer strategy taps `layer2`/`layer3`.
use super::arch::{Arch, ArchSpec, Family};
use super::family::{Inference, Network, Tap};
use super::folded::{FoldedResNet, Precision};
use super::weights::{tv, EvalTransform, WeightsEntry, WeightsVariant, TV_RESNET};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Blocks per stage.
fn blocks(arch: Arch) -> [usize; 4] {
    match arch {
        Arch::ResNet18 => [2, 2, 2, 2],
        Arch::ResNet101 => [3, 4, 23, 3],
        Arch::ResNet152 => [3, 8, 36, 3],
        _ => [3, 4, 6, 3],
    }
}

fn bottleneck(arch: Arch) -> bool {
    !matches!(arch, Arch::ResNet18 | Arch::ResNet34)
}

/// Channels out of each stage: `[layer1, layer2, layer3, layer4]`.
fn stage_channels(arch: Arch) -> [i64; 4] {
    let e = if bottleneck(arch) { 4 } else { 1 };
    [64 * e, 128 * e, 256 * e, 512 * e]
}

/// The registry's facts about a torchvision ResNet.
pub(super) fn spec(arch: Arch) -> ArchSpec {
    ArchSpec {
        family: Family::ResNet,
        widths: stage_channels(arch),
        last_stage: &["layer4."],
        classifier: &["fc."],
        build: |p, arch| Box::new(ResNet::new(p, arch, None)),
        weights: WEIGHTS,
        converter: None,
    }
}

/// torchvision's ResNet checkpoints (torchvision 0.26 `models/resnet.py`): resize 256
/// (v2: 232) bilinear, crop 224.
const WEIGHTS: &[WeightsEntry] = {
    use Arch::*;
    use WeightsVariant::*;
    const V2T: EvalTransform = EvalTransform { resize: 232, ..TV_RESNET };
    &[
        tv(ResNet18, V1, "resnet18-f37072fd.pth", 69.758, 44.661, TV_RESNET),
        tv(ResNet34, V1, "resnet34-b627a593.pth", 73.314, 83.275, TV_RESNET),
        tv(ResNet50, V1, "resnet50-0676ba61.pth", 76.130, 97.781, TV_RESNET),
        tv(ResNet50, V2, "resnet50-11ad3fa6.pth", 80.858, 97.790, V2T),
        tv(ResNet101, V1, "resnet101-63fe2227.pth", 77.374, 170.511, TV_RESNET),
        tv(ResNet101, V2, "resnet101-cd907fc2.pth", 81.886, 170.530, V2T),
        tv(ResNet152, V1, "resnet152-394f9c45.pth", 78.312, 230.434, TV_RESNET),
        tv(ResNet152, V2, "resnet152-f82ba261.pth", 82.284, 230.474, V2T),
    ]
};

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding, bias: false, ..Default::default() };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// A 1x1 conv + BN that matches the residual's shape when a block changes it.
#[derive(Debug)]
pub(crate) struct Downsample {
    pub(crate) conv: nn::Conv2D,
    pub(crate) bn: nn::BatchNorm,
}

/// One residual block: basic (two 3x3) or bottleneck (1x1, 3x3 with the stride, 1x1).
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) convs: Vec<nn::Conv2D>,
    pub(crate) bns: Vec<nn::BatchNorm>,
    pub(crate) downsample: Option<Downsample>,
    /// (stride, padding) of each conv; tch keeps its conv config private.
    pub(crate) geometry: Vec<(i64, i64)>,
    pub(crate) stride: i64,
}

impl Block {
    fn new(p: nn::Path, c_in: i64, planes: i64, stride: i64, bottleneck: bool) -> Block {
        let (convs, c_out) = if bottleneck {
            let c_out = planes * 4;
            let convs = vec![
                conv(&p / "conv1", c_in, planes, 1, 1, 0),
                conv(&p / "conv2", planes, planes, 3, stride, 1),
                conv(&p / "conv3", planes, c_out, 1, 1, 0),
            ];
            (convs, c_out)
        } else {
            let convs =
                vec![conv(&p / "conv1", c_in, planes, 3, stride, 1), conv(&p / "conv2", planes, planes, 3, 1, 1)];
            (convs, planes)
        };
        let widths: Vec<i64> = if bottleneck { vec![planes, planes, c_out] } else { vec![planes, planes] };
        let bns = widths.iter().enumerate().map(|(i, &c)| bn(&p / format!("bn{}", i + 1), c)).collect();
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = &p / "downsample";
            Downsample { conv: conv(&d / "0", c_in, c_out, 1, stride, 0), bn: bn(&d / "1", c_out) }
        });
        let geometry = if bottleneck { vec![(1, 0), (stride, 1), (1, 0)] } else { vec![(stride, 1), (1, 1)] };
        Block { convs, bns, downsample, geometry, stride }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, (c, b)) in self.convs.iter().zip(&self.bns).enumerate() {
            ys = ys.apply(c).apply_t(b, train);
            if i < last {
                ys = ys.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some(d) => xs.apply(&d.conv).apply_t(&d.bn, train),
            None => xs.shallow_clone(),
        };
        (ys + shortcut).relu()
    }
}

/// Outputs of every stage for one input.
pub struct Stages {
    /// After conv1, bn1, relu and max-pool: `[N, 64, H/4, W/4]`.
    pub stem: Tensor,
    /// `layer1`..`layer4` outputs.
    pub layers: [Tensor; 4],
    /// Global average pool of layer4: `[N, C4]` (2048 for ResNet-50).
    pub pooled: Tensor,
    /// `fc(pooled)` when the net has a classifier: `[N, classes]`.
    pub logits: Option<Tensor>,
}

/// torchvision's (and tch's default) BatchNorm epsilon.
pub(crate) const TV_BN_EPS: f64 = 1e-5;

/// A ResNet whose stages can be read one by one. Keras' ResNet50 is one too, built with
/// its own names, conv biases and strides (`models::keras::resnet`).
#[derive(Debug)]
pub struct ResNet {
    pub arch: Arch,
    pub(crate) conv1: nn::Conv2D,
    pub(crate) bn1: nn::BatchNorm,
    pub(crate) layers: [Vec<Block>; 4],
    pub(crate) fc: Option<nn::Linear>,
    /// Every BatchNorm's epsilon (tch keeps it private): what folding divides by.
    pub(crate) bn_eps: f64,
}

impl ResNet {
    /// Builds the net under `p` (use `vs.root()` so names match torchvision).
    /// `classes`: `Some(n)` adds the `fc` layer, `None` stops at the pooled features.
    /// Panics for an arch of another family (Keras' is `models::keras::resnet::build`).
    pub fn new(p: &nn::Path, arch: Arch, classes: Option<i64>) -> ResNet {
        assert_eq!(arch.family(), Family::ResNet, "{arch} is built by its own family");
        let conv1 = conv(p / "conv1", 3, 64, 7, 2, 3);
        let bn1 = bn(p / "bn1", 64);
        let bottleneck = bottleneck(arch);
        let mut c_in = 64;
        let layers = std::array::from_fn(|i| {
            let planes = 64 << i;
            let stride = if i == 0 { 1 } else { 2 };
            let lp = p / format!("layer{}", i + 1);
            (0..blocks(arch)[i])
                .map(|b| {
                    let block = Block::new(&lp / b, c_in, planes, if b == 0 { stride } else { 1 }, bottleneck);
                    c_in = stage_channels(arch)[i];
                    block
                })
                .collect()
        });
        let fc = classes.map(|n| nn::linear(p / "fc", stage_channels(arch)[3], n, Default::default()));
        ResNet { arch, conv1, bn1, layers, fc, bn_eps: TV_BN_EPS }
    }

    /// `[N, 3, H, W]` normalised images -> `[N, 64, H/4, W/4]`.
    pub fn stem(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv1).apply_t(&self.bn1, train).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
    }

    /// Runs stage `i` (0 = layer1).
    pub fn layer(&self, i: usize, xs: &Tensor, train: bool) -> Tensor {
        self.layers[i].iter().fold(xs.shallow_clone(), |x, b| b.forward_t(&x, train))
    }

    /// Pooled activations of `tap`: `[N, C]`, stopping there (later stages are not run).
    pub fn features(&self, xs: &Tensor, tap: Tap, train: bool) -> Tensor {
        let mut x = self.stem(xs, train);
        for i in 0..=tap.index() {
            x = self.layer(i, &x, train);
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// Feature width at `tap` (`[N, C]`'s C).
    pub fn feature_dim(&self, tap: Tap) -> i64 {
        stage_channels(self.arch)[tap.index()]
    }

    /// Every stage's output, for inspection and parity tests.
    pub fn stages(&self, xs: &Tensor, train: bool) -> Stages {
        let stem = self.stem(xs, train);
        let l1 = self.layer(0, &stem, train);
        let l2 = self.layer(1, &l1, train);
        let l3 = self.layer(2, &l2, train);
        let l4 = self.layer(3, &l3, train);
        let pooled = l4.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let logits = self.fc.as_ref().map(|fc| pooled.apply(fc));
        Stages { stem, layers: [l1, l2, l3, l4], pooled, logits }
    }
}

impl ModuleT for ResNet {
    /// Logits when the net has `fc`, else pooled features.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let pooled = self.features(xs, Tap::Layer4, train);
        match &self.fc {
            Some(fc) => pooled.apply(fc),
            None => pooled,
        }
    }
}

impl Network for ResNet {
    fn arch(&self) -> Arch {
        self.arch
    }

    fn taps_t(&self, x: &Tensor, last: Tap, train: bool) -> Vec<Tensor> {
        let mut maps: Vec<Tensor> = Vec::with_capacity(4);
        let mut x = self.stem(x, train);
        for i in 0..=last.index() {
            x = self.layer(i, &x, train);
            maps.push(x.shallow_clone());
        }
        maps
    }

    fn features_t(&self, x: &Tensor, tap: Tap, train: bool) -> Tensor {
        self.features(x, tap, train)
    }

    fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        FoldedResNet::new(self, false).macs_per_image(side, tap)
    }

    fn inference(&self, _vs: &nn::VarStore, precision: Precision) -> Box<dyn Inference> {
        Box::new(FoldedResNet::with_precision(self, true, precision))
    }
}
