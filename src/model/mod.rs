//! Pretrained CNN backbones whose every layer can be looked at and differentiated.
//!
//! One forward pass gives the logits plus every tapped activation under a stable name
//! (`conv1_1`, `pool3`, `block7`, ...); [`Backbone::embed`] gives the pooled embedding used for
//! transfer learning. Every op keeps gradients to the input (no fused softmax, no ReLU on the
//! logits), so the same models serve "Dream class" and the adversarial attack.

pub mod cpu_ops;
pub mod efficientnet_lite;
pub mod layers;
pub mod mobilenet_v3;
pub mod program;
pub mod resnet;
pub mod vgg;
mod winograd;

use std::fmt;

use candle_core::{Result, Tensor};
use serde::Serialize;

/// The architectures cnn-explorer implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Vgg16,
    Vgg19,
    EfficientNetLite0,
    ResNet18,
    ResNet50,
    MobileNetV3Large,
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Vgg16 => "VGG-16",
            Self::Vgg19 => "VGG-19",
            Self::EfficientNetLite0 => "EfficientNet-Lite0",
            Self::ResNet18 => "ResNet-18",
            Self::ResNet50 => "ResNet-50",
            Self::MobileNetV3Large => "MobileNetV3-Large",
        })
    }
}

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

/// A pretrained classification CNN.
pub trait Backbone: Send + Sync {
    fn arch(&self) -> Arch;

    /// Number of classes of the logits (1000 for ImageNet).
    fn num_classes(&self) -> usize;

    /// Size of [`Backbone::embed`]'s vectors.
    fn embedding_dim(&self) -> usize;

    /// The forward pass, `[B, 3, H, W]` -> logits `[B, classes]`, reporting every tap to `sink`
    /// (the logits last, as `logits`).
    fn forward_with(&self, x: &Tensor, sink: TapSink) -> Result<Tensor>;

    /// The pooled embedding for transfer learning: the last convolutional features averaged
    /// over space, `[B, 3, H, W]` -> `[B, embedding_dim]`.
    fn embed(&self, x: &Tensor) -> Result<Tensor>;

    /// The last convolutional block, where the model can fine-tune it.
    fn last_block(&self) -> Option<LastBlock> {
        None
    }

    /// The network as one fast CPU op (see [`program`]), where the model has one.
    fn program(&self) -> Option<&program::FrozenProgram> {
        None
    }

    /// Logits `[B, classes]` of `[B, 3, H, W]` images.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_until(x, None)
    }

    /// The activation of tap `until` (`[B, C, H, W]` or `[B, F]`; the logits when `None`),
    /// computing only the layers up to it where the model has a [`Backbone::program`] for
    /// `x`'s device. Gradients flow to `x` when it tracks them (dreams, attacks).
    fn forward_until(&self, x: &Tensor, until: Option<&str>) -> Result<Tensor> {
        if let Some(program) = self.program().filter(|p| p.supports(x)) {
            return program.run(x, until);
        }
        let Some(name) = until else {
            return self.forward_with(x, &mut |_, _, _| {});
        };
        let mut found = None;
        self.forward_with(x, &mut |tap, _, t| {
            if tap == name {
                found = Some(t.clone());
            }
        })?;
        found.ok_or_else(|| candle_core::Error::Msg(format!("no layer named {name}")))
    }

    /// Every tap of one forward pass, in network order, the logits last.
    fn forward_taps(&self, x: &Tensor) -> Result<Vec<Tap>> {
        let mut taps = Vec::new();
        self.forward_with(x, &mut |name, kind, tensor| {
            taps.push(Tap {
                name: name.to_string(),
                kind,
                tensor: tensor.clone(),
            })
        })?;
        Ok(taps)
    }
}
