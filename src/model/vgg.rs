//! VGG-16 and VGG-19 ("Very Deep Convolutional Networks for Large-Scale Image Recognition",
//! Simonyan & Zisserman 2014, <https://arxiv.org/abs/1409.1556>), as torchvision builds them.
//!
//! Parameters use torchvision's names (`features.N`, `classifier.{0,3,6}`); timm's names
//! (`pre_logits.fc1`, ...) are renamed on load (see `weights::loading`). Taps: `conv1_1` ...
//! `conv5_3` (after ReLU), `pool1` ... `pool5`, `fc6`, `fc7` (after ReLU), `logits`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::cpu_ops::PoolWindow;
use super::layers::{
    adaptive_avg_pool2d, global_avg_pool, max_pool2x2, relu, Conv, ConvSpec, Linear, Padding,
};
use super::program::{Activation, FrozenProgram, ProgramBuilder, ProgramOp};
use super::{Arch, Backbone, LastBlock, TapKind, TapSink};

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

struct ConvLayer {
    name: String,
    conv: Conv,
}

/// A VGG network with every layer tapped.
pub struct Vgg {
    config: VggConfig,
    /// Per block, its convolutions.
    blocks: Vec<Vec<ConvLayer>>,
    fc6: Linear,
    fc7: Linear,
    fc8: Linear,
    program: FrozenProgram,
}

impl Vgg {
    /// Builds the network from torchvision-named parameters.
    pub fn new(vb: VarBuilder, config: VggConfig) -> Result<Self> {
        let features = vb.pp("features");
        let mut index = 0;
        let mut in_channels = 3;
        let mut blocks = Vec::new();
        for (b, (&convs, &width)) in config
            .convs_per_block
            .iter()
            .zip(&config.widths)
            .enumerate()
        {
            let mut block = Vec::new();
            for i in 0..convs {
                let spec = ConvSpec {
                    in_channels,
                    out_channels: width,
                    kernel: 3,
                    stride: 1,
                    padding: Padding::Symmetric(1),
                    groups: 1,
                };
                block.push(ConvLayer {
                    name: format!("conv{}_{}", b + 1, i + 1),
                    conv: Conv::load(features.pp(index), spec)?,
                });
                in_channels = width;
                index += 2; // conv, relu
            }
            index += 1; // max-pool
            blocks.push(block);
        }
        let classifier = vb.pp("classifier");
        let flat = config.widths[4] * POOLED_SIDE * POOLED_SIDE;
        let fc6 = Linear::load(classifier.pp(0), flat, config.hidden)?;
        let fc7 = Linear::load(classifier.pp(3), config.hidden, config.hidden)?;
        let fc8 = Linear::load(classifier.pp(6), config.hidden, config.num_classes)?;
        let mut vgg = Self {
            config,
            blocks,
            fc6,
            fc7,
            fc8,
            program: FrozenProgram::default(),
        };
        vgg.program = vgg.build_program()?;
        Ok(vgg)
    }

    /// The same layers as [`Backbone::forward_with`], as one fast op.
    fn build_program(&self) -> Result<FrozenProgram> {
        let mut program = ProgramBuilder::default();
        for (b, block) in self.blocks.iter().enumerate() {
            for layer in block {
                let Some(op) = layer.conv.program_op(Activation::Relu)? else {
                    return Ok(FrozenProgram::default());
                };
                program.push(op, Some(&layer.name));
            }
            program.push(
                ProgramOp::MaxPool(PoolWindow::TWO_BY_TWO),
                Some(&format!("pool{}", b + 1)),
            );
        }
        program.push(ProgramOp::AdaptiveAvgPool(POOLED_SIDE), None);
        program.push(self.fc6.program_op(Activation::Relu)?, Some("fc6"));
        program.push(self.fc7.program_op(Activation::Relu)?, Some("fc7"));
        program.push(self.fc8.program_op(Activation::Identity)?, Some("logits"));
        Ok(program.build())
    }

    pub fn config(&self) -> &VggConfig {
        &self.config
    }

    /// The convolutional trunk, `[B, 3, H, W]` -> pool5 `[B, 512, H/32, W/32]`.
    fn features(&self, x: &Tensor, sink: TapSink) -> Result<Tensor> {
        let mut x = x.clone();
        for (b, block) in self.blocks.iter().enumerate() {
            for layer in block {
                x = relu(&layer.conv.forward(&x)?)?;
                sink(&layer.name, TapKind::Conv, &x);
            }
            x = max_pool2x2(&x)?;
            sink(&format!("pool{}", b + 1), TapKind::Pool, &x);
        }
        Ok(x)
    }
}

impl Backbone for Vgg {
    fn arch(&self) -> Arch {
        self.config.arch
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn program(&self) -> Option<&FrozenProgram> {
        Some(&self.program)
    }

    fn embedding_dim(&self) -> usize {
        self.config.widths[4]
    }

    fn forward_with(&self, x: &Tensor, sink: TapSink) -> Result<Tensor> {
        let x = self.features(x, sink)?;
        // torchvision pools to 7x7 whatever the input size; at 224 this is the identity.
        let x = adaptive_avg_pool2d(&x, POOLED_SIDE)?.flatten_from(1)?;
        let x = relu(&self.fc6.forward(&x)?)?;
        sink("fc6", TapKind::Fc, &x);
        let x = relu(&self.fc7.forward(&x)?)?;
        sink("fc7", TapKind::Fc, &x);
        let logits = self.fc8.forward(&x)?;
        sink("logits", TapKind::Logits, &logits);
        Ok(logits)
    }

    fn last_block(&self) -> Option<LastBlock> {
        let convs = self
            .blocks
            .last()?
            .iter()
            .map(|layer| layer.conv.block_conv(false).ok().flatten())
            .collect::<Option<Vec<_>>>()?;
        Some(LastBlock {
            input_tap: format!("pool{}", self.blocks.len() - 1),
            convs,
            max_pool: true,
            residual: false,
        })
    }

    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let last = format!("pool{}", self.blocks.len());
        global_avg_pool(&self.forward_until(x, Some(&last))?)
    }
}
