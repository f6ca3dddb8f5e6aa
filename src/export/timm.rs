//! A classifier's weights under timm's parameter names.
//!
//! cnn-explorer folds each batch norm into its convolution when it loads weights, so what is
//! exported is the folded convolution and an identity batch norm (weight 1, running mean 0,
//! running variance `1 - eps`, bias the folded bias): `(x - 0) / sqrt(1 - eps + eps) * 1 + b`
//! is the folded layer exactly. The names are the layers' own where the checkpoint had timm's
//! (each layer keeps its [`Origin`]), else the backbone's list. The head becomes timm's
//! classifier (`Linear(D, classes)`), or for an MLP head `classifier.0` and `classifier.3` of
//! `Sequential(Linear, ReLU, Dropout, Linear)`.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::model::network::{ConvLayer, Layer, LinearLayer, Origin, Step};
use crate::model::{TimmLayout, TimmNames};
use crate::train::head::{Head, HeadKind};

/// The tensors of `steps` (the backbone's layers up to the embedding, see
/// [`backbone_steps`](super::backbone_steps)) under `layout`'s names, the head's under its
/// classifier's.
pub fn state_dict(
    steps: &[Step],
    layout: &TimmLayout,
    head: &Head,
) -> Result<BTreeMap<String, Tensor>> {
    let mut out = Tensors {
        map: BTreeMap::new(),
        bn_eps: layout.bn_eps,
    };
    match &layout.names {
        TimmNames::Listed(names) => out.listed(steps, names, layout.model)?,
        TimmNames::Origins => out.by_origins(steps)?,
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
            out.insert(format!("{theirs}.{part}"), t.clone())?;
        }
    }
    Ok(out.map)
}

/// The state dict being written.
struct Tensors {
    map: BTreeMap<String, Tensor>,
    bn_eps: f64,
}

impl Tensors {
    /// Adds one tensor; a name given twice is an error (two layers claiming one module).
    fn insert(&mut self, name: String, t: Tensor) -> Result<()> {
        if self.map.contains_key(&name) {
            return Err(Error::Invalid(format!("two layers export as {name}")));
        }
        self.map.insert(name, t);
        Ok(())
    }

    /// A weight and bias as `module`, the bias in an identity `batch_norm` if there is one.
    fn module(
        &mut self,
        weight: &Tensor,
        bias: &Tensor,
        module: &str,
        batch_norm: Option<&str>,
    ) -> Result<()> {
        self.insert(format!("{module}.weight"), weight.clone())?;
        let Some(bn) = batch_norm else {
            return self.insert(format!("{module}.bias"), bias.clone());
        };
        let n = bias.dim(0)?;
        let dev = bias.device();
        self.insert(format!("{bn}.weight"), Tensor::ones(n, DType::F32, dev)?)?;
        self.insert(format!("{bn}.bias"), bias.clone())?;
        self.insert(
            format!("{bn}.running_mean"),
            Tensor::zeros(n, DType::F32, dev)?,
        )?;
        let var = (1.0 - self.bn_eps) as f32;
        self.insert(format!("{bn}.running_var"), Tensor::full(var, n, dev)?)?;
        self.insert(
            format!("{bn}.num_batches_tracked"),
            Tensor::zeros((), DType::I64, dev)?,
        )
    }

    /// Every weighted layer under its own checkpoint names.
    fn by_origins(&mut self, steps: &[Step]) -> Result<()> {
        fn origin(o: &Option<Origin>) -> Result<&Origin> {
            o.as_ref().ok_or_else(|| {
                Error::Invalid("a layer of this network has no checkpoint name".into())
            })
        }
        let conv = |out: &mut Self, c: &ConvLayer| -> Result<()> {
            let o = origin(&c.origin)?;
            out.module(&c.weight, &c.bias, &o.module, o.batch_norm.as_deref())
        };
        let linear = |out: &mut Self, l: &LinearLayer| -> Result<()> {
            let o = origin(&l.origin)?;
            let weight = if o.pointwise {
                l.weight.unsqueeze(2)?.unsqueeze(3)?
            } else {
                l.weight.clone()
            };
            out.module(&weight, &l.bias, &o.module, o.batch_norm.as_deref())
        };
        for step in steps {
            match &step.layer {
                Layer::Conv(c)
                | Layer::ResidualAdd {
                    shortcut: Some(c), ..
                } => conv(self, c)?,
                Layer::Linear(l) => linear(self, l)?,
                Layer::SqueezeExcite(se) => {
                    linear(self, &se.reduce)?;
                    linear(self, &se.expand)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The convolutions of `steps` under `names` (convolution, batch norm), in order.
    fn listed(&mut self, steps: &[Step], names: &[(String, String)], model: &str) -> Result<()> {
        let mut weighted = 0;
        let mut convs = Vec::new();
        for step in steps {
            match &step.layer {
                Layer::Conv(c)
                | Layer::ResidualAdd {
                    shortcut: Some(c), ..
                } => convs.push(c),
                Layer::Linear(_) | Layer::SqueezeExcite(_) => weighted += 1,
                _ => {}
            }
        }
        if convs.len() != names.len() || weighted > 0 {
            return Err(Error::Invalid(format!(
                "{model} has {} convolutions and no other weights, this network {} and {weighted} \
                 other weighted layers",
                names.len(),
                convs.len()
            )));
        }
        for (c, (conv, bn)) in convs.into_iter().zip(names) {
            self.module(&c.weight, &c.bias, conv, Some(bn))?;
        }
        Ok(())
    }
}
