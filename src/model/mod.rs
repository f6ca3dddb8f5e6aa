//! Pretrained CNN backbones whose every layer can be looked at and differentiated.
//!
//! One forward pass gives the logits plus every tapped activation under a stable name
//! (`conv1_1`, `pool3`, `block7`, ...); [`Backbone::embed`] gives the pooled embedding used for
//! transfer learning. Every op keeps gradients to the input (no fused softmax, no ReLU on the
//! logits), so the same models serve "Dream class" and the adversarial attack.
//!
//! Each architecture file (`vgg.rs`, `resnet.rs`, `mobilenet_v3.rs`, `efficientnet_lite.rs`)
//! loads its weights into one [`network::Network`], the network's only description; it runs
//! through [`program`] (our CPU kernels, one op) or [`reference`] (candle's ops, any device).

pub mod efficientnet_lite;
pub mod engine;
pub mod layers;
pub mod mobilenet_v3;
pub mod network;
pub mod program;
pub mod receptive;
pub mod reference;
pub mod resnet;
pub mod vgg;

use std::fmt;

use candle_core::{Result, Tensor};
use serde::Serialize;

pub use network::{BlockConv, LastBlock, Tap, TapKind, TapSink};

/// The architectures cnn-explorer implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Vgg16,
    Vgg19,
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
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
            Self::EfficientNetLite1 => "EfficientNet-Lite1",
            Self::EfficientNetLite2 => "EfficientNet-Lite2",
            Self::ResNet18 => "ResNet-18",
            Self::ResNet50 => "ResNet-50",
            Self::MobileNetV3Large => "MobileNetV3-Large",
        })
    }
}

impl Arch {
    /// Every architecture, in catalogue order.
    pub const ALL: [Arch; 8] = [
        Self::Vgg16,
        Self::Vgg19,
        Self::EfficientNetLite0,
        Self::EfficientNetLite1,
        Self::EfficientNetLite2,
        Self::ResNet18,
        Self::ResNet50,
        Self::MobileNetV3Large,
    ];
}

/// Serde for an [`Arch`] as its display name (`"VGG-16"`), where a report shows it to people.
pub mod arch_display_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Arch;

    pub fn serialize<S: Serializer>(arch: &Arch, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(arch)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        let name = String::deserialize(d)?;
        Arch::ALL
            .into_iter()
            .find(|a| a.to_string() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("no architecture named {name}")))
    }
}

/// Where a backbone's embedding comes from: a tap, averaged over space when `pooled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingTap<'a> {
    pub name: &'a str,
    pub pooled: bool,
}

impl EmbeddingTap<'_> {
    /// The embedding `[B, D]` of this tap's activation (`[B, D, H, W]` when pooled, else
    /// `[B, D]`); differentiable.
    pub fn embed(&self, activation: &Tensor) -> Result<Tensor> {
        if self.pooled {
            reference::global_avg_pool(activation)
        } else {
            Ok(activation.clone())
        }
    }
}

/// Where a backbone's layers sit in timm's model of the same architecture, so a classifier
/// can be exported with timm's parameter names.
#[derive(Debug, Clone, PartialEq)]
pub struct TimmLayout {
    /// The `timm.create_model` name.
    pub model: &'static str,
    /// Where the names come from.
    pub names: TimmNames,
    /// timm's batch-norm epsilon for this model.
    pub bn_eps: f64,
    /// The classifier module the head becomes (`classifier`, `fc`, `head.fc`).
    pub classifier: &'static str,
    /// A Python line to run on `timm.create_model(model, num_classes=N)` before loading where
    /// timm's model differs from ours before the classifier (VGG: no `pre_logits`, so the
    /// classifier is replaced too, to take the pooled features).
    pub setup: Option<&'static str>,
}

/// How a backbone's layers are named in timm.
#[derive(Debug, Clone, PartialEq)]
pub enum TimmNames {
    /// Each layer's [`Origin`](network::Origin): the checkpoint's names are timm's
    /// (torchvision's ResNet and VGG, timm's own MobileNetV3).
    Origins,
    /// Per convolution of the network up to the embedding, in step order: the convolution's
    /// and its batch norm's module names (EfficientNet-Lite, whose checkpoint names are
    /// another package's).
    Listed(Vec<(String, String)>),
}

/// A pretrained classification CNN.
pub trait Backbone: Send + Sync {
    fn arch(&self) -> Arch;

    /// Number of classes of the logits (1000 for ImageNet).
    fn num_classes(&self) -> usize;

    /// Size of [`Backbone::embed`]'s vectors.
    fn embedding_dim(&self) -> usize;

    /// The layers (the one description both ways of running them share) and their program.
    fn engine(&self) -> &engine::Engine;

    /// The tap [`Backbone::embed`] reads, and whether it averages it over space.
    fn embedding_tap(&self) -> EmbeddingTap<'_>;

    /// The pooled embedding for transfer learning: the last convolutional features averaged
    /// over space (MobileNetV3: timm's pre-logits), `[B, 3, H, W]` -> `[B, embedding_dim]`.
    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let tap = self.embedding_tap();
        tap.embed(&self.forward_until(x, Some(tap.name))?)
    }

    /// Its layers' places in timm's model, where cnn-explorer knows them.
    fn timm_layout(&self) -> Option<TimmLayout> {
        None
    }

    /// The last convolutional block, where the model can fine-tune it.
    fn last_block(&self) -> Option<LastBlock> {
        None
    }

    /// The network as one fast CPU op (see [`program`]), where its weights allow one.
    fn program(&self) -> Option<&program::FrozenProgram> {
        self.engine().program()
    }

    /// The layers, as the one description both ways of running them share.
    fn network(&self) -> &network::Network {
        self.engine().network()
    }

    /// The forward pass, `[B, 3, H, W]` -> logits `[B, classes]`, reporting every tap to `sink`
    /// (the logits last, as `logits`).
    fn forward_with(&self, x: &Tensor, sink: TapSink) -> Result<Tensor> {
        self.engine().forward_with(x, sink)
    }

    /// Logits `[B, classes]` of `[B, 3, H, W]` images.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_until(x, None)
    }

    /// The activation of tap `until` (`[B, C, H, W]` or `[B, F]`; the logits when `None`),
    /// computing only the layers up to it. Gradients flow to `x` when it tracks them (dreams,
    /// attacks).
    fn forward_until(&self, x: &Tensor, until: Option<&str>) -> Result<Tensor> {
        self.engine().forward_until(x, until)
    }

    /// The activations of several taps (by name; the logits for `None`), in the order asked,
    /// from **one** pass up to the deepest; gradients flow to `x` from all of them.
    fn forward_at(&self, x: &Tensor, untils: &[Option<&str>]) -> Result<Vec<Tensor>> {
        self.engine().forward_at(x, untils)
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
