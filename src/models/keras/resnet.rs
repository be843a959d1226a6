//! Keras' `ResNet50(include_top=False)` (keras/src/applications/resnet.py): the network of
//! the post, as `keras.applications` builds it.
//!
//! The original "v1" ResNet, unlike torchvision's v1.5: the stride of a down-sampling block
//! is on its first 1x1 conv (`_1_conv`) and on the 1x1 shortcut (`_0_conv`), not on the
//! 3x3; every conv has a bias; BatchNorm's epsilon is 1.001e-5. `conv1_pad` (3) + a 7x7/2
//! conv, `pool1_pad` (1) + a 3x3/2 max pool ("valid"; the padding is zeros after a ReLU,
//! so the same as a max pool's padding), "same" 3x3s. Variables carry Keras' layer names
//! (`conv2_block1_1_conv.weight`, `conv2_block1_1_bn.running_var`): the converter maps
//! each weight of the `.h5` to one of them.
use super::super::arch::{Arch, ArchSpec, Family};
use super::super::resnet::{Block, Downsample, ResNet};
use super::super::weights::{EvalTransform, Source, WeightsEntry, WeightsVariant};
use super::h5::read_layers;
use crate::preprocess::{Interpolation, Normalization};
use crate::{Error, Result};
use std::path::Path;
use tch::{nn, Tensor};

/// Keras' BatchNorm epsilon in its ResNets.
pub const BN_EPS: f64 = 1.001e-5;

/// Blocks per stage (`conv2`..`conv5`) and their bottleneck widths.
const BLOCKS: [usize; 4] = [3, 4, 6, 3];

/// The registry's facts about Keras' ResNet50.
pub(crate) fn spec(_arch: Arch) -> ArchSpec {
    ArchSpec {
        family: Family::KerasResNet,
        // conv2_block3_out, conv3_block4_out, conv4_block6_out, conv5_block3_out.
        widths: [256, 512, 1024, 2048],
        last_stage: &["conv5_"],
        // The with-top file (`..._kernels.h5`) loads too, its classifier left out.
        classifier: &["predictions."],
        build: |p, _| Box::new(build(p)),
        weights: WEIGHTS,
        converter: Some(convert),
    }
}

/// Keras 3's own download (BASE_WEIGHTS_PATH + file and its `file_hash` in
/// keras/src/applications/resnet.py). Keras applications squash to 224x224 with no crop;
/// resize 224 + crop 224 is the nearest of our transforms (the same on square images).
const WEIGHTS: &[WeightsEntry] = &[WeightsEntry {
    arch: Arch::KerasResNet50,
    variant: WeightsVariant::V1,
    file: "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    source: Source::Url {
        url: "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        md5: "4d473c1dd8becc155b73f8504c6f6626",
    },
    eval: EvalTransform {
        resize: 224,
        crop: 224,
        interpolation: Interpolation::Bilinear,
        normalization: Normalization::KerasCaffe,
    },
    // keras.io/api/applications: ResNet50, top-1 74.9%.
    imagenet_top1: 74.9,
    // 94,765,736 bytes.
    size_mib: 90.376,
}];

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(p, c_in, c_out, k, nn::ConvConfig { stride, padding, bias: true, ..Default::default() })
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, nn::BatchNormConfig { eps: BN_EPS, ..Default::default() })
}

/// `residual_block_v1`: `{name}_1_conv` 1x1 with the stride, `_2_conv` 3x3 "same",
/// `_3_conv` 1x1 to `4 * filters`; a `_0_conv` 1x1 shortcut with the stride in each
/// stage's first block.
fn block(p: &nn::Path, name: &str, c_in: i64, filters: i64, stride: i64, shortcut: bool) -> Block {
    let c_out = 4 * filters;
    let at = |i: usize, kind: &str| p / format!("{name}_{i}_{kind}");
    let convs = vec![
        conv(at(1, "conv"), c_in, filters, 1, stride, 0),
        conv(at(2, "conv"), filters, filters, 3, 1, 1),
        conv(at(3, "conv"), filters, c_out, 1, 1, 0),
    ];
    let bns = [filters, filters, c_out].iter().enumerate().map(|(i, &c)| bn(at(i + 1, "bn"), c)).collect();
    let downsample = shortcut
        .then(|| Downsample { conv: conv(at(0, "conv"), c_in, c_out, 1, stride, 0), bn: bn(at(0, "bn"), c_out) });
    Block { convs, bns, downsample, geometry: vec![(stride, 0), (1, 1), (1, 0)], stride }
}

/// Builds the network under `p` (`vs.root()`, so names are Keras' layer names).
pub fn build(p: &nn::Path) -> ResNet {
    let conv1 = conv(p / "conv1_conv", 3, 64, 7, 2, 3);
    let bn1 = bn(p / "conv1_bn", 64);
    let mut c_in = 64;
    let layers = std::array::from_fn(|i| {
        let filters = 64 << i;
        (0..BLOCKS[i])
            .map(|b| {
                let stride = if b == 0 && i > 0 { 2 } else { 1 };
                let name = format!("conv{}_block{}", i + 2, b + 1);
                let block = block(p, &name, c_in, filters, stride, b == 0);
                c_in = 4 * filters;
                block
            })
            .collect()
    });
    ResNet { arch: Arch::KerasResNet50, conv1, bn1, layers, fc: None, bn_eps: BN_EPS }
}

/// Reads a Keras `.h5` into this crate's names and layouts: a conv kernel
/// `(kh, kw, in, out)` -> `{layer}.weight` `(out, in, kh, kw)`, a dense kernel `(in, out)`
/// -> `(out, in)`, `bias` -> `{layer}.bias`, BatchNorm `gamma`/`beta`/`moving_mean`/
/// `moving_variance` -> `weight`/`bias`/`running_mean`/`running_var`. Weights are matched
/// by the last part of their name, so Keras 2's `kernel:0` and Keras 3's `kernel` both
/// read. Which layers must be there is the strict load's business.
pub fn convert(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for layer in read_layers(path)? {
        for (weight, t) in layer.weights {
            let werr = |reason: String| Error::Weights {
                path: path.to_path_buf(),
                reason: format!("layer `{}`, weight `{weight}`: {reason}", layer.name),
            };
            let last = weight.rsplit('/').next().unwrap_or(&weight);
            let last = last.split(':').next().unwrap_or(last);
            let (ours, t) = match last {
                "kernel" => match t.dim() {
                    4 => ("weight", t.permute([3, 2, 0, 1])),
                    2 => ("weight", t.tr()),
                    d => return Err(werr(format!("a kernel of {d} dimensions {:?}", t.size()))),
                },
                "bias" => ("bias", t),
                "gamma" => ("weight", t),
                "beta" => ("bias", t),
                "moving_mean" => ("running_mean", t),
                "moving_variance" => ("running_var", t),
                other => return Err(werr(format!("unknown weight `{other}`"))),
            };
            let key = format!("{}.{ours}", layer.name);
            if out.iter().any(|(k, _)| *k == key) {
                return Err(werr(format!("a second `{ours}` for the layer")));
            }
            out.push((key, t.contiguous()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Network, Tap};

    #[test]
    fn macs_are_resnet50_v1s() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let keras = build(&vs.root());
        let tv = ResNet::new(&vs.root(), Arch::ResNet50, None);
        let (k, t) = (keras.macs_per_image(224, Tap::Layer4), tv.macs_per_image(224, Tap::Layer4));
        println!("MACs at 224: keras-resnet50 {k}, torchvision resnet50 {t}");
        // He et al. (2016), table 1: 3.8e9 multiply-adds with the 2048x1000 classifier; v1's
        // strided 1x1s make it cheaper than torchvision's v1.5 (4.09e9).
        assert!(((k + 2048 * 1000) as f64 - 3.8e9).abs() < 0.1e9, "{k}");
        assert!(k < t);
    }
}
