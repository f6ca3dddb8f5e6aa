//! What a dream maximises, for each member of a batch, and Lucid's diversity term.

use std::collections::BTreeMap;

use candle_core::{DType, IndexOp, Tensor, D};

use crate::error::{Error, Result};
use crate::model::{Backbone, TapKind};

/// What a dream maximises.
#[derive(Debug, Clone, PartialEq)]
pub enum DreamTarget {
    /// An ImageNet class: its logit (or log-softmax).
    Class(usize),
    /// One class and not another ("tabby, not tiger cat"): the difference of their logits.
    ClassMinus { class: usize, minus: usize },
    /// The mean activation of one channel of one layer.
    Channel { layer: String, channel: usize },
    /// What a channel hates: the negative of its mean activation.
    NegativeChannel { layer: String, channel: usize },
    /// One neuron: a channel at the centre position of its map.
    Neuron { layer: String, channel: usize },
}

impl DreamTarget {
    /// The layer the target reads, `None` for the logits.
    pub fn layer(&self) -> Option<&str> {
        match self {
            Self::Class(_) | Self::ClassMinus { .. } => None,
            Self::Channel { layer, .. }
            | Self::NegativeChannel { layer, .. }
            | Self::Neuron { layer, .. } => Some(layer),
        }
    }

    /// The class whose probability tells how the dream is doing, for class targets.
    pub fn class(&self) -> Option<usize> {
        match self {
            Self::Class(c) | Self::ClassMinus { class: c, .. } => Some(*c),
            _ => None,
        }
    }

    /// A short description ("tabby", "block5 channel 3 (negative)").
    pub fn describe(&self, label: impl Fn(usize) -> String) -> String {
        match self {
            Self::Class(c) => label(*c),
            Self::ClassMinus { class, minus } => {
                format!("{}, not {}", label(*class), label(*minus))
            }
            Self::Channel { layer, channel } => format!("{layer} channel {channel}"),
            Self::NegativeChannel { layer, channel } => {
                format!("{layer} channel {channel} (negative)")
            }
            Self::Neuron { layer, channel } => format!("{layer} channel {channel}, centre neuron"),
        }
    }

    /// Checks the classes against the model (channels are checked against the layer's shape
    /// when it is first computed).
    pub(super) fn check(&self, classes: usize) -> Result<()> {
        let check = |c: usize| {
            if c >= classes {
                Err(Error::Invalid(format!(
                    "there is no class {c} (the model has {classes})"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            Self::Class(c) => check(*c),
            Self::ClassMinus { class, minus } => {
                check(*class)?;
                check(*minus)?;
                if class == minus {
                    return Err(Error::Invalid("a class minus itself is always zero".into()));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// One forward pass's objective for a batch.
pub(super) struct Scores {
    /// What the step ascends: the members' scores summed, less the diversity term.
    pub total: Tensor,
    /// Each member's own score, `[B]`.
    pub members: Vec<f32>,
    /// Lucid's diversity (the mean Gram similarity of a member to the others), 0 for one.
    pub similarity: f32,
    /// The logits `[B, classes]`, not differentiated (for the probabilities shown).
    pub logits: Tensor,
}

/// The score of `target` for member `b` of `tap` (`[B, C, H, W]` or `[B, F]`).
fn channel_score(
    tap: &Tensor,
    b: usize,
    layer: &str,
    channel: usize,
    neuron: bool,
) -> Result<Tensor> {
    let channels = tap.dim(1)?;
    if channel >= channels {
        return Err(Error::Invalid(format!(
            "{layer} has {channels} channels, not {}",
            channel + 1
        )));
    }
    let t = tap.i((b, channel))?;
    Ok(match t.rank() {
        2 if neuron => {
            let (h, w) = t.dims2()?;
            t.i((h / 2, w / 2))?
        }
        _ => t.mean_all()?,
    })
}

/// Lucid's diversity: the Gram matrices `[C, C]` of each member at `tap` `[B, C, H, W]`,
/// normalised, and their mean dot product with the other members' (0 when alone, at most B-1).
pub(super) fn gram_similarity(tap: &Tensor) -> Result<Tensor> {
    let b = tap.dim(0)?;
    let c = tap.dim(1)?;
    let flat = tap.reshape((b, c, ()))?;
    let gram = flat.matmul(&flat.t()?)?;
    let norm = (gram.sqr()?.sum_keepdim((1, 2))?.sqrt()? + 1e-12)?;
    let gram = gram.broadcast_div(&norm)?.reshape((b, c * c))?;
    // The diagonal is each member with itself, 1 (a constant).
    let all = gram.matmul(&gram.t()?)?.sum_all()?;
    Ok(((all - b as f64)? / b as f64)?)
}

/// The default layer for the diversity term: a map about two thirds of the way in (textures
/// and parts, where Lucid's examples put it).
pub(super) fn diversity_layer(backbone: &dyn Backbone) -> Option<String> {
    let maps: Vec<&str> = backbone
        .network()
        .steps()
        .iter()
        .filter_map(|s| s.tap.as_ref())
        .filter(|t| matches!(t.kind, TapKind::Conv | TapKind::Block | TapKind::Pool))
        .map(|t| t.name.as_str())
        .collect();
    maps.get(maps.len() * 2 / 3).map(|s| s.to_string())
}

/// The objective of `targets` (one per member of `input` `[B, 3, S, S]`), with diversity
/// weighted by `diversity` at `diversity_layer` when there are several members.
pub(super) fn scores(
    backbone: &dyn Backbone,
    input: &Tensor,
    targets: &[DreamTarget],
    log_softmax: bool,
    diversity: Option<(&str, f64)>,
) -> Result<Scores> {
    let batch = input.dim(0)?;
    // With several members the similarity is always reported; it is ascended against only
    // when weighted.
    let diversity = diversity.filter(|_| batch > 1);
    let weighted = diversity.filter(|(_, w)| *w != 0.0);
    // Every layer the objective reads (and the logits, for class targets) comes from one
    // pass with gradients.
    let classes = targets.iter().any(|t| t.layer().is_none());
    let mut wanted: Vec<Option<&str>> = Vec::new();
    for layer in targets
        .iter()
        .filter_map(DreamTarget::layer)
        .chain(weighted.map(|(l, _)| l))
    {
        if !wanted.contains(&Some(layer)) {
            wanted.push(Some(layer));
        }
    }
    if classes {
        wanted.push(None);
    }
    let mut outputs = backbone.forward_at(input, &wanted)?;
    let logits = if classes {
        outputs
            .pop()
            .ok_or_else(|| Error::Invalid("no logits".into()))?
    } else {
        // Only for reporting the members' probabilities.
        backbone.forward(&input.detach())?
    };
    let taps: BTreeMap<&str, Tensor> = wanted.iter().flatten().copied().zip(outputs).collect();
    let class_scores = if log_softmax {
        candle_nn::ops::log_softmax(&logits, D::Minus1)?
    } else {
        logits.clone()
    };
    let mut member_scores = Vec::with_capacity(batch);
    for (b, target) in targets.iter().enumerate() {
        let tap = |layer: &str| {
            taps.get(layer)
                .ok_or_else(|| Error::Invalid(format!("no layer named {layer}")))
        };
        let score = match target {
            DreamTarget::Class(c) => class_scores.i((b, *c))?,
            DreamTarget::ClassMinus { class, minus } => {
                (logits.i((b, *class))? - logits.i((b, *minus))?)?
            }
            DreamTarget::Channel { layer, channel } => {
                channel_score(tap(layer)?, b, layer, *channel, false)?
            }
            DreamTarget::NegativeChannel { layer, channel } => {
                channel_score(tap(layer)?, b, layer, *channel, false)?.neg()?
            }
            DreamTarget::Neuron { layer, channel } => {
                channel_score(tap(layer)?, b, layer, *channel, true)?
            }
        };
        member_scores.push(score);
    }
    let members: Vec<f32> = member_scores
        .iter()
        .map(|s| s.to_dtype(DType::F32)?.to_scalar::<f32>())
        .collect::<candle_core::Result<_>>()?;
    let mut total = Tensor::stack(&member_scores, 0)?.sum_all()?;
    let mut similarity = 0.0;
    if let Some((layer, weight)) = diversity {
        let tap = match taps.get(layer) {
            Some(tap) => tap.clone(),
            // Unweighted: measured only, without gradients (the fast path).
            None => backbone.forward_until(&input.detach(), Some(layer))?,
        };
        if tap.rank() != 4 {
            return Err(Error::Invalid(format!(
                "diversity needs a layer of maps; {layer} is a vector"
            )));
        }
        let sim = gram_similarity(&tap)?;
        similarity = sim.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if weight != 0.0 {
            total = (total - (sim * weight)?)?;
        }
    }
    Ok(Scores {
        total,
        members,
        similarity,
        logits: logits.detach(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn identical_members_are_fully_similar_and_different_ones_less() {
        let d = Device::Cpu;
        let one = Tensor::rand(0f32, 1.0, (1, 4, 5, 5), &d).unwrap();
        let same = Tensor::cat(&[&one, &one, &one], 0).unwrap();
        let s = gram_similarity(&same).unwrap().to_scalar::<f32>().unwrap();
        // Each of 3 members has 2 others at similarity 1.
        assert!((s - 2.0).abs() < 1e-4, "{s}");
        let mut other = vec![0f32; 4 * 25];
        other[..25].iter_mut().for_each(|v| *v = 1.0);
        let other = Tensor::from_vec(other, (1, 4, 5, 5), &d).unwrap();
        let mixed = Tensor::cat(&[&one, &other], 0).unwrap();
        let s = gram_similarity(&mixed).unwrap().to_scalar::<f32>().unwrap();
        assert!(s < 0.9, "{s}");
        assert!(
            gram_similarity(&one)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .abs()
                < 1e-5
        );
    }

    #[test]
    fn targets_know_their_layer_and_class_and_refuse_bad_classes() {
        let t = DreamTarget::ClassMinus {
            class: 281,
            minus: 282,
        };
        assert_eq!(t.layer(), None);
        assert_eq!(t.class(), Some(281));
        assert!(t.check(1000).is_ok());
        assert!(DreamTarget::ClassMinus { class: 3, minus: 3 }
            .check(1000)
            .is_err());
        assert!(DreamTarget::Class(1000).check(1000).is_err());
        let n = DreamTarget::Neuron {
            layer: "block5".into(),
            channel: 2,
        };
        assert_eq!(n.layer(), Some("block5"));
        assert_eq!(
            n.describe(|c| c.to_string()),
            "block5 channel 2, centre neuron"
        );
    }
}
