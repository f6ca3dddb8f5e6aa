//! EfficientNet-Lite0, -Lite1 and -Lite2 ("EfficientNet: Rethinking Model Scaling for
//! Convolutional Neural Networks", Tan & Le 2019, <https://arxiv.org/abs/1905.11946>; the
//! "Lite" variant of TensorFlow's `efficientnet/lite`: ReLU6, no squeeze-excite, fixed stem
//! and head).
//!
//! Mirrors PyPI `efficientnet-lite-pytorch` 0.1.0 and its parameter names (`_conv_stem`,
//! `_bn0`, `_blocks.N._{expand,depthwise,project}_conv`, `_bn{0,1,2}`, `_conv_head`, `_bn1`,
//! `_fc`): TensorFlow "same" padding, batch-norm epsilon 1e-3 (folded into the convolutions at
//! load time). One description of the network, scaled by the reference's width and depth
//! multipliers (its `round_filters` / `round_repeats`); as in the reference's
//! `fix_head_stem`, the stem (32 channels), the head (1280) and the repeats of the first and
//! last stages are not scaled. Taps: `stem`, `block0` ... `block15` (Lite1, Lite2:
//! `block20`), `head`, `logits`.

use candle_core::Result;
use candle_nn::VarBuilder;

use super::engine::Engine;
use super::layers::{conv_bn_layer, linear, ConvSpec};
use super::network::{LastBlock, Layer, NetworkBuilder, TapKind};
use super::{Arch, Backbone, EmbeddingTap, TimmLayout, TimmNames};
use crate::kernels::{Activation, Padding};

const BN_EPS: f64 = 1e-3;
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// The channel counts are rounded to multiples of this (the reference's `depth_divisor`).
const DIVISOR: usize = 8;

/// One stage of MBConv blocks: (repeats, kernel, first stride, expand ratio, in, out).
pub type Stage = (usize, usize, usize, usize, usize, usize);

/// The stages at Lite0's scale (the reference's `blocks_args`).
const STAGES: [Stage; 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// The scaling of one EfficientNet-Lite (the reference's `params_dict`: width, depth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EfficientNetLiteConfig {
    pub arch: Arch,
    /// Multiplier of the blocks' channels (the stem and head stay fixed).
    pub width: f64,
    /// Multiplier of the stages' repeats (the first and last stages stay fixed).
    pub depth: f64,
    pub num_classes: usize,
}

impl EfficientNetLiteConfig {
    /// EfficientNet-Lite0: width 1.0, depth 1.0 (native resolution 224).
    pub const fn lite0() -> Self {
        Self {
            arch: Arch::EfficientNetLite0,
            width: 1.0,
            depth: 1.0,
            num_classes: 1000,
        }
    }

    /// EfficientNet-Lite1: width 1.0, depth 1.1 (native resolution 240).
    pub const fn lite1() -> Self {
        Self {
            arch: Arch::EfficientNetLite1,
            depth: 1.1,
            ..Self::lite0()
        }
    }

    /// EfficientNet-Lite2: width 1.1, depth 1.2 (native resolution 260).
    pub const fn lite2() -> Self {
        Self {
            arch: Arch::EfficientNetLite2,
            width: 1.1,
            depth: 1.2,
            ..Self::lite0()
        }
    }

    /// The reference's `round_filters`: `filters` times the width, to the nearest multiple of
    /// 8 (at least 8), one more multiple when that rounded down by over 10%.
    pub fn round_filters(&self, filters: usize) -> usize {
        let scaled = filters as f64 * self.width;
        // Python's `int(x + 4) // 8 * 8`: truncation of a positive number.
        let mut rounded =
            ((scaled + DIVISOR as f64 / 2.0) as usize / DIVISOR * DIVISOR).max(DIVISOR);
        if (rounded as f64) < 0.9 * scaled {
            rounded += DIVISOR;
        }
        rounded
    }

    /// The reference's `round_repeats`: `ceil(depth * repeats)`.
    pub fn round_repeats(&self, repeats: usize) -> usize {
        (self.depth * repeats as f64).ceil() as usize
    }

    /// Channels of the last stage's output, the head convolution's input (320; Lite2: 352).
    pub fn last_stage_channels(&self) -> usize {
        self.round_filters(STAGES[STAGES.len() - 1].5)
    }

    /// Every stage as (repeats, kernel, first stride, expand ratio, in, out) at this scale.
    pub fn stages(&self) -> Vec<Stage> {
        let last = STAGES.len() - 1;
        STAGES
            .iter()
            .enumerate()
            .map(|(i, &(repeats, kernel, stride, expand, in_c, out_c))| {
                let fixed = i == 0 || i == last;
                let repeats = if fixed {
                    repeats
                } else {
                    self.round_repeats(repeats)
                };
                // The first stage reads the fixed stem.
                let in_c = if i == 0 {
                    STEM_CHANNELS
                } else {
                    self.round_filters(in_c)
                };
                (
                    repeats,
                    kernel,
                    stride,
                    expand,
                    in_c,
                    self.round_filters(out_c),
                )
            })
            .collect()
    }
}

/// A convolution with TensorFlow "same" padding.
fn spec(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> ConvSpec {
    ConvSpec {
        in_channels,
        out_channels,
        kernel,
        stride,
        padding: Padding::TfSame,
        groups: 1,
    }
}

/// Appends a mobile inverted bottleneck (`vb`): 1x1 expand, depthwise kxk, 1x1 project, and a
/// residual when the shape is kept; its output is tap `tap`.
fn push_mbconv(
    net: &mut NetworkBuilder,
    vb: VarBuilder,
    (kernel, stride, expand_ratio): (usize, usize, usize),
    (in_channels, out_channels): (usize, usize),
    tap: String,
) -> Result<()> {
    let hidden = in_channels * expand_ratio;
    let bn = |conv: &str, bn: &str| (vb.pp(conv), vb.pp(bn));
    let mut layers = Vec::new();
    if expand_ratio != 1 {
        let expand = spec(in_channels, hidden, 1, 1);
        layers.push(conv_bn_layer(
            bn("_expand_conv", "_bn0"),
            expand,
            BN_EPS,
            Activation::Relu6,
        )?);
    }
    let depthwise = ConvSpec {
        groups: hidden,
        ..spec(hidden, hidden, kernel, stride)
    };
    layers.push(conv_bn_layer(
        bn("_depthwise_conv", "_bn1"),
        depthwise,
        BN_EPS,
        Activation::Relu6,
    )?);
    let project = spec(hidden, out_channels, 1, 1);
    layers.push(conv_bn_layer(
        bn("_project_conv", "_bn2"),
        project,
        BN_EPS,
        Activation::Identity,
    )?);
    if stride == 1 && in_channels == out_channels {
        net.push(Layer::ResidualStart);
        layers.push(Layer::identity_add());
    }
    let last = layers.pop();
    net.extend(layers);
    if let Some(last) = last {
        net.push_tap(last, tap, TapKind::Block);
    }
    Ok(())
}

/// An EfficientNet-Lite with every block tapped.
pub struct EfficientNetLite {
    engine: Engine,
    blocks: usize,
    config: EfficientNetLiteConfig,
}

impl EfficientNetLite {
    /// Builds the network `config` describes from `efficientnet-lite-pytorch` parameter names.
    pub fn new(vb: VarBuilder, config: EfficientNetLiteConfig) -> Result<Self> {
        let mut net = NetworkBuilder::default();
        let stem = spec(3, STEM_CHANNELS, 3, 2);
        let stem = conv_bn_layer(
            (vb.pp("_conv_stem"), vb.pp("_bn0")),
            stem,
            BN_EPS,
            Activation::Relu6,
        )?;
        net.push_tap(stem, "stem", TapKind::Stem);
        let mut blocks = 0;
        for (repeats, kernel, stride, expand, in_c, out_c) in config.stages() {
            for r in 0..repeats {
                let (stride, in_c) = if r == 0 { (stride, in_c) } else { (1, out_c) };
                let vb_block = vb.pp("_blocks").pp(blocks);
                let shape = (kernel, stride, expand);
                push_mbconv(
                    &mut net,
                    vb_block,
                    shape,
                    (in_c, out_c),
                    format!("block{blocks}"),
                )?;
                blocks += 1;
            }
        }
        let head = spec(config.last_stage_channels(), HEAD_CHANNELS, 1, 1);
        let head = conv_bn_layer(
            (vb.pp("_conv_head"), vb.pp("_bn1")),
            head,
            BN_EPS,
            Activation::Relu6,
        )?;
        net.push_tap(head, "head", TapKind::Head);
        net.push(Layer::GlobalAvgPool);
        let fc = linear(
            vb.pp("_fc"),
            (HEAD_CHANNELS, config.num_classes),
            Activation::Identity,
        )?;
        net.push_tap(Layer::Linear(fc), "logits", TapKind::Logits);
        Ok(Self {
            engine: Engine::build(net)?,
            blocks,
            config,
        })
    }
}

impl Backbone for EfficientNetLite {
    fn arch(&self) -> Arch {
        self.config.arch
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn embedding_dim(&self) -> usize {
        HEAD_CHANNELS
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    /// timm's `tf_efficientnet_liteN` (TensorFlow padding, batch-norm epsilon 1e-3): its
    /// stem, `blocks.STAGE.INDEX` (`conv_dw`, `conv_pw` in the first stage's depthwise-separable
    /// block; `conv_pw`, `conv_dw`, `conv_pwl` in the others) and head.
    fn timm_layout(&self) -> Option<TimmLayout> {
        let model = match self.config.arch {
            Arch::EfficientNetLite0 => "tf_efficientnet_lite0",
            Arch::EfficientNetLite1 => "tf_efficientnet_lite1",
            Arch::EfficientNetLite2 => "tf_efficientnet_lite2",
            _ => return None,
        };
        let pair = |conv: &str, bn: &str| (conv.to_string(), bn.to_string());
        let mut convs = vec![pair("conv_stem", "bn1")];
        for (stage, &(repeats, _, _, expand, _, _)) in self.config.stages().iter().enumerate() {
            for index in 0..repeats {
                let at = |name: &str| format!("blocks.{stage}.{index}.{name}");
                let names: &[(&str, &str)] = if expand == 1 {
                    &[("conv_dw", "bn1"), ("conv_pw", "bn2")]
                } else {
                    &[("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")]
                };
                convs.extend(names.iter().map(|(c, b)| (at(c), at(b))));
            }
        }
        convs.push(pair("conv_head", "bn2"));
        Some(TimmLayout {
            model,
            names: TimmNames::Listed(convs),
            bn_eps: BN_EPS,
            classifier: "classifier",
            setup: None,
        })
    }

    /// The head convolution (1x1, 320 (Lite2: 352) -> 1280, ReLU6): Keras' "top" block.
    fn last_block(&self) -> Option<LastBlock> {
        let last = self.blocks.checked_sub(1)?;
        self.engine
            .network()
            .last_block(&format!("block{last}"), "head")
    }

    /// The head's features averaged over space: `[B, 1280]`.
    fn embedding_tap(&self) -> EmbeddingTap<'_> {
        EmbeddingTap {
            name: "head",
            pooled: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block's (in, out, stride), as the stages unroll into blocks.
    fn blocks(config: EfficientNetLiteConfig) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        for (repeats, _, stride, _, in_c, out_c) in config.stages() {
            out.push((in_c, out_c, stride));
            out.extend(std::iter::repeat_n((out_c, out_c, 1), repeats - 1));
        }
        out
    }

    #[test]
    fn scaling_gives_the_reference_blocks() {
        // `[(b._block_args.input_filters, .output_filters, .stride) for b in m._blocks]` of
        // efficientnet-lite-pytorch 0.1.0's `EfficientNet.from_name(...)`.
        let lite0 = blocks(EfficientNetLiteConfig::lite0());
        assert_eq!(lite0.len(), 16);
        assert_eq!(lite0[15], (192, 320, 1));
        let lite1 = blocks(EfficientNetLiteConfig::lite1());
        let want1 = [
            (32, 16, 1),
            (16, 24, 2),
            (24, 24, 1),
            (24, 24, 1),
            (24, 40, 2),
            (40, 40, 1),
            (40, 40, 1),
            (40, 80, 2),
            (80, 80, 1),
            (80, 80, 1),
            (80, 80, 1),
            (80, 112, 1),
            (112, 112, 1),
            (112, 112, 1),
            (112, 112, 1),
            (112, 192, 2),
            (192, 192, 1),
            (192, 192, 1),
            (192, 192, 1),
            (192, 192, 1),
            (192, 320, 1),
        ];
        assert_eq!(lite1, want1);
        let lite2 = blocks(EfficientNetLiteConfig::lite2());
        let want2 = [
            (32, 16, 1),
            (16, 24, 2),
            (24, 24, 1),
            (24, 24, 1),
            (24, 48, 2),
            (48, 48, 1),
            (48, 48, 1),
            (48, 88, 2),
            (88, 88, 1),
            (88, 88, 1),
            (88, 88, 1),
            (88, 120, 1),
            (120, 120, 1),
            (120, 120, 1),
            (120, 120, 1),
            (120, 208, 2),
            (208, 208, 1),
            (208, 208, 1),
            (208, 208, 1),
            (208, 208, 1),
            (208, 352, 1),
        ];
        assert_eq!(lite2, want2);
        assert_eq!(EfficientNetLiteConfig::lite2().last_stage_channels(), 352);
    }

    #[test]
    fn round_filters_matches_the_reference() {
        // Values of efficientnet-lite-pytorch's `round_filters(filters, GlobalParams(width,
        // depth_divisor=8))`.
        let at = |width| EfficientNetLiteConfig {
            width,
            ..EfficientNetLiteConfig::lite0()
        };
        // 112 * 1.1 = 123.2 -> int(127.2) // 8 * 8 = 120, within 10%: kept.
        assert_eq!(at(1.1).round_filters(112), 120);
        // 4 * 1.1 = 4.4 -> 0, at least the divisor.
        assert_eq!(at(1.1).round_filters(4), 8);
        assert_eq!(at(0.3).round_filters(40), 16);
        assert_eq!(at(0.3).round_filters(112), 32);
        // 32 * 0.35 = 11.2 -> 8, more than 10% below: one multiple more.
        assert_eq!(at(0.35).round_filters(32), 16);
    }
}
