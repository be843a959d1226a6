//! An inference-only copy of a ResNet (torchvision's or Keras'): BatchNorm folded into the
//! convolutions, ReLU and the residual add in place, channels-last layout. Same features,
//! less work and memory traffic: frozen extraction never needs BatchNorm as a separate pass.
//!
//! A reduced-precision copy ([`FoldedResNet::with_precision`], bf16 or fp16) folds in fp32 and
//! then rounds the folded weights once, so it differs from the fp32 net only by rounding.
use super::family::{channels_last, Inference, Tap};
use super::resnet::{Block, ResNet};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// The arithmetic the folded net computes in. Part of the feature cache key; features are
/// stored as fp32 whatever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Bit-for-bit the extraction of earlier versions.
    #[default]
    Fp32,
    /// bfloat16 weights and activations (fp32's range, 8 bits of mantissa); CPU or CUDA.
    Bf16,
    /// float16; CUDA only (CPU half convolutions are slow or missing).
    Fp16,
}

impl Precision {
    /// The tensor kind of weights and activations.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp16 => Kind::Half,
        }
    }

    /// An error naming the device when this precision cannot run there (fp16 off CUDA).
    pub fn check_device(self, device: Device) -> Result<()> {
        if self == Precision::Fp16 && !device.is_cuda() {
            let reason = format!(
                "fp16 needs a CUDA device, and extraction runs on {}; use bf16 or fp32 there",
                device_name(device)
            );
            return Err(Error::invalid("precision", reason));
        }
        Ok(())
    }
}

crate::choice::choice!(Precision, "precision");

/// "cpu", "cuda:0", ...: how users spell devices on the command line.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// A convolution with its BatchNorm folded in: `w' = w * g/s`, `b' = beta - mean * g/s`
/// (with a conv bias, as Keras has: `b' = beta + (bias - mean) * g/s`), with
/// `s = sqrt(var + eps)`.
struct FoldedConv {
    w: Tensor,
    b: Tensor,
    stride: i64,
    padding: i64,
}

impl FoldedConv {
    fn new(conv: &nn::Conv2D, bn: &nn::BatchNorm, (stride, padding): (i64, i64), opts: Opts) -> FoldedConv {
        let (Some(gamma), Some(beta)) = (&bn.ws, &bn.bs) else { panic!("BatchNorm without affine parameters") };
        let scale = gamma / (&bn.running_var + opts.bn_eps).sqrt();
        let w = &conv.ws * scale.view([-1, 1, 1, 1]);
        let b = match &conv.bs {
            None => beta - &bn.running_mean * &scale,
            Some(bias) => beta + (bias - &bn.running_mean) * &scale,
        };
        let (w, b) = if opts.kind == Kind::Float { (w, b) } else { (w.to_kind(opts.kind), b.to_kind(opts.kind)) };
        let w = if opts.channels_last { channels_last(&w) } else { w.contiguous() };
        FoldedConv { w: w.detach(), b: b.detach(), stride, padding }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.w, Some(&self.b), [self.stride], [self.padding], [1], 1)
    }

    /// For a square input of side `side`: the output side and the multiply-accumulates per image.
    fn cost(&self, side: i64) -> (i64, u64) {
        let s = self.w.size();
        let out = (side + 2 * self.padding - s[2]) / self.stride + 1;
        (out, (s.iter().product::<i64>() * out * out) as u64)
    }
}

/// How the folded copy is laid out and stored.
#[derive(Clone, Copy)]
struct Opts {
    channels_last: bool,
    /// Weight and activation kind: Float, BFloat16 or Half.
    kind: Kind,
    /// The network's BatchNorm epsilon (torchvision 1e-5, Keras 1.001e-5).
    bn_eps: f64,
}

struct FoldedBlock {
    convs: Vec<FoldedConv>,
    downsample: Option<FoldedConv>,
}

impl FoldedBlock {
    fn new(b: &Block, opts: Opts) -> FoldedBlock {
        FoldedBlock {
            convs: b
                .convs
                .iter()
                .zip(&b.bns)
                .zip(&b.geometry)
                .map(|((c, n), g)| FoldedConv::new(c, n, *g, opts))
                .collect(),
            downsample: b.downsample.as_ref().map(|d| FoldedConv::new(&d.conv, &d.bn, (b.stride, 0), opts)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let last = self.convs.len() - 1;
        let mut y = x.shallow_clone();
        for (i, c) in self.convs.iter().enumerate() {
            y = c.forward(&y);
            if i < last {
                let _ = y.relu_();
            }
        }
        match &self.downsample {
            Some(d) => y += d.forward(x),
            None => y += x,
        }
        let _ = y.relu_();
        y
    }

    fn cost(&self, side: i64) -> (i64, u64) {
        let mut macs = self.downsample.as_ref().map_or(0, |d| d.cost(side).1);
        let mut s = side;
        for c in &self.convs {
            let (out, m) = c.cost(s);
            (s, macs) = (out, macs + m);
        }
        (s, macs)
    }
}

/// The frozen, folded network. Build it after the weights are loaded.
pub struct FoldedResNet {
    stem: FoldedConv,
    layers: [Vec<FoldedBlock>; 4],
    opts: Opts,
}

impl FoldedResNet {
    /// The fp32 copy.
    pub fn new(net: &ResNet, channels_last: bool) -> FoldedResNet {
        Self::with_precision(net, channels_last, Precision::Fp32)
    }

    /// A copy whose weights and activations are in `precision`; folding is done in fp32
    /// before the one rounding. `features` still takes and returns fp32.
    pub fn with_precision(net: &ResNet, channels_last: bool, precision: Precision) -> FoldedResNet {
        let opts = Opts { channels_last, kind: precision.kind(), bn_eps: net.bn_eps };
        tch::no_grad(|| FoldedResNet {
            stem: FoldedConv::new(&net.conv1, &net.bn1, (2, 3), opts),
            layers: std::array::from_fn(|i| net.layers[i].iter().map(|b| FoldedBlock::new(b, opts)).collect()),
            opts,
        })
    }

    /// Convolution multiply-accumulates per `side` x `side` image up to `tap` (what FLOP
    /// counts are made of; ReLU, adds and pooling are left out). ResNet50 at 224: 4.09e9.
    pub fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        let (s, mut macs) = self.stem.cost(side);
        let mut s = (s + 2 - 3) / 2 + 1; // max pool 3x3, stride 2, padding 1
        for b in self.layers[..=tap.index()].iter().flatten() {
            let (out, m) = b.cost(s);
            (s, macs) = (out, macs + m);
        }
        macs
    }

    /// The kind the weights and activations are computed in.
    pub fn kind(&self) -> Kind {
        self.opts.kind
    }

    /// `[N, 3, H, W]` normalised fp32 images -> pooled activations of `tap`, `[N, C]` fp32
    /// (convolutions in [`Self::kind`], the final average in fp32).
    pub fn features(&self, xs: &Tensor, tap: Tap) -> Tensor {
        self.map(xs, tap).adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// The unpooled map at `tap`, `[N, C, h, w]` fp32 (what Grad-CAM weighs).
    pub fn map(&self, xs: &Tensor, tap: Tap) -> Tensor {
        tch::no_grad(|| {
            let xs = if self.opts.kind == Kind::Float { xs.shallow_clone() } else { xs.to_kind(self.opts.kind) };
            let x = if self.opts.channels_last { channels_last(&xs) } else { xs };
            let mut x = self.stem.forward(&x);
            let _ = x.relu_();
            let mut x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
            for layer in &self.layers[..=tap.index()] {
                for b in layer {
                    x = b.forward(&x);
                }
            }
            // Reduced precision: average in fp32 (the last map is small; the mean is not).
            if self.opts.kind == Kind::Float {
                x
            } else {
                x.to_kind(Kind::Float)
            }
        })
    }
}

impl Inference for FoldedResNet {
    fn features(&self, x: &Tensor, tap: Tap) -> Tensor {
        FoldedResNet::features(self, x, tap)
    }
    fn map(&self, x: &Tensor, tap: Tap) -> Option<Tensor> {
        Some(FoldedResNet::map(self, x, tap))
    }
    fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        FoldedResNet::macs_per_image(self, side, tap)
    }
    fn kind(&self) -> Kind {
        self.opts.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;

    #[test]
    fn macs_match_the_published_counts() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = FoldedResNet::new(&ResNet::new(&vs.root(), Arch::ResNet50, None), true);
        // torchvision: 4.09 GMACs at 224 including the 2048x1000 fc, which features skip.
        let at224 = net.macs_per_image(224, Tap::Layer4) as f64;
        assert!((at224 + 2048.0 * 1000.0 - 4.09e9).abs() < 0.01e9, "{at224}");
        let at200 = net.macs_per_image(200, Tap::Layer4) as f64;
        assert!(at200 < at224 && at200 > 0.75 * at224, "{at200}");
    }

    #[test]
    fn precision_names_round_trip_and_fp16_needs_cuda() {
        for &p in Precision::all() {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!(Precision::Bf16.check_device(Device::Cpu).is_ok());
        let err = Precision::Fp16.check_device(Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("cpu") && err.contains("CUDA"), "{err}");
        assert!(Precision::Fp16.check_device(Device::Cuda(0)).is_ok());
    }
}
