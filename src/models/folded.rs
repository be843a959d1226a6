//! An inference-only copy of a ResNet: BatchNorm folded into the convolutions, ReLU and
//! the residual add in place, channels-last layout. Same features, less work and memory
//! traffic: frozen extraction never needs BatchNorm as a separate pass.
use super::resnet::{Block, ResNet, Tap};
use tch::{nn, Tensor};

/// torchvision's (and tch's default) BatchNorm epsilon.
const BN_EPS: f64 = 1e-5;

/// NCHW shape with NHWC strides: what oneDNN's fast convolution paths want.
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// A convolution with its BatchNorm folded in: `w' = w * g/s`, `b' = beta - mean * g/s`,
/// with `s = sqrt(var + eps)`.
struct FoldedConv {
    w: Tensor,
    b: Tensor,
    stride: i64,
    padding: i64,
}

impl FoldedConv {
    fn new(conv: &nn::Conv2D, bn: &nn::BatchNorm, (stride, padding): (i64, i64), cl: bool) -> FoldedConv {
        let (Some(gamma), Some(beta)) = (&bn.ws, &bn.bs) else { panic!("BatchNorm without affine parameters") };
        let scale = gamma / (&bn.running_var + BN_EPS).sqrt();
        let w = &conv.ws * scale.view([-1, 1, 1, 1]);
        let b = beta - &bn.running_mean * &scale;
        let w = if cl { channels_last(&w) } else { w.contiguous() };
        FoldedConv { w: w.detach(), b: b.detach(), stride, padding }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.w, Some(&self.b), [self.stride], [self.padding], [1], 1)
    }
}

struct FoldedBlock {
    convs: Vec<FoldedConv>,
    downsample: Option<FoldedConv>,
}

impl FoldedBlock {
    fn new(b: &Block, cl: bool) -> FoldedBlock {
        FoldedBlock {
            convs: b
                .convs
                .iter()
                .zip(&b.bns)
                .zip(&b.geometry)
                .map(|((c, n), g)| FoldedConv::new(c, n, *g, cl))
                .collect(),
            downsample: b.downsample.as_ref().map(|d| FoldedConv::new(&d.conv, &d.bn, (b.stride, 0), cl)),
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
}

/// The frozen, folded network. Build it after the weights are loaded.
pub struct FoldedResNet {
    stem: FoldedConv,
    layers: [Vec<FoldedBlock>; 4],
    channels_last: bool,
}

impl FoldedResNet {
    pub fn new(net: &ResNet, channels_last: bool) -> FoldedResNet {
        tch::no_grad(|| FoldedResNet {
            stem: FoldedConv::new(&net.conv1, &net.bn1, (2, 3), channels_last),
            layers: std::array::from_fn(|i| net.layers[i].iter().map(|b| FoldedBlock::new(b, channels_last)).collect()),
            channels_last,
        })
    }

    /// `[N, 3, H, W]` normalised images -> pooled activations of `tap`, `[N, C]`.
    pub fn features(&self, xs: &Tensor, tap: Tap) -> Tensor {
        tch::no_grad(|| {
            let x = if self.channels_last { channels_last(xs) } else { xs.shallow_clone() };
            let mut x = self.stem.forward(&x);
            let _ = x.relu_();
            let mut x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
            for layer in &self.layers[..=tap.index()] {
                for b in layer {
                    x = b.forward(&x);
                }
            }
            x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
        })
    }
}
