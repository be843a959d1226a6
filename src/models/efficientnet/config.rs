//! The layout of torchvision's EfficientNets, computed as `_efficientnet_conf`,
//! `MBConvConfig` / `FusedMBConvConfig` and `EfficientNet.__init__` compute it: channels
//! after the width multiplier and `_make_divisible`, blocks per stage after the depth
//! multiplier, each block's convolutions, squeeze-excitation and stochastic-depth
//! probability, where the taps are, and the multiply-accumulates.
use crate::models::arch::Arch;
use crate::models::family::Tap;

/// torchvision's `_make_divisible(v, divisor)`: the nearest multiple of `divisor`, at least
/// `divisor`, and not more than 10% below `v`.
pub(super) fn make_divisible(v: f64, divisor: i64) -> i64 {
    let new_v = divisor.max((v + divisor as f64 / 2.0) as i64 / divisor * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v + divisor
    } else {
        new_v
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum BlockType {
    /// Inverted residual: expand 1x1, depthwise kxk, squeeze-excitation, project 1x1.
    MBConv,
    /// V2's: the expand and depthwise convs fused into one kxk, no squeeze-excitation.
    Fused,
}

/// One row of torchvision's `inverted_residual_setting` (Table 1 of the EfficientNet
/// paper, Table 4 of V2's), with the width and depth multipliers applied.
#[derive(Debug, Clone, Copy)]
pub(super) struct StageCfg {
    pub(super) block: BlockType,
    pub(super) expand: f64,
    pub(super) kernel: i64,
    pub(super) stride: i64,
    pub(super) c_in: i64,
    pub(super) c_out: i64,
    pub(super) layers: usize,
}

/// One convolution with its BatchNorm (`Conv2dNormActivation`, bias-free); padding is
/// `(kernel - 1) / 2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ConvCfg {
    pub(super) c_in: i64,
    pub(super) c_out: i64,
    pub(super) kernel: i64,
    pub(super) stride: i64,
    pub(super) groups: i64,
    /// SiLU after the BatchNorm.
    pub(super) act: bool,
}

impl ConvCfg {
    pub(super) fn padding(&self) -> i64 {
        (self.kernel - 1) / 2
    }
    /// Output side and multiply-accumulates for a square input of side `side`.
    pub(super) fn cost(&self, side: i64) -> (i64, u64) {
        let out = (side + 2 * self.padding() - self.kernel) / self.stride + 1;
        let per_pixel = self.c_out * (self.c_in / self.groups) * self.kernel * self.kernel;
        (out, (per_pixel * out * out) as u64)
    }
}

/// One entry of a block's `nn.Sequential`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum OpCfg {
    Conv(ConvCfg),
    /// `SqueezeExcitation(channels, squeeze)`: two 1x1 convs with bias on the pooled map.
    Se {
        channels: i64,
        squeeze: i64,
    },
}

/// One MBConv or FusedMBConv.
#[derive(Debug, Clone)]
pub(super) struct BlockCfg {
    pub(super) ops: Vec<OpCfg>,
    /// Stride 1 and as many channels out as in: the block adds its input.
    pub(super) residual: bool,
    /// The stochastic-depth drop probability: 0.2 x (block index / blocks in all stages).
    pub(super) sd_prob: f64,
}

/// An architecture's whole layout.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) stages: Vec<StageCfg>,
    /// Channels of the final 1x1 conv.
    pub(super) last_channel: i64,
    /// V2 (BatchNorm eps 1e-3, FusedMBConv) rather than V1 (eps 1e-5).
    pub(super) v2: bool,
}

/// torchvision's default `stochastic_depth_prob`, which none of these models overrides.
const STOCHASTIC_DEPTH_PROB: f64 = 0.2;

impl Config {
    pub(super) fn of(arch: Arch) -> Config {
        match arch {
            Arch::EfficientnetB0 => Config::v1(1.0, 1.0),
            Arch::EfficientnetB1 => Config::v1(1.0, 1.1),
            Arch::EfficientnetB2 => Config::v1(1.1, 1.2),
            Arch::EfficientnetB3 => Config::v1(1.2, 1.4),
            Arch::EfficientnetV2S => Config::v2s(),
            other => panic!("{other} is not an EfficientNet"),
        }
    }

    /// `_efficientnet_conf("efficientnet_bN")`: `MBConvConfig` rows scaled by the width
    /// and depth multipliers; the final conv has 4x the last stage's channels.
    fn v1(width: f64, depth: f64) -> Config {
        let row = |expand: f64, kernel, stride, c_in: i64, c_out: i64, layers: usize| StageCfg {
            block: BlockType::MBConv,
            expand,
            kernel,
            stride,
            c_in: make_divisible(c_in as f64 * width, 8),
            c_out: make_divisible(c_out as f64 * width, 8),
            layers: (layers as f64 * depth).ceil() as usize,
        };
        let stages = vec![
            row(1.0, 3, 1, 32, 16, 1),
            row(6.0, 3, 2, 16, 24, 2),
            row(6.0, 5, 2, 24, 40, 2),
            row(6.0, 3, 2, 40, 80, 3),
            row(6.0, 5, 1, 80, 112, 3),
            row(6.0, 5, 2, 112, 192, 4),
            row(6.0, 3, 1, 192, 320, 1),
        ];
        let last_channel = 4 * stages[6].c_out;
        Config { stages, last_channel, v2: false }
    }

    /// `_efficientnet_conf("efficientnet_v2_s")`: three FusedMBConv stages, three MBConv.
    /// (Its `MBConvConfig` rows pass through `_make_divisible` at width 1, which keeps
    /// these multiples of 8.)
    fn v2s() -> Config {
        let row = |block, expand: f64, kernel, stride, c_in, c_out, layers| StageCfg {
            block,
            expand,
            kernel,
            stride,
            c_in,
            c_out,
            layers,
        };
        use BlockType::{Fused, MBConv};
        let stages = vec![
            row(Fused, 1.0, 3, 1, 24, 24, 2),
            row(Fused, 4.0, 3, 2, 24, 48, 4),
            row(Fused, 4.0, 3, 2, 48, 64, 4),
            row(MBConv, 4.0, 3, 2, 64, 128, 6),
            row(MBConv, 6.0, 3, 1, 128, 160, 9),
            row(MBConv, 6.0, 3, 2, 160, 256, 15),
        ];
        Config { stages, last_channel: 1280, v2: true }
    }

    /// BatchNorm epsilon: torchvision's default for V1, `eps=1e-03` for V2 (momentum is
    /// the default 0.1 for both).
    pub(super) fn bn_eps(&self) -> f64 {
        if self.v2 {
            1e-3
        } else {
            1e-5
        }
    }

    /// `features.0`: 3x3 stride 2 to the first stage's input channels, SiLU.
    pub(super) fn stem(&self) -> ConvCfg {
        ConvCfg { c_in: 3, c_out: self.stages[0].c_in, kernel: 3, stride: 2, groups: 1, act: true }
    }

    /// The last `features.N`: 1x1 to `last_channel`, SiLU.
    pub(super) fn head(&self) -> ConvCfg {
        let c_in = self.stages.last().unwrap().c_out;
        ConvCfg { c_in, c_out: self.last_channel, kernel: 1, stride: 1, groups: 1, act: true }
    }

    /// Every block of every stage, as `EfficientNet.__init__` and `MBConv` /
    /// `FusedMBConv.__init__` lay them out.
    pub(super) fn blocks(&self) -> Vec<Vec<BlockCfg>> {
        let total: usize = self.stages.iter().map(|s| s.layers).sum();
        let mut id = 0;
        self.stages
            .iter()
            .map(|s| {
                (0..s.layers)
                    .map(|i| {
                        let (c_in, stride) = if i == 0 { (s.c_in, s.stride) } else { (s.c_out, 1) };
                        let sd_prob = STOCHASTIC_DEPTH_PROB * id as f64 / total as f64;
                        id += 1;
                        BlockCfg { ops: block_ops(s, c_in, stride), residual: stride == 1 && c_in == s.c_out, sd_prob }
                    })
                    .collect()
            })
            .collect()
    }

    /// The reduction of the input side after each `features.N`.
    pub(super) fn reductions(&self) -> Vec<i64> {
        let mut r = vec![2];
        for s in &self.stages {
            r.push(r.last().unwrap() * s.stride);
        }
        r.push(*r.last().unwrap());
        r
    }

    /// The `features` index each tap reads: the last at 1/4, 1/8 and 1/16, then the final conv.
    pub(super) fn tap_indices(&self) -> [usize; 4] {
        let r = self.reductions();
        let last_at = |red: i64| r.iter().rposition(|&x| x == red).expect("a stage at each reduction");
        [last_at(4), last_at(8), last_at(16), r.len() - 1]
    }

    /// Channels at each tap.
    pub(super) fn widths(&self) -> [i64; 4] {
        let taps = self.tap_indices();
        let out = |i: usize| if i == self.stages.len() + 1 { self.last_channel } else { self.stages[i - 1].c_out };
        taps.map(out)
    }

    /// Conv and squeeze-excitation multiply-accumulates per `side` x `side` image up to
    /// `tap` (activations, BatchNorm, adds and pooling left out; no classifier).
    pub(super) fn macs(&self, side: i64, tap: Tap) -> u64 {
        let end = self.tap_indices()[tap.index()];
        let (mut s, mut macs) = self.stem().cost(side);
        for stage in self.blocks().iter().take(end) {
            for op in stage.iter().flat_map(|b| &b.ops) {
                match op {
                    OpCfg::Conv(c) => {
                        let (out, m) = c.cost(s);
                        (s, macs) = (out, macs + m);
                    }
                    OpCfg::Se { channels, squeeze } => macs += 2 * (channels * squeeze) as u64,
                }
            }
        }
        if end == self.stages.len() + 1 {
            macs += self.head().cost(s).1;
        }
        macs
    }
}

/// The `block` of one MBConv or FusedMBConv with `c_in` channels in and `stride`.
fn block_ops(s: &StageCfg, c_in: i64, stride: i64) -> Vec<OpCfg> {
    let conv =
        |c_in, c_out, kernel, stride, groups, act| OpCfg::Conv(ConvCfg { c_in, c_out, kernel, stride, groups, act });
    // `cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)`.
    let mid = make_divisible(c_in as f64 * s.expand, 8);
    let mut ops = Vec::new();
    match s.block {
        BlockType::MBConv => {
            if mid != c_in {
                ops.push(conv(c_in, mid, 1, 1, 1, true));
            }
            ops.push(conv(mid, mid, s.kernel, stride, mid, true));
            ops.push(OpCfg::Se { channels: mid, squeeze: (c_in / 4).max(1) });
            ops.push(conv(mid, s.c_out, 1, 1, 1, false));
        }
        BlockType::Fused => {
            if mid != c_in {
                ops.push(conv(c_in, mid, s.kernel, stride, 1, true));
                ops.push(conv(mid, s.c_out, 1, 1, 1, false));
            } else {
                ops.push(conv(c_in, s.c_out, s.kernel, stride, 1, true));
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Arch; 5] =
        [Arch::EfficientnetB0, Arch::EfficientnetB1, Arch::EfficientnetB2, Arch::EfficientnetB3, Arch::EfficientnetV2S];
    #[test]
    fn make_divisible_is_torchvisions() {
        // _make_divisible(v, 8) from torchvision 0.26.
        for (v, want) in
            [(26.4, 24), (44.0, 48), (123.2, 120), (134.4, 136), (352.0, 352), (3.0, 8), (12.0, 16), (76.8, 80)]
        {
            assert_eq!(make_divisible(v, 8), want, "{v}");
        }
    }

    #[test]
    fn layouts_are_torchvisions() {
        // From torchvision 0.26: len(features[i]) for each stage, the widths at each tap.
        let want: [(Arch, &[usize], [i64; 4]); 5] = [
            (Arch::EfficientnetB0, &[1, 2, 2, 3, 3, 4, 1], [24, 40, 112, 1280]),
            (Arch::EfficientnetB1, &[2, 3, 3, 4, 4, 5, 2], [24, 40, 112, 1280]),
            (Arch::EfficientnetB2, &[2, 3, 3, 4, 4, 5, 2], [24, 48, 120, 1408]),
            (Arch::EfficientnetB3, &[2, 3, 3, 5, 5, 6, 2], [32, 48, 136, 1536]),
            (Arch::EfficientnetV2S, &[2, 4, 4, 6, 9, 15], [48, 64, 160, 1280]),
        ];
        for (arch, layers, widths) in want {
            let cfg = Config::of(arch);
            let got: Vec<usize> = cfg.blocks().iter().map(|s| s.len()).collect();
            assert_eq!(got, layers, "{arch}");
            assert_eq!(cfg.widths(), widths, "{arch}");
            assert_eq!(arch.spec().widths, widths, "{arch}");
        }
        assert_eq!(Config::of(Arch::EfficientnetB0).tap_indices(), [2, 3, 5, 8]);
        assert_eq!(Config::of(Arch::EfficientnetV2S).tap_indices(), [2, 3, 5, 7]);
    }

    #[test]
    fn last_stage_is_the_one_over_32_part() {
        for arch in ALL {
            let cfg = Config::of(arch);
            let r = cfg.reductions();
            let want: Vec<String> =
                r.iter().enumerate().filter(|(_, &x)| x == 32).map(|(i, _)| format!("features.{i}.")).collect();
            assert_eq!(arch.spec().last_stage, want.as_slice(), "{arch}");
        }
    }

    #[test]
    fn stochastic_depth_grows_linearly_to_0_2() {
        let blocks = Config::of(Arch::EfficientnetB0).blocks();
        let p: Vec<f64> = blocks.iter().flatten().map(|b| b.sd_prob).collect();
        assert_eq!(p.len(), 16);
        assert_eq!(p[0], 0.0);
        assert!((p[15] - 0.2 * 15.0 / 16.0).abs() < 1e-12);
    }

    #[test]
    fn macs_match_the_published_counts() {
        // torchvision's `_ops` (GFLOPS, counted as multiply-accumulates) at the weights'
        // crop size include the classifier's linear layer, which features leave out.
        for (arch, side, published) in [
            (Arch::EfficientnetB0, 224, 0.386e9),
            (Arch::EfficientnetB1, 240, 0.687e9),
            (Arch::EfficientnetB2, 288, 1.088e9),
            (Arch::EfficientnetB3, 300, 1.827e9),
            (Arch::EfficientnetV2S, 384, 8.366e9),
        ] {
            let cfg = Config::of(arch);
            let ours = cfg.macs(side, Tap::Layer4) as f64 + cfg.last_channel as f64 * 1000.0;
            assert!((ours / published - 1.0).abs() < 0.01, "{arch}: {ours} vs {published}");
            let l3 = cfg.macs(side, Tap::Layer3) as f64;
            assert!(l3 > 0.0 && l3 < ours, "{arch}");
        }
        // Exactly torchvision's conv + SE count (torch.utils.flop_counter / 2, less the fc).
        assert_eq!(Config::of(Arch::EfficientnetB0).macs(224, Tap::Layer4), 385_814_752 - 1_280_000);
        assert_eq!(Config::of(Arch::EfficientnetV2S).macs(384, Tap::Layer4), 8_365_617_152 - 1_280_000);
    }
}
