//! Where an adversarial photo fools the network: how much every layer's activation changed
//! between the original and the adversarial photo (relative L2, first layer to the logits),
//! and the Grad-CAM maps of the source and the target class on both.

use candle_core::Tensor;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::attribution::{attribute, Attribution, Method, Settings, Target};
use crate::error::{Error, Result};
use crate::inference::LoadedModel;

/// One layer's change: `||A(adv) - A(orig)|| / ||A(orig)||` over the whole tap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerChange {
    pub layer: String,
    pub relative_l2: f32,
}

/// The relative L2 change of every tap, in network order (the logits last), between inputs
/// `original` and `adversarial` `[1, 3, H, W]`.
pub fn layer_changes(
    model: &LoadedModel,
    original: &Tensor,
    adversarial: &Tensor,
) -> Result<Vec<LayerChange>> {
    let a = model.backbone.forward_taps(original)?;
    let b = model.backbone.forward_taps(adversarial)?;
    if a.len() != b.len() {
        return Err(Error::Invalid(
            "the two photos gave different layers".into(),
        ));
    }
    a.iter()
        .zip(&b)
        .map(|(a, b)| {
            let norm = |t: &Tensor| -> Result<f64> {
                Ok(f64::from(
                    t.to_dtype(candle_core::DType::F32)?
                        .sqr()?
                        .sum_all()?
                        .to_scalar::<f32>()?,
                )
                .sqrt())
            };
            let base = norm(&a.tensor)?;
            let diff = norm(&(&b.tensor - &a.tensor)?)?;
            Ok(LayerChange {
                layer: a.name.clone(),
                relative_l2: if base > 0.0 {
                    (diff / base) as f32
                } else {
                    0.0
                },
            })
        })
        .collect()
}

/// What the attack changed inside the network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fooling {
    pub changes: Vec<LayerChange>,
    /// Grad-CAM of the source class on the original and on the adversarial photo, then of
    /// the target class on both (the target: the adversarial photo's top class when the
    /// attack had none).
    pub source_original: Attribution,
    pub source_adversarial: Attribution,
    pub target_original: Attribution,
    pub target_adversarial: Attribution,
}

/// Layer changes and Grad-CAMs for an attack of `original` into `adversarial` (photos of
/// the same size), from `source` towards `target`.
pub fn fooling(
    model: &LoadedModel,
    original: &RgbImage,
    adversarial: &RgbImage,
    (source, target): (usize, usize),
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<Fooling>> {
    let x = model.input(&[original])?;
    let y = model.input(&[adversarial])?;
    let changes = layer_changes(model, &x, &y)?;
    let settings = Settings::default();
    let mut maps = Vec::with_capacity(4);
    for (class, input) in [(source, &x), (source, &y), (target, &x), (target, &y)] {
        if cancelled() {
            return Ok(None);
        }
        maps.push(attribute(
            model.backbone.as_ref(),
            input,
            Method::GradCam,
            &Target::imagenet(class),
            &settings,
            cancelled,
            &mut |_, _| {},
        )?);
    }
    let mut maps = maps.into_iter();
    let (Some(a), Some(b), Some(c), Some(d)) = (maps.next(), maps.next(), maps.next(), maps.next())
    else {
        return Ok(None);
    };
    Ok(Some(Fooling {
        changes,
        source_original: a,
        source_adversarial: b,
        target_original: c,
        target_adversarial: d,
    }))
}
