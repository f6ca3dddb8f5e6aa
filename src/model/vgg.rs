//! VGG-16 and VGG-19 ("Very Deep Convolutional Networks for Large-Scale Image Recognition",
//! Simonyan & Zisserman 2014, <https://arxiv.org/abs/1409.1556>), as torchvision builds them.
//!
//! Parameters use torchvision's names (`features.N`, `classifier.{0,3,6}`); timm's names
//! (`pre_logits.fc1`, ...) are renamed on load (see `weights::loading`). Taps: `conv1_1` ...
//! `conv5_3` (after ReLU), `pool1` ... `pool5`, `fc6`, `fc7` (after ReLU), `logits`.

use candle_core::Result;
use candle_nn::VarBuilder;

use super::engine::Engine;
use super::layers::{conv, linear, ConvSpec};
use super::network::{LastBlock, Layer, NetworkBuilder, TapKind};
use super::{Arch, Backbone, EmbeddingTap, TimmLayout, TimmNames};
use crate::kernels::{Activation, Padding, PoolWindow};

/// Sizes of a VGG; [`VggConfig::vgg16`] and [`VggConfig::vgg19`] are the real ones, smaller
/// widths make tiny test models of the same structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VggConfig {
    pub arch: Arch,
    /// Convolutions per block (VGG-16: 2, 2, 3, 3, 3).
    pub convs_per_block: [usize; 5],
    /// Output channels of each block (64, 128, 256, 512, 512).
    pub widths: [usize; 5],
    /// Width of fc6 and fc7 (4096).
    pub hidden: usize,
    pub num_classes: usize,
}

impl VggConfig {
    pub fn vgg16() -> Self {
        Self {
            arch: Arch::Vgg16,
            convs_per_block: [2, 2, 3, 3, 3],
            widths: [64, 128, 256, 512, 512],
            hidden: 4096,
            num_classes: 1000,
        }
    }

    pub fn vgg19() -> Self {
        Self {
            arch: Arch::Vgg19,
            convs_per_block: [2, 2, 4, 4, 4],
            ..Self::vgg16()
        }
    }
}

/// The spatial size the classifier expects after `AdaptiveAvgPool2d`.
const POOLED_SIDE: usize = 7;

/// A VGG network with every layer tapped.
pub struct Vgg {
    config: VggConfig,
    engine: Engine,
}

impl Vgg {
    /// Builds the network from torchvision-named parameters.
    pub fn new(vb: VarBuilder, config: VggConfig) -> Result<Self> {
        let features = vb.pp("features");
        let mut net = NetworkBuilder::default();
        let mut index = 0;
        let mut in_channels = 3;
        for (b, (&convs, &width)) in config
            .convs_per_block
            .iter()
            .zip(&config.widths)
            .enumerate()
        {
            for i in 0..convs {
                let spec = ConvSpec {
                    in_channels,
                    out_channels: width,
                    kernel: 3,
                    stride: 1,
                    padding: Padding::Symmetric(1),
                    groups: 1,
                };
                let layer = conv(features.pp(index), spec, Activation::Relu)?;
                net.push_tap(
                    Layer::Conv(layer),
                    format!("conv{}_{}", b + 1, i + 1),
                    TapKind::Conv,
                );
                in_channels = width;
                index += 2; // conv, relu
            }
            index += 1; // max-pool
            net.push_tap(
                Layer::MaxPool(PoolWindow::TWO_BY_TWO),
                format!("pool{}", b + 1),
                TapKind::Pool,
            );
        }
        // torchvision pools to 7x7 whatever the input size; at 224 this is the identity.
        net.push(Layer::AdaptiveAvgPool(POOLED_SIDE));
        let classifier = vb.pp("classifier");
        let flat = config.widths[4] * POOLED_SIDE * POOLED_SIDE;
        let (hidden, classes) = (config.hidden, config.num_classes);
        let fc6 = linear(classifier.pp(0), (flat, hidden), Activation::Relu)?;
        let fc7 = linear(classifier.pp(3), (hidden, hidden), Activation::Relu)?;
        let fc8 = linear(classifier.pp(6), (hidden, classes), Activation::Identity)?;
        net.push_tap(Layer::Linear(fc6), "fc6", TapKind::Fc);
        net.push_tap(Layer::Linear(fc7), "fc7", TapKind::Fc);
        net.push_tap(Layer::Linear(fc8), "logits", TapKind::Logits);
        Ok(Self {
            config,
            engine: Engine::build(net)?,
        })
    }

    pub fn config(&self) -> &VggConfig {
        &self.config
    }
}

impl Backbone for Vgg {
    fn arch(&self) -> Arch {
        self.config.arch
    }

    /// torchvision's `features.N` are timm's; the head is on pool5 averaged over space, so
    /// timm's `pre_logits` (fc6 and fc7 as convolutions) goes and `head.fc` takes 512 features.
    fn timm_layout(&self) -> Option<TimmLayout> {
        let model = match self.config.arch {
            Arch::Vgg16 => "vgg16",
            Arch::Vgg19 => "vgg19",
            _ => return None,
        };
        Some(TimmLayout {
            model,
            names: TimmNames::Origins,
            bn_eps: 0.0,
            classifier: "head.fc",
            setup: Some("model.pre_logits = torch.nn.Identity()"),
        })
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn embedding_dim(&self) -> usize {
        self.config.widths[4]
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Block 5's convolutions and pool5.
    fn last_block(&self) -> Option<LastBlock> {
        self.engine.network().last_block("pool4", "pool5")
    }

    /// pool5 averaged over space: `[B, 512]`.
    fn embedding_tap(&self) -> EmbeddingTap<'_> {
        EmbeddingTap {
            name: "pool5",
            pooled: true,
        }
    }
}
