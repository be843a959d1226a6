//! ConvNeXt's inference copy: each block's layer scale folded into its second linear
//! layer (`w' = s * w`, `b' = s * b`: one pass over the map less per block), GELU and the
//! residual add in place, activations channels-last so the depthwise conv's output
//! permuted to NHWC is already contiguous for the LayerNorm and both matrix products.
use super::{ConvNeXt, LN_EPS};
use crate::models::family::{channels_last, Inference, Tap};
use crate::models::folded::Precision;
use tch::{Kind, Tensor};

struct Block {
    dw_w: Tensor,
    dw_b: Tensor,
    ln: (Tensor, Tensor),
    fc1: (Tensor, Tensor),
    /// fc2 with the layer scale folded in.
    fc2: (Tensor, Tensor),
}

/// A LayerNorm over channels followed by a strided conv (or, for the stem, the reverse).
struct Step {
    conv_w: Tensor,
    conv_b: Tensor,
    stride: i64,
    ln: (Tensor, Tensor),
}

pub(super) struct ConvNeXtInference {
    stem: Step,
    downsamples: Vec<Step>,
    stages: [Vec<Block>; 4],
    head_ln: (Tensor, Tensor),
    kind: Kind,
    arch: crate::models::Arch,
}

fn cast(t: &Tensor, kind: Kind) -> Tensor {
    t.detach().to_kind(kind).contiguous()
}

fn ln_pair(ln: &tch::nn::LayerNorm, kind: Kind) -> (Tensor, Tensor) {
    let w = ln.ws.as_ref().expect("ConvNeXt's LayerNorms are affine");
    let b = ln.bs.as_ref().expect("ConvNeXt's LayerNorms are affine");
    (cast(w, kind), cast(b, kind))
}

/// LayerNorm over the channels of an NCHW map whose memory is NHWC.
fn ln2d(x: &Tensor, (w, b): &(Tensor, Tensor)) -> Tensor {
    let c = w.size()[0];
    x.permute([0, 2, 3, 1]).layer_norm([c], Some(w), Some(b), LN_EPS, false).permute([0, 3, 1, 2])
}

impl ConvNeXtInference {
    pub(super) fn new(net: &ConvNeXt, precision: Precision) -> ConvNeXtInference {
        let kind = precision.kind();
        tch::no_grad(|| {
            let conv = |c: &tch::nn::Conv2D| {
                (channels_last(&c.ws.detach().to_kind(kind)), cast(c.bs.as_ref().expect("convs have biases"), kind))
            };
            let (w, b) = conv(&net.stem_conv);
            let stem = Step { conv_w: w, conv_b: b, stride: 4, ln: ln_pair(&net.stem_norm.0, kind) };
            let downsamples = net
                .downsamples
                .iter()
                .map(|d| {
                    let (w, b) = conv(&d.conv);
                    Step { conv_w: w, conv_b: b, stride: 2, ln: ln_pair(&d.norm.0, kind) }
                })
                .collect();
            let stages = std::array::from_fn(|i| {
                net.stages[i]
                    .iter()
                    .map(|b| {
                        let (dw_w, dw_b) = conv(&b.dwconv);
                        // Folded in fp32, then rounded once.
                        let s = b.layer_scale.detach().flatten(0, -1);
                        let w2 = &b.fc2.ws * s.unsqueeze(1);
                        let b2 = b.fc2.bs.as_ref().expect("linear layers have biases") * &s;
                        Block {
                            dw_w,
                            dw_b,
                            ln: ln_pair(&b.norm, kind),
                            fc1: (cast(&b.fc1.ws, kind), cast(b.fc1.bs.as_ref().expect("bias"), kind)),
                            fc2: (cast(&w2, kind), cast(&b2, kind)),
                        }
                    })
                    .collect()
            });
            let head_ln = ln_pair(&net.head_norm.0, kind);
            ConvNeXtInference { stem, downsamples, stages, head_ln, kind, arch: net.arch }
        })
    }
}

impl Inference for ConvNeXtInference {
    fn features(&self, x: &Tensor, tap: Tap) -> Tensor {
        tch::no_grad(|| {
            let x = if self.kind == Kind::Float { x.shallow_clone() } else { x.to_kind(self.kind) };
            let s = &self.stem;
            let x = channels_last(&x).conv2d(&s.conv_w, Some(&s.conv_b), [s.stride], [0], [1], 1);
            let mut x = ln2d(&x, &s.ln);
            for i in 0..=tap.index() {
                if i > 0 {
                    let d = &self.downsamples[i - 1];
                    x = ln2d(&x, &d.ln).conv2d(&d.conv_w, Some(&d.conv_b), [d.stride], [0], [1], 1);
                }
                for b in &self.stages[i] {
                    let c = b.dw_w.size()[0];
                    let y = x.conv2d(&b.dw_w, Some(&b.dw_b), [1], [3], [1], c).permute([0, 2, 3, 1]);
                    let mut y =
                        y.layer_norm([c], Some(&b.ln.0), Some(&b.ln.1), LN_EPS, false).linear(&b.fc1.0, Some(&b.fc1.1));
                    let _ = y.gelu_("none");
                    let mut y = y.linear(&b.fc2.0, Some(&b.fc2.1)).permute([0, 3, 1, 2]);
                    y += &x;
                    x = y;
                }
            }
            let pooled = x.to_kind(Kind::Float).adaptive_avg_pool2d([1, 1]);
            let pooled = if tap == Tap::Layer4 {
                let (w, b) = (&self.head_ln.0, &self.head_ln.1);
                ln2d(&pooled, &(w.to_kind(Kind::Float), b.to_kind(Kind::Float)))
            } else {
                pooled
            };
            pooled.flatten(1, -1)
        })
    }
    fn macs_per_image(&self, side: i64, tap: Tap) -> u64 {
        super::macs(self.arch, side, tap)
    }
    fn kind(&self) -> Kind {
        self.kind
    }
}
