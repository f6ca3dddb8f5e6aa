//! EfficientNet-Lite0 ("EfficientNet: Rethinking Model Scaling for Convolutional Neural
//! Networks", Tan & Le 2019, <https://arxiv.org/abs/1905.11946>; the "Lite" variant of
//! TensorFlow's `efficientnet/lite`: ReLU6, no squeeze-excite, fixed stem and head).
//!
//! Mirrors PyPI `efficientnet-lite-pytorch` 0.1.0 and its parameter names (`_conv_stem`,
//! `_bn0`, `_blocks.N._{expand,depthwise,project}_conv`, `_bn{0,1,2}`, `_conv_head`, `_bn1`,
//! `_fc`): TensorFlow "same" padding, batch-norm epsilon 1e-3 (folded into the convolutions at
//! load time). Taps: `stem`, `block0` ... `block15`, `head`, `logits`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::engine::Engine;
use super::layers::{conv_bn_layer, linear, ConvSpec};
use super::network::{LastBlock, Layer, NetworkBuilder, TapKind};
use super::reference::global_avg_pool;
use super::{Arch, Backbone};
use crate::kernels::{Activation, Padding};

const BN_EPS: f64 = 1e-3;
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// One stage of MBConv blocks: (repeats, kernel, first stride, expand ratio, in, out).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

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

/// EfficientNet-Lite0 with every block tapped.
pub struct EfficientNetLite {
    engine: Engine,
    blocks: usize,
    num_classes: usize,
}

impl EfficientNetLite {
    /// Builds the network from `efficientnet-lite-pytorch` parameter names.
    pub fn new(vb: VarBuilder, num_classes: usize) -> Result<Self> {
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
        for &(repeats, kernel, stride, expand, in_c, out_c) in &STAGES {
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
        let head = spec(320, HEAD_CHANNELS, 1, 1);
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
            (HEAD_CHANNELS, num_classes),
            Activation::Identity,
        )?;
        net.push_tap(Layer::Linear(fc), "logits", TapKind::Logits);
        Ok(Self {
            engine: Engine::build(net)?,
            blocks,
            num_classes,
        })
    }
}

impl Backbone for EfficientNetLite {
    fn arch(&self) -> Arch {
        Arch::EfficientNetLite0
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn embedding_dim(&self) -> usize {
        HEAD_CHANNELS
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The head convolution (1x1, 320 -> 1280, ReLU6): Keras' "top" block.
    fn last_block(&self) -> Option<LastBlock> {
        let last = self.blocks.checked_sub(1)?;
        self.engine
            .network()
            .last_block(&format!("block{last}"), "head")
    }

    /// The head's features averaged over space: `[B, 1280]`.
    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        global_avg_pool(&self.forward_until(x, Some("head"))?)
    }
}
