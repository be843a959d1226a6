//! What every part downstream needs of a network, whatever its family: its taps and their
//! widths, pooled features, its last stage for fine-tuning, an inference copy, a traceable
//! forward. Extraction, training, export and the dashboard use only this.
//!
//! Taps are the same four for every family: the maps at 1/4, 1/8, 1/16 and 1/32 of the
//! input side (`layer1`..`layer4`, torchvision's ResNet names; timm's `features_only`
//! reductions 4..32). `layer4` is the last one, through any final norm the family has:
//! the features its classifier reads.
use super::arch::Arch;
use super::folded::Precision;
use crate::Result;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// Where features are taken: the global average pool of the map at one reduction.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Tap {
    /// 1/4 of the input side (ResNet `layer1`).
    Layer1,
    /// 1/8 (ResNet `layer2`).
    Layer2,
    /// 1/16 (ResNet `layer3`): the post's "earlier activations".
    Layer3,
    /// 1/32, the last stage: the post's choice, `[N, 2048]` for ResNet-50.
    #[value(alias = "pooled")]
    Layer4,
}

crate::choice::choice!(Tap, "layer");

impl Tap {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
    /// The tap at `i` (0 = layer1).
    pub fn at(i: usize) -> Tap {
        [Tap::Layer1, Tap::Layer2, Tap::Layer3, Tap::Layer4][i.min(3)]
    }
}

/// How a tap's tokens become one vector. CNNs have only the mean of their map; a ViT
/// also has its class token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    /// The mean over the map's positions (the patch tokens of a ViT): global average pooling.
    Mean,
    /// A ViT's class token.
    Cls,
    /// The class token and the patch-token mean side by side, `[N, 2C]`: DINOv2's own
    /// linear evaluation.
    #[value(name = "cls+mean")]
    #[serde(rename = "cls+mean")]
    ClsMean,
}

crate::choice::choice!(Pool, "pooling");

impl Pool {
    /// Width of the pooled vector for a map of `c` channels.
    pub fn width(self, c: i64) -> i64 {
        if self == Pool::ClsMean {
            2 * c
        } else {
            c
        }
    }
}

/// A network built over an `nn::Path` whose variable names are its published
/// checkpoint's keys.
pub trait Network: Send + std::fmt::Debug {
    fn arch(&self) -> Arch;

    /// The maps at taps `layer1..=last`, unpooled: `[N, C_i, H_i, W_i]`. `train`: BatchNorm
    /// and stochastic depth in training mode.
    fn taps_t(&self, x: &Tensor, last: Tap, train: bool) -> Vec<Tensor>;

    /// Pooled features at `tap`: `[N, 3, H, W]` normalised -> `[N, C]`. Later stages are
    /// not run. The default pools the tap's map; families with a final norm add it.
    fn features_t(&self, x: &Tensor, tap: Tap, train: bool) -> Tensor {
        let maps = self.taps_t(x, tap, train);
        self.pool_t(&maps[tap.index()], tap)
    }

    /// The tap's map `[N, C, H, W]` -> its features `[N, C]`: what [`Network::features_t`]
    /// does after the stages. Grad-CAM differentiates through it. The default pools;
    /// families with a final norm add it.
    fn pool_t(&self, map: &Tensor, _tap: Tap) -> Tensor {
        map.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// Features at `tap` pooled by `pool` (`[N, pool.width(C)]`); a CNN has only
    /// [`Pool::Mean`], which [`Arch::check_pool`] ensures before any run.
    fn readout_t(&self, x: &Tensor, tap: Tap, pool: Pool, train: bool) -> Tensor {
        assert_eq!(pool, Pool::Mean, "{} pools by the mean only", self.arch().name());
        self.features_t(x, tap, train)
    }

    /// Multiply-accumulates of convolutions and linear layers per `side` x `side` image up
    /// to `tap` (what FLOP counts are made of).
    fn macs_per_image(&self, side: i64, tap: Tap) -> u64;

    /// Variable-name prefixes of its layers from input to output, for layer-wise
    /// learning-rate decay; empty where the family has no such ladder (CNNs).
    fn layer_ladder(&self) -> Vec<Vec<String>> {
        Vec::new()
    }

    /// The inference copy extraction runs, made from the loaded weights in `vs`: folded
    /// BatchNorm, channels-last, `precision` where the family gains from it.
    fn inference(&self, vs: &nn::VarStore, precision: Precision) -> Box<dyn Inference>;

    /// The network as a sequence of tokens, for Grad-CAM of a head that reads a class
    /// token; `None` for networks without tokens.
    fn token_net(&self) -> Option<&dyn TokenNet> {
        None
    }
}

/// A transformer's view for Grad-CAM of a class-token head: a class token's output has no
/// map, so the map is the patch tokens entering the tap's last block, whose attention
/// gathers them into the class token (pytorch-grad-cam's recipe for ViTs, there at the
/// block's first norm).
pub trait TokenNet {
    /// Tokens entering the last block up to `tap` `[N, T, D]`, and the patch grid.
    fn entering(&self, x: &Tensor, tap: Tap) -> (Tensor, (i64, i64));
    /// From [`TokenNet::entering`]'s tokens: the last block, the final norm and `pool`.
    fn onward(&self, tokens: &Tensor, tap: Tap, pool: Pool) -> Tensor;
    /// The patch tokens of `tokens` as a map `[N, D, h, w]`.
    fn patch_map(&self, tokens: &Tensor, grid: (i64, i64)) -> Tensor;
}

/// A frozen copy for extraction; takes and returns fp32.
pub trait Inference: Send {
    /// `[N, 3, H, W]` normalised fp32 -> `[N, C]` fp32.
    fn features(&self, x: &Tensor, tap: Tap) -> Tensor;
    /// Features pooled by `pool`; see [`Network::readout_t`].
    fn readout(&self, x: &Tensor, tap: Tap, pool: Pool) -> Tensor {
        assert_eq!(pool, Pool::Mean, "a CNN pools by the mean only");
        self.features(x, tap)
    }
    /// The unpooled map at `tap` `[N, C, h, w]` fp32, where this copy computes it faster
    /// than the network ([`crate::models::cam`] weighs it); `None` otherwise.
    fn map(&self, _x: &Tensor, _tap: Tap) -> Option<Tensor> {
        None
    }
    /// See [`Network::macs_per_image`].
    fn macs_per_image(&self, side: i64, tap: Tap) -> u64;
    /// The kind weights and activations are computed in.
    fn kind(&self) -> Kind;
}

/// NCHW shape with NHWC strides: what oneDNN's fast convolution paths want.
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// The generic inference copy: the same network built again in its own var store, the
/// weights copied and cast to `precision`, run in eval mode with channels-last input.
/// For families with nothing to fold (ConvNeXt) or not folded yet.
pub struct EagerCopy {
    _vs: nn::VarStore,
    net: Box<dyn Network>,
    kind: Kind,
    channels_last: bool,
}

impl EagerCopy {
    pub fn new(from: &nn::VarStore, arch: Arch, precision: Precision, in_channels_last: bool) -> EagerCopy {
        let mut vs = nn::VarStore::new(from.device());
        let net = arch.build(&vs.root());
        tch::no_grad(|| {
            vs.copy(from).expect("an inference copy of the same architecture has the same variables");
        });
        vs.freeze();
        let kind = precision.kind();
        if kind != Kind::Float {
            vs.set_kind(kind);
        }
        if in_channels_last {
            tch::no_grad(|| {
                for (_, mut v) in vs.variables() {
                    if v.dim() == 4 {
                        let cl = channels_last(&v);
                        v.set_data(&cl);
                    }
                }
            });
        }
        EagerCopy { _vs: vs, net, kind, channels_last: in_channels_last }
    }
}

impl Inference for EagerCopy {
    fn features(&self, x: &Tensor, tap: Tap) -> Tensor {
        tch::no_grad(|| {
            let x = if self.kind == Kind::Float { x.shallow_clone() } else { x.to_kind(self.kind) };
            let x = if self.channels_last { channels_last(&x) } else { x };
            self.net.features_t(&x, tap, false).to_kind(Kind::Float)
        })
    }
    fn readout(&self, x: &Tensor, tap: Tap, pool: Pool) -> Tensor {
        tch::no_grad(|| {
            let x = if self.kind == Kind::Float { x.shallow_clone() } else { x.to_kind(self.kind) };
            let x = if self.channels_last { channels_last(&x) } else { x };
            self.net.readout_t(&x, tap, pool, false).to_kind(Kind::Float)
        })
    }
    fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        self.net.macs_per_image(side, tap)
    }
    fn kind(&self) -> Kind {
        self.kind
    }
}

/// How a family's weights files become this crate's tensors.
pub type Converter = fn(&Path) -> Result<Vec<(String, Tensor)>>;
