//! EfficientNet-Lite0 ("EfficientNet: Rethinking Model Scaling for Convolutional Neural
//! Networks", Tan & Le 2019, <https://arxiv.org/abs/1905.11946>; the "Lite" variant of
//! TensorFlow's `efficientnet/lite`: ReLU6, no squeeze-excite, fixed stem and head).
//!
//! Mirrors PyPI `efficientnet-lite-pytorch` 0.1.0 and its parameter names (`_conv_stem`,
//! `_bn0`, `_blocks.N._{expand,depthwise,project}_conv`, `_bn{0,1,2}`, `_conv_head`, `_bn1`,
//! `_fc`): TensorFlow "same" padding, batch-norm epsilon 1e-3 (folded into the convolutions at
//! load time). Taps: `stem`, `block0` ... `block15`, `head`, `logits`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{global_avg_pool, relu6, Conv, ConvSpec, Linear, Padding};
use super::program::{Activation, FrozenProgram, ProgramBuilder, ProgramOp};
use super::{Arch, Backbone, LastBlock, TapKind, TapSink};

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

/// A mobile inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project, residual when the
/// shape is kept.
struct MbConv {
    expand: Option<Conv>,
    depthwise: Conv,
    project: Conv,
    residual: bool,
}

impl MbConv {
    #[allow(clippy::too_many_arguments)]
    fn load(
        vb: VarBuilder,
        kernel: usize,
        stride: usize,
        expand_ratio: usize,
        in_channels: usize,
        out_channels: usize,
    ) -> Result<Self> {
        let hidden = in_channels * expand_ratio;
        let pointwise = |i, o| ConvSpec {
            in_channels: i,
            out_channels: o,
            kernel: 1,
            stride: 1,
            padding: Padding::TfSame,
            groups: 1,
        };
        let expand = if expand_ratio != 1 {
            Some(Conv::load_with_batch_norm(
                vb.pp("_expand_conv"),
                vb.pp("_bn0"),
                pointwise(in_channels, hidden),
                BN_EPS,
            )?)
        } else {
            None
        };
        let depthwise = Conv::load_with_batch_norm(
            vb.pp("_depthwise_conv"),
            vb.pp("_bn1"),
            ConvSpec {
                in_channels: hidden,
                out_channels: hidden,
                kernel,
                stride,
                padding: Padding::TfSame,
                groups: hidden,
            },
            BN_EPS,
        )?;
        let project = Conv::load_with_batch_norm(
            vb.pp("_project_conv"),
            vb.pp("_bn2"),
            pointwise(hidden, out_channels),
            BN_EPS,
        )?;
        Ok(Self {
            expand,
            depthwise,
            project,
            residual: stride == 1 && in_channels == out_channels,
        })
    }
}

impl MbConv {
    /// Appends the block's steps to `program`, its output as tap `tap`.
    fn program(&self, program: &mut ProgramBuilder, tap: &str) -> Result<bool> {
        if self.residual {
            program.push(ProgramOp::ResidualStart, None);
        }
        let layers = [
            self.expand.as_ref().map(|c| (c, Activation::Relu6)),
            Some((&self.depthwise, Activation::Relu6)),
            Some((&self.project, Activation::Identity)),
        ];
        let last = layers.iter().flatten().count() - 1;
        for (i, (conv, activation)) in layers.into_iter().flatten().enumerate() {
            let Some(op) = conv.program_op(activation)? else {
                return Ok(false);
            };
            let is_output = i == last && !self.residual;
            program.push(op, is_output.then_some(tap));
        }
        if self.residual {
            program.push(ProgramOp::identity_add(), Some(tap));
        }
        Ok(true)
    }
}

impl Module for MbConv {
    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let x = match &self.expand {
            Some(expand) => relu6(&expand.forward(input)?)?,
            None => input.clone(),
        };
        let x = relu6(&self.depthwise.forward(&x)?)?;
        let x = self.project.forward(&x)?;
        if self.residual {
            x + input
        } else {
            Ok(x)
        }
    }
}

/// EfficientNet-Lite0 with every block tapped.
pub struct EfficientNetLite {
    stem: Conv,
    blocks: Vec<MbConv>,
    head: Conv,
    fc: Linear,
    num_classes: usize,
    program: FrozenProgram,
}

impl EfficientNetLite {
    /// Builds the network from `efficientnet-lite-pytorch` parameter names.
    pub fn new(vb: VarBuilder, num_classes: usize) -> Result<Self> {
        let stem = Conv::load_with_batch_norm(
            vb.pp("_conv_stem"),
            vb.pp("_bn0"),
            ConvSpec {
                in_channels: 3,
                out_channels: STEM_CHANNELS,
                kernel: 3,
                stride: 2,
                padding: Padding::TfSame,
                groups: 1,
            },
            BN_EPS,
        )?;
        let mut blocks = Vec::new();
        for &(repeats, kernel, stride, expand, in_c, out_c) in &STAGES {
            for r in 0..repeats {
                let (stride, in_c) = if r == 0 { (stride, in_c) } else { (1, out_c) };
                let vb_block = vb.pp("_blocks").pp(blocks.len());
                blocks.push(MbConv::load(vb_block, kernel, stride, expand, in_c, out_c)?);
            }
        }
        let head = Conv::load_with_batch_norm(
            vb.pp("_conv_head"),
            vb.pp("_bn1"),
            ConvSpec {
                in_channels: 320,
                out_channels: HEAD_CHANNELS,
                kernel: 1,
                stride: 1,
                padding: Padding::TfSame,
                groups: 1,
            },
            BN_EPS,
        )?;
        let fc = Linear::load(vb.pp("_fc"), HEAD_CHANNELS, num_classes)?;
        let mut net = Self {
            stem,
            blocks,
            head,
            fc,
            num_classes,
            program: FrozenProgram::default(),
        };
        net.program = net.build_program()?;
        Ok(net)
    }

    /// The same layers as [`Backbone::forward_with`], as one fast op.
    fn build_program(&self) -> Result<FrozenProgram> {
        let mut program = ProgramBuilder::default();
        let (Some(stem), Some(head)) = (
            self.stem.program_op(Activation::Relu6)?,
            self.head.program_op(Activation::Relu6)?,
        ) else {
            return Ok(FrozenProgram::default());
        };
        program.push(stem, Some("stem"));
        for (i, block) in self.blocks.iter().enumerate() {
            if !block.program(&mut program, &format!("block{i}"))? {
                return Ok(FrozenProgram::default());
            }
        }
        program.push(head, Some("head"));
        program.push(ProgramOp::GlobalAvgPool, None);
        program.push(self.fc.program_op(Activation::Identity)?, Some("logits"));
        Ok(program.build())
    }

    /// Stem, blocks and head: `[B, 3, H, W]` -> `[B, 1280, H/32, W/32]`.
    fn features(&self, x: &Tensor, sink: TapSink) -> Result<Tensor> {
        let mut x = relu6(&self.stem.forward(x)?)?;
        sink("stem", TapKind::Stem, &x);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x)?;
            sink(&format!("block{i}"), TapKind::Block, &x);
        }
        let x = relu6(&self.head.forward(&x)?)?;
        sink("head", TapKind::Head, &x);
        Ok(x)
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

    fn program(&self) -> Option<&FrozenProgram> {
        Some(&self.program)
    }

    fn forward_with(&self, x: &Tensor, sink: TapSink) -> Result<Tensor> {
        let pooled = global_avg_pool(&self.features(x, sink)?)?;
        let logits = self.fc.forward(&pooled)?;
        sink("logits", TapKind::Logits, &logits);
        Ok(logits)
    }

    /// The head convolution (1x1, 320 -> 1280, ReLU6): Keras' "top" block.
    fn last_block(&self) -> Option<LastBlock> {
        Some(LastBlock {
            input_tap: format!("block{}", self.blocks.len() - 1),
            convs: vec![self.head.block_conv(true).ok().flatten()?],
            max_pool: false,
            residual: false,
        })
    }

    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        global_avg_pool(&self.forward_until(x, Some("head"))?)
    }
}
