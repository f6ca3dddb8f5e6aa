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

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::cpu_ops::PoolWindow;
use super::layers::{global_avg_pool, max_pool3x3s2, relu, Conv, ConvSpec, Linear, Padding};
use super::program::{Activation, FrozenProgram, ProgramBuilder, ProgramOp, Shortcut};
use super::{Arch, Backbone, LastBlock, TapKind, TapSink};

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

/// A residual block: its convolutions (each but the last followed by a ReLU), the skip path's
/// projection where the shape changes, and a ReLU after the sum.
struct ResidualBlock {
    name: String,
    convs: Vec<Conv>,
    downsample: Option<Conv>,
}

impl ResidualBlock {
    fn load(
        vb: VarBuilder,
        name: String,
        config: &ResNetConfig,
        in_channels: usize,
        width: usize,
        stride: usize,
    ) -> Result<Self> {
        let out_channels = width * config.expansion();
        let conv = |i: usize, spec: ConvSpec| {
            Conv::load_with_batch_norm(
                vb.pp(format!("conv{i}")),
                vb.pp(format!("bn{i}")),
                spec,
                BN_EPS,
            )
        };
        let spec = |i, o, kernel, stride| ConvSpec {
            in_channels: i,
            out_channels: o,
            kernel,
            stride,
            padding: Padding::Symmetric(kernel / 2),
            groups: 1,
        };
        let convs = if config.bottleneck {
            vec![
                conv(1, spec(in_channels, width, 1, 1))?,
                conv(2, spec(width, width, 3, stride))?,
                conv(3, spec(width, out_channels, 1, 1))?,
            ]
        } else {
            vec![
                conv(1, spec(in_channels, width, 3, stride))?,
                conv(2, spec(width, out_channels, 3, 1))?,
            ]
        };
        let downsample = if stride != 1 || in_channels != out_channels {
            Some(Conv::load_with_batch_norm(
                vb.pp("downsample.0"),
                vb.pp("downsample.1"),
                spec(in_channels, out_channels, 1, stride),
                BN_EPS,
            )?)
        } else {
            None
        };
        Ok(Self {
            name,
            convs,
            downsample,
        })
    }

    /// Appends the block's steps to `program`, its output as its tap.
    fn program(&self, program: &mut ProgramBuilder) -> Result<()> {
        program.push(ProgramOp::ResidualStart, None);
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            let activation = if i == last {
                Activation::Identity
            } else {
                Activation::Relu
            };
            program.push(conv_op(conv, activation)?, None);
        }
        let shortcut = match &self.downsample {
            None => None,
            Some(conv) => match conv_op(conv, Activation::Identity)? {
                ProgramOp::Conv {
                    weight,
                    bias,
                    stride,
                    ..
                } => Some(Shortcut {
                    weight,
                    bias,
                    stride,
                }),
                _ => candle_core::bail!("{}: the downsample is not a convolution", self.name),
            },
        };
        program.push(
            ProgramOp::ResidualAdd {
                shortcut,
                activation: Activation::Relu,
            },
            Some(&self.name),
        );
        Ok(())
    }
}

/// `conv` as a program step (ResNets have no grouped convolutions).
fn conv_op(conv: &Conv, activation: Activation) -> Result<ProgramOp> {
    conv.program_op(activation)?
        .ok_or_else(|| candle_core::Error::Msg("a grouped convolution in a ResNet".into()))
}

impl Module for ResidualBlock {
    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            x = conv.forward(&x)?;
            if i < last {
                x = relu(&x)?;
            }
        }
        let skip = match &self.downsample {
            Some(conv) => conv.forward(input)?,
            None => input.clone(),
        };
        relu(&(x + skip)?)
    }
}

/// A ResNet with every residual block tapped.
pub struct ResNet {
    config: ResNetConfig,
    stem: Conv,
    blocks: Vec<ResidualBlock>,
    fc: Linear,
    program: FrozenProgram,
}

impl ResNet {
    /// Builds the network from torchvision/timm-named parameters.
    pub fn new(vb: VarBuilder, config: ResNetConfig) -> Result<Self> {
        let stem = Conv::load_with_batch_norm(
            vb.pp("conv1"),
            vb.pp("bn1"),
            ConvSpec {
                in_channels: 3,
                out_channels: config.stem,
                kernel: 7,
                stride: 2,
                padding: Padding::Symmetric(3),
                groups: 1,
            },
            BN_EPS,
        )?;
        let mut blocks = Vec::new();
        let mut in_channels = config.stem;
        for (l, (&count, &width)) in config.layers.iter().zip(&config.widths).enumerate() {
            for b in 0..count {
                let stride = if l > 0 && b == 0 { 2 } else { 1 };
                let name = format!("layer{}.{b}", l + 1);
                let vb_block = vb.pp(&name);
                let block =
                    ResidualBlock::load(vb_block, name, &config, in_channels, width, stride)?;
                in_channels = width * config.expansion();
                blocks.push(block);
            }
        }
        let fc = Linear::load(vb.pp("fc"), config.feature_channels(), config.num_classes)?;
        let mut net = Self {
            config,
            stem,
            blocks,
            fc,
            program: FrozenProgram::default(),
        };
        net.program = net.build_program()?;
        Ok(net)
    }

    /// The same layers as [`Backbone::forward_with`], as one fast op.
    fn build_program(&self) -> Result<FrozenProgram> {
        let mut program = ProgramBuilder::default();
        program.push(conv_op(&self.stem, Activation::Relu)?, Some("stem"));
        program.push(
            ProgramOp::MaxPool(PoolWindow::THREE_BY_THREE_STRIDE_TWO),
            Some("pool"),
        );
        for block in &self.blocks {
            block.program(&mut program)?;
        }
        program.push(ProgramOp::GlobalAvgPool, None);
        program.push(self.fc.program_op(Activation::Identity)?, Some("logits"));
        Ok(program.build())
    }

    /// The last block's tap: the features the pool averages.
    fn last_tap(&self) -> &str {
        self.blocks.last().map_or("pool", |b| b.name.as_str())
    }
}

impl Backbone for ResNet {
    fn arch(&self) -> Arch {
        self.config.arch
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn embedding_dim(&self) -> usize {
        self.config.feature_channels()
    }

    fn program(&self) -> Option<&FrozenProgram> {
        Some(&self.program)
    }

    fn forward_with(&self, x: &Tensor, sink: TapSink) -> Result<Tensor> {
        let x = relu(&self.stem.forward(x)?)?;
        sink("stem", TapKind::Stem, &x);
        let mut x = max_pool3x3s2(&x)?;
        sink("pool", TapKind::Pool, &x);
        for block in &self.blocks {
            x = block.forward(&x)?;
            sink(&block.name, TapKind::Block, &x);
        }
        let logits = self.fc.forward(&global_avg_pool(&x)?)?;
        sink("logits", TapKind::Logits, &logits);
        Ok(logits)
    }

    /// The last residual block (layer4's last: 3x3 + 3x3 or 1x1 + 3x3 + 1x1, identity skip).
    fn last_block(&self) -> Option<LastBlock> {
        let n = self.blocks.len();
        let (last, before) = (self.blocks.last()?, self.blocks.get(n.checked_sub(2)?)?);
        if last.downsample.is_some() {
            return None;
        }
        let convs = last
            .convs
            .iter()
            .map(|conv| conv.block_conv(false).ok().flatten())
            .collect::<Option<Vec<_>>>()?;
        Some(LastBlock {
            input_tap: before.name.clone(),
            convs,
            max_pool: false,
            residual: true,
        })
    }

    /// The last block's output averaged over space: `[B, 512]` (ResNet-18) or `[B, 2048]`.
    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        global_avg_pool(&self.forward_until(x, Some(self.last_tap()))?)
    }
}
