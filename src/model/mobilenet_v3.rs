//! MobileNetV3-Large ("Searching for MobileNetV3", Howard et al. 2019,
//! <https://arxiv.org/abs/1905.02244>), as timm builds `mobilenetv3_large_100`.
//!
//! timm's parameter names: `conv_stem`, `bn1`, `blocks.{stage}.{i}.{conv_dw,conv_pw,conv_pwl,
//! conv}` with `bn{1,2,3}`, `se.conv_{reduce,expand}` (squeeze-excite, with biases),
//! `conv_head` (1x1, with a bias, applied *after* global pooling), `classifier`. Batch norm
//! (epsilon 1e-5) is folded into the convolutions at load time; padding is symmetric. Taps:
//! `stem`, `block0` ... `block15` (each block's output), `head` (the last 1x1 convolution,
//! 960 channels), `pre_logits` (`conv_head` after hard-swish, 1280 features), `logits`.

use candle_core::Result;
use candle_nn::VarBuilder;

use super::engine::Engine;
use super::layers::{conv_bn, linear, pointwise_as_linear, ConvSpec};
use super::network::{Layer, NetworkBuilder, SqueezeExciteLayer, TapKind};
use super::{Arch, Backbone, EmbeddingTap, TimmLayout, TimmNames};
use crate::kernels::{Activation, Padding};

const BN_EPS: f64 = 1e-5;
const STEM_CHANNELS: usize = 16;

/// What a block of the architecture table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    /// Depthwise kxk, (squeeze-excite), pointwise 1x1 (timm `ds`).
    DepthwiseSeparable,
    /// Pointwise expand, depthwise kxk, (squeeze-excite), pointwise project (timm `ir`).
    InvertedResidual,
    /// One convolution, batch norm and activation (timm `cn`).
    ConvBnAct,
}

/// One row of the table: kind, repeats, kernel, first stride, expansion, output channels,
/// squeeze-excite, hard-swish (else ReLU).
type StageRow = (BlockKind, usize, usize, usize, f64, usize, bool, bool);

/// timm's `mobilenetv3_large` architecture definition, stage by stage.
const LARGE: [StageRow; 10] = {
    use BlockKind::*;
    [
        (DepthwiseSeparable, 1, 3, 1, 1.0, 16, false, false),
        (InvertedResidual, 1, 3, 2, 4.0, 24, false, false),
        (InvertedResidual, 1, 3, 1, 3.0, 24, false, false),
        (InvertedResidual, 3, 5, 2, 3.0, 40, true, false),
        (InvertedResidual, 1, 3, 2, 6.0, 80, false, true),
        (InvertedResidual, 1, 3, 1, 2.5, 80, false, true),
        (InvertedResidual, 2, 3, 1, 2.3, 80, false, true),
        (InvertedResidual, 2, 3, 1, 6.0, 112, true, true),
        (InvertedResidual, 3, 5, 2, 6.0, 160, true, true),
        (ConvBnAct, 1, 1, 1, 1.0, 960, false, true),
    ]
};

/// timm's stage index of each table row (`blocks.{stage}.{i}`).
const STAGE_OF_ROW: [usize; 10] = [0, 1, 1, 2, 3, 3, 3, 4, 5, 6];

/// timm's `make_divisible`: the nearest multiple of 8, never below 8 nor 10% below `v`.
fn make_divisible(v: f64) -> usize {
    let divisor = 8.0;
    let mut new = (((v + divisor / 2.0) as usize) / 8 * 8).max(8);
    if (new as f64) < 0.9 * v {
        new += 8;
    }
    new
}

/// Sizes of a MobileNetV3-Large; [`MobileNetV3Config::large_100`] is the real one, a smaller
/// multiplier makes tiny test models of the same structure (as timm's
/// `_gen_mobilenet_v3(..., channel_multiplier)`).
#[derive(Debug, Clone, PartialEq)]
pub struct MobileNetV3Config {
    /// Channel multiplier (1.0 for `mobilenetv3_large_100`).
    pub multiplier: f64,
    /// Features of `conv_head` (1280).
    pub head_features: usize,
    pub num_classes: usize,
}

impl MobileNetV3Config {
    pub fn large_100() -> Self {
        Self {
            multiplier: 1.0,
            head_features: 1280,
            num_classes: 1000,
        }
    }

    fn channels(&self, c: usize) -> usize {
        make_divisible(c as f64 * self.multiplier)
    }
}

/// Squeeze-and-excitation `se.conv_reduce` / `se.conv_expand` on `channels` channels.
fn squeeze_excite(vb: VarBuilder, channels: usize) -> Result<Layer> {
    let reduced = make_divisible(channels as f64 * 0.25);
    let none = Activation::Identity;
    Ok(Layer::SqueezeExcite(SqueezeExciteLayer {
        reduce: pointwise_as_linear(vb.pp("conv_reduce"), (channels, reduced), none)?,
        expand: pointwise_as_linear(vb.pp("conv_expand"), (reduced, channels), none)?,
    }))
}

/// How a convolution of a block is activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    None,
    Relu,
    HardSwish,
}

/// Convolution `name` with batch norm `bn` (in, out, kernel, stride, groups), then `act`:
/// ReLU fused into the convolution, hard-swish as a layer of its own.
fn conv_layers(
    vb: &VarBuilder,
    (name, bn): (&str, &str),
    (i, o, k, s, groups): (usize, usize, usize, usize, usize),
    act: Act,
) -> Result<Vec<Layer>> {
    let spec = ConvSpec {
        in_channels: i,
        out_channels: o,
        kernel: k,
        stride: s,
        padding: Padding::Symmetric(k / 2),
        groups,
    };
    let fused = if act == Act::Relu {
        Activation::Relu
    } else {
        Activation::Identity
    };
    let conv = conv_bn((vb.pp(name), vb.pp(bn)), spec, BN_EPS, fused)?;
    let mut layers = vec![Layer::Conv(conv)];
    if act == Act::HardSwish {
        layers.push(Layer::HardSwish);
    }
    Ok(layers)
}

/// One row of the table, as one block to load.
#[derive(Debug, Clone, Copy)]
struct BlockSpec {
    kind: BlockKind,
    kernel: usize,
    stride: usize,
    expansion: f64,
    in_c: usize,
    out_c: usize,
    se: bool,
    hard_swish: bool,
}

/// Appends the layers of one block (`vb`) to `net`, its output as tap `tap` of `kind`.
fn push_block(
    net: &mut NetworkBuilder,
    vb: VarBuilder,
    b: BlockSpec,
    tap: (String, TapKind),
) -> Result<()> {
    let act = if b.hard_swish {
        Act::HardSwish
    } else {
        Act::Relu
    };
    let (k, s, in_c, out_c) = (b.kernel, b.stride, b.in_c, b.out_c);
    let mut layers = Vec::new();
    match b.kind {
        BlockKind::DepthwiseSeparable => {
            layers.extend(conv_layers(
                &vb,
                ("conv_dw", "bn1"),
                (in_c, in_c, k, s, in_c),
                act,
            )?);
            if b.se {
                layers.push(squeeze_excite(vb.pp("se"), in_c)?);
            }
            layers.extend(conv_layers(
                &vb,
                ("conv_pw", "bn2"),
                (in_c, out_c, 1, 1, 1),
                Act::None,
            )?);
        }
        BlockKind::InvertedResidual => {
            let mid = make_divisible(in_c as f64 * b.expansion);
            layers.extend(conv_layers(
                &vb,
                ("conv_pw", "bn1"),
                (in_c, mid, 1, 1, 1),
                act,
            )?);
            layers.extend(conv_layers(
                &vb,
                ("conv_dw", "bn2"),
                (mid, mid, k, s, mid),
                act,
            )?);
            if b.se {
                layers.push(squeeze_excite(vb.pp("se"), mid)?);
            }
            layers.extend(conv_layers(
                &vb,
                ("conv_pwl", "bn3"),
                (mid, out_c, 1, 1, 1),
                Act::None,
            )?);
        }
        BlockKind::ConvBnAct => {
            layers.extend(conv_layers(
                &vb,
                ("conv", "bn1"),
                (in_c, out_c, k, s, 1),
                act,
            )?);
        }
    }
    let residual = s == 1 && in_c == out_c && b.kind != BlockKind::ConvBnAct;
    if residual {
        net.push(Layer::ResidualStart);
        layers.push(Layer::identity_add());
    }
    let last = layers.pop();
    for layer in layers {
        net.push(layer);
    }
    if let Some(last) = last {
        net.push_tap(last, tap.0, tap.1);
    }
    Ok(())
}

/// MobileNetV3-Large with every block tapped.
pub struct MobileNetV3 {
    config: MobileNetV3Config,
    engine: Engine,
}

impl MobileNetV3 {
    /// Builds the network from timm-named parameters.
    pub fn new(vb: VarBuilder, config: MobileNetV3Config) -> Result<Self> {
        let stem_channels = if config.multiplier < 0.75 {
            STEM_CHANNELS
        } else {
            config.channels(STEM_CHANNELS)
        };
        let mut net = NetworkBuilder::default();
        let mut stem = conv_layers(
            &vb,
            ("conv_stem", "bn1"),
            (3, stem_channels, 3, 2, 1),
            Act::HardSwish,
        )?;
        let stem_act = stem.pop();
        net.extend(stem);
        if let Some(layer) = stem_act {
            net.push_tap(layer, "stem", TapKind::Stem);
        }
        let blocks: usize = LARGE.iter().map(|row| row.1).sum();
        let mut in_c = stem_channels;
        let mut index_in_stage = [0usize; 7];
        for (row, &(kind, repeats, kernel, first_stride, expansion, out, se, hard_swish)) in
            LARGE.iter().enumerate()
        {
            let stage = STAGE_OF_ROW[row];
            let out_c = config.channels(out);
            for r in 0..repeats {
                let spec = BlockSpec {
                    kind,
                    kernel,
                    stride: if r == 0 { first_stride } else { 1 },
                    expansion,
                    in_c,
                    out_c,
                    se,
                    hard_swish,
                };
                let vb_block = vb.pp(format!("blocks.{stage}.{}", index_in_stage[stage]));
                let i: usize = index_in_stage.iter().sum();
                index_in_stage[stage] += 1;
                // The last block, a plain convolution, is the head.
                let tap = if i + 1 == blocks {
                    ("head".to_string(), TapKind::Head)
                } else {
                    (format!("block{i}"), TapKind::Block)
                };
                push_block(&mut net, vb_block, spec, tap)?;
                in_c = out_c;
            }
        }
        net.push(Layer::GlobalAvgPool);
        let features = config.head_features;
        let none = Activation::Identity;
        let head = pointwise_as_linear(vb.pp("conv_head"), (in_c, features), none)?;
        net.push(Layer::Linear(head));
        net.push_tap(Layer::HardSwish, "pre_logits", TapKind::Fc);
        let classifier = linear(vb.pp("classifier"), (features, config.num_classes), none)?;
        net.push_tap(Layer::Linear(classifier), "logits", TapKind::Logits);
        Ok(Self {
            config,
            engine: Engine::build(net)?,
        })
    }
}

impl Backbone for MobileNetV3 {
    fn arch(&self) -> Arch {
        Arch::MobileNetV3Large
    }

    /// The weights are timm's own, under its names.
    fn timm_layout(&self) -> Option<TimmLayout> {
        Some(TimmLayout {
            model: "mobilenetv3_large_100",
            names: TimmNames::Origins,
            bn_eps: BN_EPS,
            classifier: "classifier",
            setup: None,
        })
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn embedding_dim(&self) -> usize {
        self.config.head_features
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    /// timm's pre-logits: the pooled last features through `conv_head` and hard-swish,
    /// `[B, 1280]` (what a new classifier replaces `classifier` on).
    fn embedding_tap(&self) -> EmbeddingTap<'_> {
        EmbeddingTap {
            name: "pre_logits",
            pooled: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_like_timm() {
        assert_eq!(make_divisible(72.0 * 0.25), 24);
        assert_eq!(make_divisible(120.0 * 0.25), 32);
        assert_eq!(make_divisible(80.0 * 2.3), 184);
        assert_eq!(make_divisible(80.0 * 2.5), 200);
        let tiny = MobileNetV3Config {
            multiplier: 0.35,
            ..MobileNetV3Config::large_100()
        };
        assert_eq!(tiny.channels(960), 336);
        assert_eq!(tiny.channels(16), 8);
    }
}
