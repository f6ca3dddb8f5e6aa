//! MobileNetV3-Large ("Searching for MobileNetV3", Howard et al. 2019,
//! <https://arxiv.org/abs/1905.02244>), as timm builds `mobilenetv3_large_100`.
//!
//! timm's parameter names: `conv_stem`, `bn1`, `blocks.{stage}.{i}.{conv_dw,conv_pw,conv_pwl,
//! conv}` with `bn{1,2,3}`, `se.conv_{reduce,expand}` (squeeze-excite, with biases),
//! `conv_head` (1x1, with a bias, applied *after* global pooling), `classifier`. Batch norm
//! (epsilon 1e-5) is folded into the convolutions at load time; padding is symmetric. Taps:
//! `stem`, `block0` ... `block15` (each block's output), `head` (the last 1x1 convolution,
//! 960 channels), `pre_logits` (`conv_head` after hard-swish, 1280 features), `logits`.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::layers::{global_avg_pool, relu, relu6, Conv, ConvSpec, Linear, Padding};
use super::program::{Activation, FrozenProgram, ProgramBuilder, ProgramOp};
use super::{Arch, Backbone, TapKind, TapSink};

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

/// `x * relu6(x + 3) / 6`, differentiable.
fn hard_swish(x: &Tensor) -> Result<Tensor> {
    x.mul(&(relu6(&(x + 3.0)?)? / 6.0)?)
}

/// Squeeze-and-excitation: channels scaled by `hard_sigmoid(expand(relu(reduce(mean))))`.
struct SqueezeExcite {
    reduce: Linear,
    expand: Linear,
}

impl SqueezeExcite {
    fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        let reduced = make_divisible(channels as f64 * 0.25);
        let layer = |name: &str, i: usize, o: usize| -> Result<Linear> {
            let w = vb.pp(name).get((o, i, 1, 1), "weight")?.reshape((o, i))?;
            let b = vb.pp(name).get(o, "bias")?;
            Ok(Linear::new(w, b))
        };
        Ok(Self {
            reduce: layer("conv_reduce", channels, reduced)?,
            expand: layer("conv_expand", reduced, channels)?,
        })
    }

    fn program_op(&self) -> Result<ProgramOp> {
        let (
            ProgramOp::Linear {
                weight: reduce_weight,
                bias: reduce_bias,
                ..
            },
            ProgramOp::Linear {
                weight: expand_weight,
                bias: expand_bias,
                ..
            },
        ) = (
            self.reduce.program_op(Activation::Identity)?,
            self.expand.program_op(Activation::Identity)?,
        )
        else {
            candle_core::bail!("squeeze-excite layers are not linear");
        };
        Ok(ProgramOp::SqueezeExcite {
            reduce_weight,
            reduce_bias,
            expand_weight,
            expand_bias,
        })
    }
}

impl Module for SqueezeExcite {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        let squeezed = x.mean(D::Minus1)?.mean(D::Minus1)?;
        let hidden = relu(&self.reduce.forward(&squeezed)?)?;
        let gate = (relu6(&(self.expand.forward(&hidden)? + 3.0)?)? / 6.0)?;
        x.broadcast_mul(&gate.reshape((b, c, 1, 1))?)
    }
}

/// One block: each convolution with batch norm folded in.
struct Block {
    expand: Option<Conv>,
    depthwise: Option<Conv>,
    se: Option<SqueezeExcite>,
    project: Conv,
    /// The activation after the project convolution (only a `cn` block has one).
    project_activated: bool,
    hard_swish: bool,
    residual: bool,
}

impl Block {
    /// `activation(x)` with this block's activation.
    fn activate(&self, x: &Tensor) -> Result<Tensor> {
        if self.hard_swish {
            hard_swish(x)
        } else {
            relu(x)
        }
    }

    /// Appends `conv` (activated when `activated`) to `program`, its output as `tap`.
    fn push_conv(
        &self,
        program: &mut ProgramBuilder,
        conv: &Conv,
        activated: bool,
        tap: Option<&str>,
    ) -> Result<()> {
        let activation = if activated && !self.hard_swish {
            Activation::Relu
        } else {
            Activation::Identity
        };
        let Some(op) = conv.program_op(activation)? else {
            candle_core::bail!("an unsupported grouped convolution in MobileNetV3");
        };
        if activated && self.hard_swish {
            program.push(op, None);
            program.push(ProgramOp::HardSwish, tap);
        } else {
            program.push(op, tap);
        }
        Ok(())
    }

    fn program(&self, program: &mut ProgramBuilder, tap: &str) -> Result<()> {
        if self.residual {
            program.push(ProgramOp::ResidualStart, None);
        }
        if let Some(conv) = &self.expand {
            self.push_conv(program, conv, true, None)?;
        }
        if let Some(conv) = &self.depthwise {
            self.push_conv(program, conv, true, None)?;
        }
        if let Some(se) = &self.se {
            program.push(se.program_op()?, None);
        }
        let project_tap = (!self.residual).then_some(tap);
        self.push_conv(program, &self.project, self.project_activated, project_tap)?;
        if self.residual {
            program.push(ProgramOp::identity_add(), Some(tap));
        }
        Ok(())
    }
}

impl Module for Block {
    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        if let Some(conv) = &self.expand {
            x = self.activate(&conv.forward(&x)?)?;
        }
        if let Some(conv) = &self.depthwise {
            x = self.activate(&conv.forward(&x)?)?;
        }
        if let Some(se) = &self.se {
            x = se.forward(&x)?;
        }
        x = self.project.forward(&x)?;
        if self.project_activated {
            x = self.activate(&x)?;
        }
        if self.residual {
            x + input
        } else {
            Ok(x)
        }
    }
}

/// MobileNetV3-Large with every block tapped.
pub struct MobileNetV3 {
    config: MobileNetV3Config,
    stem: Conv,
    blocks: Vec<Block>,
    head: Linear,
    classifier: Linear,
    program: FrozenProgram,
}

impl MobileNetV3 {
    /// Builds the network from timm-named parameters.
    pub fn new(vb: VarBuilder, config: MobileNetV3Config) -> Result<Self> {
        let stem_channels = if config.multiplier < 0.75 {
            STEM_CHANNELS
        } else {
            config.channels(STEM_CHANNELS)
        };
        let stem = Conv::load_with_batch_norm(
            vb.pp("conv_stem"),
            vb.pp("bn1"),
            ConvSpec {
                in_channels: 3,
                out_channels: stem_channels,
                kernel: 3,
                stride: 2,
                padding: Padding::Symmetric(1),
                groups: 1,
            },
            BN_EPS,
        )?;
        let mut blocks = Vec::new();
        let mut in_c = stem_channels;
        let mut index_in_stage = [0usize; 7];
        for (row, &(kind, repeats, k, first_stride, exp, out, se, hswish)) in
            LARGE.iter().enumerate()
        {
            let stage = STAGE_OF_ROW[row];
            let out_c = config.channels(out);
            for r in 0..repeats {
                let stride = if r == 0 { first_stride } else { 1 };
                let vb_block = vb.pp(format!("blocks.{stage}.{}", index_in_stage[stage]));
                index_in_stage[stage] += 1;
                blocks.push(load_block(
                    vb_block, kind, k, stride, exp, in_c, out_c, se, hswish,
                )?);
                in_c = out_c;
            }
        }
        let head_w = vb
            .pp("conv_head")
            .get((config.head_features, in_c, 1, 1), "weight")?
            .reshape((config.head_features, in_c))?;
        let head_b = vb.pp("conv_head").get(config.head_features, "bias")?;
        let head = Linear::new(head_w, head_b);
        let classifier = Linear::load(
            vb.pp("classifier"),
            config.head_features,
            config.num_classes,
        )?;
        let mut net = Self {
            config,
            stem,
            blocks,
            head,
            classifier,
            program: FrozenProgram::default(),
        };
        net.program = net.build_program()?;
        Ok(net)
    }

    /// The tap name of block `i` (the last one, a plain convolution, is `head`).
    fn tap_name(&self, i: usize) -> String {
        if i + 1 == self.blocks.len() {
            "head".to_string()
        } else {
            format!("block{i}")
        }
    }

    /// The same layers as [`Backbone::forward_with`], as one fast op.
    fn build_program(&self) -> Result<FrozenProgram> {
        let mut program = ProgramBuilder::default();
        let Some(stem) = self.stem.program_op(Activation::Identity)? else {
            candle_core::bail!("the stem is not a plain convolution");
        };
        program.push(stem, None);
        program.push(ProgramOp::HardSwish, Some("stem"));
        for (i, block) in self.blocks.iter().enumerate() {
            block.program(&mut program, &self.tap_name(i))?;
        }
        program.push(ProgramOp::GlobalAvgPool, None);
        program.push(self.head.program_op(Activation::Identity)?, None);
        program.push(ProgramOp::HardSwish, Some("pre_logits"));
        program.push(
            self.classifier.program_op(Activation::Identity)?,
            Some("logits"),
        );
        Ok(program.build())
    }
}

#[allow(clippy::too_many_arguments)]
fn load_block(
    vb: VarBuilder,
    kind: BlockKind,
    kernel: usize,
    stride: usize,
    exp: f64,
    in_c: usize,
    out_c: usize,
    se: bool,
    hard_swish: bool,
) -> Result<Block> {
    let conv = |name: &str, bn: &str, i: usize, o: usize, k: usize, s: usize, groups: usize| {
        Conv::load_with_batch_norm(
            vb.pp(name),
            vb.pp(bn),
            ConvSpec {
                in_channels: i,
                out_channels: o,
                kernel: k,
                stride: s,
                padding: Padding::Symmetric(k / 2),
                groups,
            },
            BN_EPS,
        )
    };
    let residual = stride == 1 && in_c == out_c && kind != BlockKind::ConvBnAct;
    let block = match kind {
        BlockKind::DepthwiseSeparable => Block {
            expand: None,
            depthwise: Some(conv("conv_dw", "bn1", in_c, in_c, kernel, stride, in_c)?),
            se: se
                .then(|| SqueezeExcite::load(vb.pp("se"), in_c))
                .transpose()?,
            project: conv("conv_pw", "bn2", in_c, out_c, 1, 1, 1)?,
            project_activated: false,
            hard_swish,
            residual,
        },
        BlockKind::InvertedResidual => {
            let mid = make_divisible(in_c as f64 * exp);
            Block {
                expand: Some(conv("conv_pw", "bn1", in_c, mid, 1, 1, 1)?),
                depthwise: Some(conv("conv_dw", "bn2", mid, mid, kernel, stride, mid)?),
                se: se
                    .then(|| SqueezeExcite::load(vb.pp("se"), mid))
                    .transpose()?,
                project: conv("conv_pwl", "bn3", mid, out_c, 1, 1, 1)?,
                project_activated: false,
                hard_swish,
                residual,
            }
        }
        BlockKind::ConvBnAct => Block {
            expand: None,
            depthwise: None,
            se: None,
            project: conv("conv", "bn1", in_c, out_c, kernel, stride, 1)?,
            project_activated: true,
            hard_swish,
            residual,
        },
    };
    Ok(block)
}

impl Backbone for MobileNetV3 {
    fn arch(&self) -> Arch {
        Arch::MobileNetV3Large
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn embedding_dim(&self) -> usize {
        self.config.head_features
    }

    fn program(&self) -> Option<&FrozenProgram> {
        Some(&self.program)
    }

    fn forward_with(&self, x: &Tensor, sink: TapSink) -> Result<Tensor> {
        let mut x = hard_swish(&self.stem.forward(x)?)?;
        sink("stem", TapKind::Stem, &x);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x)?;
            let kind = if i + 1 == self.blocks.len() {
                TapKind::Head
            } else {
                TapKind::Block
            };
            sink(&self.tap_name(i), kind, &x);
        }
        let pooled = global_avg_pool(&x)?;
        let features = hard_swish(&self.head.forward(&pooled)?)?;
        sink("pre_logits", TapKind::Fc, &features);
        let logits = self.classifier.forward(&features)?;
        sink("logits", TapKind::Logits, &logits);
        Ok(logits)
    }

    /// timm's pre-logits: the pooled last features through `conv_head` and hard-swish,
    /// `[B, 1280]` (what a new classifier replaces `classifier` on).
    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_until(x, Some("pre_logits"))
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
