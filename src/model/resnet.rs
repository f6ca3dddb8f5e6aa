//! ResNet-18 and ResNet-50 ("Deep Residual Learning for Image Recognition", He et al. 2015,
//! <https://arxiv.org/abs/1512.03385>), as torchvision and timm build them (v1.5: a
//! bottleneck's stride sits on its 3x3 convolution).
//!
//! torchvision and timm use the same parameter names: `conv1`, `bn1`,
//! `layer{1-4}.{i}.conv{1,2,3}` / `bn{1,2,3}`, `layer{l}.0.downsample.{0,1}` (1x1 convolution
//! and batch norm on the skip path), `fc`. Batch norm (epsilon 1e-5) is folded into the
//! convolutions at load time. Taps: `stem` (7x7 convolution after ReLU), `pool` (the 3x3/2
//! max-pool), `layer1.0` ... `layer4.N` (each residual block's output, after its ReLU; the last
//! block of a layer is that stage's output), `logits`.

use candle_core::Result;
use candle_nn::VarBuilder;

use super::engine::Engine;
use super::layers::{conv_bn, linear, ConvSpec};
use super::network::{LastBlock, Layer, NetworkBuilder, TapKind};
use super::{Arch, Backbone, EmbeddingTap, TimmLayout, TimmNames};
use crate::kernels::{Activation, Padding, PoolWindow};

const BN_EPS: f64 = 1e-5;

/// Sizes of a ResNet; [`ResNetConfig::resnet18`] and [`ResNetConfig::resnet50`] are the real
/// ones, smaller widths make tiny test models of the same structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    pub arch: Arch,
    /// Bottleneck blocks (1x1, 3x3, 1x1 with 4x expansion) rather than basic ones (3x3, 3x3).
    pub bottleneck: bool,
    /// Blocks per layer (ResNet-18: 2, 2, 2, 2; ResNet-50: 3, 4, 6, 3).
    pub layers: [usize; 4],
    /// Each layer's inner width (64, 128, 256, 512); a bottleneck outputs 4x as many.
    pub widths: [usize; 4],
    /// Channels of the 7x7 stem convolution (64).
    pub stem: usize,
    pub num_classes: usize,
}

impl ResNetConfig {
    pub fn resnet18() -> Self {
        Self {
            arch: Arch::ResNet18,
            bottleneck: false,
            layers: [2, 2, 2, 2],
            widths: [64, 128, 256, 512],
            stem: 64,
            num_classes: 1000,
        }
    }

    pub fn resnet50() -> Self {
        Self {
            arch: Arch::ResNet50,
            bottleneck: true,
            layers: [3, 4, 6, 3],
            ..Self::resnet18()
        }
    }

    fn expansion(&self) -> usize {
        if self.bottleneck {
            4
        } else {
            1
        }
    }

    /// Channels of the features the pool averages (512 for ResNet-18, 2048 for ResNet-50).
    pub fn feature_channels(&self) -> usize {
        self.widths[3] * self.expansion()
    }
}

/// A convolution of `kernel` (padded by half of it) with batch norm `bn{i}` folded in.
fn spec(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> ConvSpec {
    ConvSpec {
        in_channels,
        out_channels,
        kernel,
        stride,
        padding: Padding::Symmetric(kernel / 2),
        groups: 1,
    }
}

/// Appends residual block `name` (`vb`): its convolutions (each but the last followed by a
/// ReLU), the skip path's projection where the shape changes, and a ReLU after the sum.
fn push_block(
    net: &mut NetworkBuilder,
    vb: VarBuilder,
    name: String,
    config: &ResNetConfig,
    (in_channels, width, stride): (usize, usize, usize),
) -> Result<()> {
    let out_channels = width * config.expansion();
    let conv = |i: usize, spec: ConvSpec, activation| {
        conv_bn(
            (vb.pp(format!("conv{i}")), vb.pp(format!("bn{i}"))),
            spec,
            BN_EPS,
            activation,
        )
    };
    let (relu, none) = (Activation::Relu, Activation::Identity);
    let convs = if config.bottleneck {
        vec![
            conv(1, spec(in_channels, width, 1, 1), relu)?,
            conv(2, spec(width, width, 3, stride), relu)?,
            conv(3, spec(width, out_channels, 1, 1), none)?,
        ]
    } else {
        vec![
            conv(1, spec(in_channels, width, 3, stride), relu)?,
            conv(2, spec(width, out_channels, 3, 1), none)?,
        ]
    };
    let shortcut = if stride != 1 || in_channels != out_channels {
        let vbs = (vb.pp("downsample.0"), vb.pp("downsample.1"));
        Some(conv_bn(
            vbs,
            spec(in_channels, out_channels, 1, stride),
            BN_EPS,
            none,
        )?)
    } else {
        None
    };
    net.push(Layer::ResidualStart);
    for conv in convs {
        net.push(Layer::Conv(conv));
    }
    let end = Layer::ResidualAdd {
        shortcut,
        activation: relu,
    };
    net.push_tap(end, name, TapKind::Block);
    Ok(())
}

/// A ResNet with every residual block tapped.
pub struct ResNet {
    config: ResNetConfig,
    engine: Engine,
    /// Tap names of the residual blocks, in order.
    blocks: Vec<String>,
}

impl ResNet {
    /// Builds the network from torchvision/timm-named parameters.
    pub fn new(vb: VarBuilder, config: ResNetConfig) -> Result<Self> {
        let mut net = NetworkBuilder::default();
        let stem = conv_bn(
            (vb.pp("conv1"), vb.pp("bn1")),
            ConvSpec {
                padding: Padding::Symmetric(3),
                ..spec(3, config.stem, 7, 2)
            },
            BN_EPS,
            Activation::Relu,
        )?;
        net.push_tap(Layer::Conv(stem), "stem", TapKind::Stem);
        let pool = Layer::MaxPool(PoolWindow::THREE_BY_THREE_STRIDE_TWO);
        net.push_tap(pool, "pool", TapKind::Pool);
        let mut blocks = Vec::new();
        let mut in_channels = config.stem;
        for (l, (&count, &width)) in config.layers.iter().zip(&config.widths).enumerate() {
            for b in 0..count {
                let stride = if l > 0 && b == 0 { 2 } else { 1 };
                let name = format!("layer{}.{b}", l + 1);
                let vb_block = vb.pp(&name);
                push_block(
                    &mut net,
                    vb_block,
                    name.clone(),
                    &config,
                    (in_channels, width, stride),
                )?;
                in_channels = width * config.expansion();
                blocks.push(name);
            }
        }
        net.push(Layer::GlobalAvgPool);
        let fc = linear(
            vb.pp("fc"),
            (config.feature_channels(), config.num_classes),
            Activation::Identity,
        )?;
        net.push_tap(Layer::Linear(fc), "logits", TapKind::Logits);
        Ok(Self {
            config,
            engine: Engine::build(net)?,
            blocks,
        })
    }

    /// The last block's tap: the features the pool averages.
    fn last_tap(&self) -> &str {
        self.blocks.last().map_or("pool", String::as_str)
    }
}

impl Backbone for ResNet {
    fn arch(&self) -> Arch {
        self.config.arch
    }

    /// torchvision's names are timm's (`conv1`, `bn1`, `layerN.i.convK`, `downsample.0/1`,
    /// `fc`), and so is the epsilon.
    fn timm_layout(&self) -> Option<TimmLayout> {
        let model = match self.config.arch {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet50 => "resnet50",
            _ => return None,
        };
        Some(TimmLayout {
            model,
            names: TimmNames::Origins,
            bn_eps: BN_EPS,
            classifier: "fc",
            setup: None,
        })
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn embedding_dim(&self) -> usize {
        self.config.feature_channels()
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The last residual block (layer4's last: 3x3 + 3x3 or 1x1 + 3x3 + 1x1, identity skip).
    fn last_block(&self) -> Option<LastBlock> {
        let n = self.blocks.len();
        let before = self.blocks.get(n.checked_sub(2)?)?;
        self.engine.network().last_block(before, self.last_tap())
    }

    /// The last block's output averaged over space: `[B, 512]` (ResNet-18) or `[B, 2048]`.
    fn embedding_tap(&self) -> EmbeddingTap<'_> {
        EmbeddingTap {
            name: self.last_tap(),
            pooled: true,
        }
    }
}
