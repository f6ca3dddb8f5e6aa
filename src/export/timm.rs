//! A classifier's weights under timm's parameter names.
//!
//! cnn-explorer folds each batch norm into its convolution when it loads weights, so what is
//! exported is the folded convolution and an identity batch norm (weight 1, running mean 0,
//! running variance `1 - eps`, bias the folded bias): `(x - 0) / sqrt(1 - eps + eps) * 1 + b`
//! is the folded layer exactly. The head becomes timm's classifier (`Linear(D, classes)`), or
//! for an MLP head `classifier.0` and `classifier.3` of
//! `Sequential(Linear, ReLU, Dropout, Linear)`.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::model::network::{Layer, Step};
use crate::model::TimmLayout;
use crate::train::head::{Head, HeadKind};

/// The tensors of `steps` (the classifier's layers, see
/// [`classifier_steps`](super::classifier_steps)) under `layout`'s names, the head's under its
/// classifier's.
pub fn state_dict(
    steps: &[Step],
    layout: &TimmLayout,
    head: &Head,
) -> Result<BTreeMap<String, Tensor>> {
    let convs: Vec<_> = steps
        .iter()
        .filter_map(|s| match &s.layer {
            Layer::Conv(c) => Some(c),
            Layer::ResidualAdd {
                shortcut: Some(c), ..
            } => Some(c),
            _ => None,
        })
        .collect();
    if convs.len() != layout.convs.len() {
        return Err(Error::Invalid(format!(
            "{} has {} convolutions, this network {}",
            layout.model,
            layout.convs.len(),
            convs.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (conv, (conv_name, bn_name)) in convs.into_iter().zip(&layout.convs) {
        let bias = &conv.bias;
        let n = bias.dim(0)?;
        let dev = bias.device();
        out.insert(format!("{conv_name}.weight"), conv.weight.clone());
        out.insert(
            format!("{bn_name}.weight"),
            Tensor::ones(n, DType::F32, dev)?,
        );
        out.insert(format!("{bn_name}.bias"), bias.clone());
        out.insert(
            format!("{bn_name}.running_mean"),
            Tensor::zeros(n, DType::F32, dev)?,
        );
        let var = (1.0 - layout.bn_eps) as f32;
        out.insert(format!("{bn_name}.running_var"), Tensor::full(var, n, dev)?);
        out.insert(
            format!("{bn_name}.num_batches_tracked"),
            Tensor::zeros((), DType::I64, dev)?,
        );
    }
    let classifier = layout.classifier;
    let names: &[(&str, String)] = match head.kind {
        HeadKind::Linear => &[("fc", classifier.to_string())],
        HeadKind::Mlp { .. } => &[
            ("fc1", format!("{classifier}.0")),
            ("fc2", format!("{classifier}.3")),
        ],
    };
    for (ours, theirs) in names {
        for part in ["weight", "bias"] {
            let t = head.weights.get(&format!("{ours}.{part}")).ok_or_else(|| {
                Error::Invalid(format!("the head lacks its weight {ours}.{part}"))
            })?;
            out.insert(format!("{theirs}.{part}"), t.clone());
        }
    }
    Ok(out)
}
