//! The one description of a network: a flat list of layers, some of them tapped.
//!
//! Each backbone (`vgg.rs`, `resnet.rs`, ...) only loads its weights into this list. Both ways
//! of running it come from here: [`crate::model::reference`] runs the layers with candle's own
//! ops on any device (CUDA, Metal, and the reference the tests compare against), and
//! [`crate::model::program`] runs them as one fast differentiable op with our CPU kernels.
//! A residual block is written as [`Layer::ResidualStart`] ... [`Layer::ResidualAdd`]: the
//! activation at the start is added back at the end (through a 1x1 projection where the
//! shape changes).

use candle_core::{Result, Tensor};
use serde::Serialize;

use crate::kernels::{Activation, Padding, PoolWindow};

/// What kind of layer a tap sits after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TapKind {
    /// The first convolution (the stem), after its activation.
    Stem,
    /// A convolution, after its ReLU.
    Conv,
    /// A max-pooling layer.
    Pool,
    /// A residual or inverted-residual block's output.
    Block,
    /// The last 1x1 convolution before pooling (EfficientNet's head, MobileNetV3's last
    /// block), after its activation.
    Head,
    /// A fully connected layer, after its activation.
    Fc,
    /// The class scores (before softmax).
    Logits,
}

/// One tapped activation of a forward pass.
#[derive(Debug, Clone)]
pub struct Tap {
    pub name: String,
    pub kind: TapKind,
    /// `[B, C, H, W]` for convolutional taps, `[B, F]` for fc taps and logits.
    pub tensor: Tensor,
}

/// A backbone's last convolutional block, for fine-tuning: convolutions (stride 1, batch norm
/// folded) each followed by its activation, from tap `input_tap` to the features that
/// [`Backbone::embed`] averages.
#[derive(Debug, Clone)]
pub struct LastBlock {
    /// The tap whose activation `[B, C, H, W]` enters the block.
    pub input_tap: String,
    pub convs: Vec<BlockConv>,
    /// A 2x2 max-pool after the convolutions (VGG's last pool).
    pub max_pool: bool,
    /// The block's input is added to the last convolution's output before its activation
    /// (ResNet's identity skip).
    pub residual: bool,
}

/// One convolution of a [`LastBlock`].
#[derive(Debug, Clone)]
pub struct BlockConv {
    /// `[out, in, k, k]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
    /// Zero padding on every side.
    pub padding: usize,
    /// ReLU6 after it (else ReLU).
    pub relu6: bool,
}

/// Receives each tap as the forward pass produces it.
pub type TapSink<'a> = &'a mut dyn FnMut(&str, TapKind, &Tensor);

/// Where a layer's weights were read from in its checkpoint (PyTorch module names), so that an
/// export can write them back under the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The module holding the weight (`layer1.0.conv1`, `features.0`, `blocks.1.0.se.conv_reduce`).
    pub module: String,
    /// The batch norm folded into it, if any (`layer1.0.bn1`).
    pub batch_norm: Option<String>,
    /// Whether the checkpoint holds it as a 1x1 convolution (`[out, in, 1, 1]`) where it runs
    /// as a linear layer on pooled features.
    pub pointwise: bool,
}

/// A convolution (dense, or depthwise), its bias and activation, batch norm already folded.
#[derive(Debug, Clone)]
pub struct ConvLayer {
    /// `[C_out, C_in, k, k]`, or `[C, 1, k, k]` when depthwise.
    pub weight: Tensor,
    /// `[C_out]`.
    pub bias: Tensor,
    pub stride: usize,
    pub padding: Padding,
    pub depthwise: bool,
    pub activation: Activation,
    /// Its checkpoint names (`None` for layers made in code).
    pub origin: Option<Origin>,
}

impl ConvLayer {
    /// Checks the shapes: a square kernel, a bias per output channel, one input channel per
    /// kernel when depthwise.
    pub fn new(
        weight: Tensor,
        bias: Tensor,
        (stride, padding): (usize, Padding),
        depthwise: bool,
        activation: Activation,
    ) -> Result<Self> {
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        if kh != kw || stride == 0 || (depthwise && c_in != 1) || bias.dims() != [c_out] {
            candle_core::bail!(
                "a convolution of kernel {:?} and bias {:?} (stride {stride}, depthwise \
                 {depthwise}) is not one this network can have",
                weight.dims(),
                bias.dims()
            );
        }
        Ok(Self {
            weight: weight.contiguous()?,
            bias: bias.contiguous()?,
            stride,
            padding,
            depthwise,
            activation,
            origin: None,
        })
    }

    /// The kernel side `k`.
    pub fn kernel(&self) -> usize {
        self.weight.dims().get(2).copied().unwrap_or(0)
    }

    /// As a fine-tunable convolution, `None` unless plain (dense, stride 1, padded alike on
    /// every side, ReLU or ReLU6 after it or `activation_after` from a residual end).
    fn block_conv(&self, activation: Activation) -> Option<BlockConv> {
        let k = self.kernel();
        let padding = match self.padding {
            Padding::Symmetric(p) => p,
            // Stride 1: TF "same" pads (k-1)/2 each side, evenly for odd kernels.
            Padding::TfSame if k % 2 == 1 => (k - 1) / 2,
            Padding::TfSame => return None,
        };
        let relu6 = match activation {
            Activation::Relu => false,
            Activation::Relu6 => true,
            Activation::Identity => return None,
        };
        (!self.depthwise && self.stride == 1).then(|| BlockConv {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            padding,
            relu6,
        })
    }
}

/// A fully connected layer on the flattened activation: `x @ weight^T + bias`, then the
/// activation.
#[derive(Debug, Clone)]
pub struct LinearLayer {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
    pub activation: Activation,
    /// Its checkpoint names (`None` for layers made in code, such as a trained head).
    pub origin: Option<Origin>,
}

impl LinearLayer {
    /// Checks that the bias has one value per output.
    pub fn new(weight: Tensor, bias: Tensor, activation: Activation) -> Result<Self> {
        let (out, _) = weight.dims2()?;
        if bias.dims() != [out] {
            candle_core::bail!(
                "a {:?} linear layer with a {:?} bias",
                weight.dims(),
                bias.dims()
            );
        }
        Ok(Self {
            weight: weight.contiguous()?,
            bias: bias.contiguous()?,
            activation,
            origin: None,
        })
    }
}

/// Squeeze-and-excitation (MobileNetV3's): each channel scaled by
/// `hard_sigmoid(expand(relu(reduce(mean over space))))`.
#[derive(Debug, Clone)]
pub struct SqueezeExciteLayer {
    /// `[R, C]` and `[R]`, identity activation (the ReLU is part of the layer).
    pub reduce: LinearLayer,
    /// `[C, R]` and `[C]`.
    pub expand: LinearLayer,
}

/// One layer of a [`Network`].
#[derive(Debug, Clone)]
pub enum Layer {
    Conv(ConvLayer),
    /// Max-pooling over a window (VGG's 2x2/2, ResNet's 3x3/2 with padding 1).
    MaxPool(PoolWindow),
    /// PyTorch's `AdaptiveAvgPool2d((n, n))`.
    AdaptiveAvgPool(usize),
    /// Mean over space: `[B, C, H, W]` -> `[B, C]`.
    GlobalAvgPool,
    Linear(LinearLayer),
    /// Remembers the current activation for the matching [`Layer::ResidualAdd`].
    ResidualStart,
    /// Adds the remembered activation (through `shortcut` when given: ResNet's downsampling,
    /// a 1x1 convolution without activation), then the activation.
    ResidualAdd {
        shortcut: Option<ConvLayer>,
        activation: Activation,
    },
    /// `x * relu6(x + 3) / 6` (MobileNetV3's hard-swish), element-wise.
    HardSwish,
    SqueezeExcite(SqueezeExciteLayer),
}

impl Layer {
    /// A residual's plain end: the remembered activation added as is, nothing after.
    pub fn identity_add() -> Self {
        Self::ResidualAdd {
            shortcut: None,
            activation: Activation::Identity,
        }
    }

    /// The weight tensors of this layer.
    pub fn tensors(&self) -> Vec<&Tensor> {
        fn conv(c: &ConvLayer) -> Vec<&Tensor> {
            vec![&c.weight, &c.bias]
        }
        match self {
            Self::Conv(c) => conv(c),
            Self::Linear(l) => vec![&l.weight, &l.bias],
            Self::ResidualAdd {
                shortcut: Some(c), ..
            } => conv(c),
            Self::SqueezeExcite(se) => vec![
                &se.reduce.weight,
                &se.reduce.bias,
                &se.expand.weight,
                &se.expand.bias,
            ],
            _ => Vec::new(),
        }
    }
}

/// Where a step's output is shown: its tap name and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapPoint {
    pub name: String,
    pub kind: TapKind,
}

/// A layer and the tap its output is, if any.
#[derive(Debug, Clone)]
pub struct Step {
    pub layer: Layer,
    pub tap: Option<TapPoint>,
}

/// A network: its steps in order, `[B, 3, H, W]` -> logits `[B, classes]`.
#[derive(Debug, Clone)]
pub struct Network {
    steps: Vec<Step>,
}

/// Builds a [`Network`] step by step.
#[derive(Debug, Default)]
pub struct NetworkBuilder {
    steps: Vec<Step>,
}

impl NetworkBuilder {
    /// Appends an untapped layer.
    pub fn push(&mut self, layer: Layer) {
        self.steps.push(Step { layer, tap: None });
    }

    /// Appends untapped layers.
    pub fn extend(&mut self, layers: impl IntoIterator<Item = Layer>) {
        layers.into_iter().for_each(|layer| self.push(layer));
    }

    /// Appends a layer whose output is tap `name` of `kind`.
    pub fn push_tap(&mut self, layer: Layer, name: impl Into<String>, kind: TapKind) {
        let tap = Some(TapPoint {
            name: name.into(),
            kind,
        });
        self.steps.push(Step { layer, tap });
    }

    /// The network; fails on an empty one or on unmatched residual starts and ends.
    pub fn build(self) -> Result<Network> {
        let mut open = 0usize;
        for step in &self.steps {
            match step.layer {
                Layer::ResidualStart => open += 1,
                Layer::ResidualAdd { .. } => {
                    open = open.checked_sub(1).ok_or_else(|| {
                        candle_core::Error::Msg("residual add without a start".into())
                    })?
                }
                _ => {}
            }
        }
        if open != 0 || self.steps.is_empty() {
            candle_core::bail!(
                "a network of {} steps, {open} residuals left open",
                self.steps.len()
            );
        }
        Ok(Network { steps: self.steps })
    }
}

impl Network {
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The index of the step whose output is tap `name`.
    pub fn tap_index(&self, name: &str) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| s.tap.as_ref().is_some_and(|t| t.name == name))
    }

    /// The index of the last step to run for tap `until` (the logits when `None`).
    pub(crate) fn last_step(&self, until: Option<&str>) -> Result<usize> {
        match until {
            None => Ok(self.steps.len() - 1),
            Some(name) => self
                .tap_index(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("no layer named {name}"))),
        }
    }

    /// The trainable block from tap `input_tap` (excluded) to tap `output_tap` (included):
    /// plain convolutions, optionally a 2x2 max-pool after them, optionally inside one
    /// identity residual; `None` when the steps between are anything else.
    pub fn last_block(&self, input_tap: &str, output_tap: &str) -> Option<LastBlock> {
        let (from, to) = (self.tap_index(input_tap)?, self.tap_index(output_tap)?);
        let steps = self.steps.get(from + 1..=to)?;
        let (residual, inner) = match steps {
            [Step {
                layer: Layer::ResidualStart,
                ..
            }, inner @ .., Step {
                layer:
                    Layer::ResidualAdd {
                        shortcut: None,
                        activation,
                    },
                ..
            }] => (Some(*activation), inner),
            _ => (None, steps),
        };
        let (max_pool, convs) = match inner {
            [convs @ .., Step {
                layer: Layer::MaxPool(PoolWindow::TWO_BY_TWO),
                ..
            }] if residual.is_none() => (true, convs),
            _ => (false, inner),
        };
        let last = convs.len().checked_sub(1)?;
        let convs = convs
            .iter()
            .enumerate()
            .map(|(i, step)| match &step.layer {
                // A residual's last convolution is activated after the sum.
                Layer::Conv(c) if i == last && residual.is_some() => match (c.activation, residual)
                {
                    (Activation::Identity, Some(after_sum)) => c.block_conv(after_sum),
                    _ => None,
                },
                Layer::Conv(c) => c.block_conv(c.activation),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(LastBlock {
            input_tap: input_tap.to_string(),
            convs,
            max_pool,
            residual: residual.is_some(),
        })
    }
}
