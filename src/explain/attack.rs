//! Adversarial examples: a targeted iterative attack (PGD, Madry et al. 2018,
//! <https://arxiv.org/abs/1706.06083>) and the one-step untargeted FGSM (Goodfellow et al.
//! 2015, <https://arxiv.org/abs/1412.6572>).
//!
//! The perturbation lives on the photo's own pixels, in 8-bit units, and the gradient goes
//! through the preprocessing ([`PhotoPipeline`]); every step's result is rounded to a valid
//! 8-bit image and judged by the exact preprocessing, so what is reported is what a saved PNG
//! does when it is loaded again.

use std::time::Instant;

use candle_core::{IndexOp, Var, D};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::pipeline::{image_of, pixels_of, PhotoPipeline};
use crate::error::{Error, Result};
use crate::inference::LoadedModel;

/// What to attack and how hard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttackSettings {
    /// The class to reach; `None`: any class but the photo's own (untargeted).
    pub target: Option<usize>,
    /// L-infinity budget in 8-bit pixel units (4 means 4/255).
    pub eps: f32,
    /// Step size in 8-bit pixel units.
    pub step: f32,
    /// Steps at most; the attack stops as soon as it succeeds.
    pub max_steps: usize,
}

impl Default for AttackSettings {
    fn default() -> Self {
        Self {
            target: None,
            eps: 4.0,
            step: 1.0,
            max_steps: 50,
        }
    }
}

/// Probabilities after one step, judged on the rounded 8-bit image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttackProgress {
    pub step: usize,
    /// Probability of the photo's original class.
    pub source_prob: f32,
    /// Probability of the target (of the top other class when untargeted).
    pub target_prob: f32,
    /// The class the network now sees first.
    pub top_class: usize,
}

/// The adversarial photo and how it differs from the original.
#[derive(Debug, Clone)]
pub struct AttackOutcome {
    pub adversarial: RgbImage,
    /// The original photo's top class.
    pub source: usize,
    pub target: Option<usize>,
    pub success: bool,
    pub steps: usize,
    /// The last step's probabilities.
    pub last: AttackProgress,
    /// Largest change of any channel of any pixel, in 8-bit units.
    pub linf: u8,
    /// Euclidean norm of the change, with pixels in [0, 1].
    pub l2: f64,
    /// Peak signal-to-noise ratio of the adversarial photo against the original, in dB.
    pub psnr_db: f64,
    pub ms_per_step: f64,
}

/// Softmax probabilities `[classes]` of `image` through the exact preprocessing.
pub fn exact_probs(model: &LoadedModel, image: &RgbImage) -> Result<Vec<f32>> {
    let input = model.preprocess.batch(&[image], &model.device)?;
    let logits = model.backbone.forward(&input)?;
    Ok(candle_nn::ops::softmax(&logits, D::Minus1)?
        .i(0)?
        .to_device(&candle_core::Device::Cpu)?
        .to_vec1()?)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// The best class other than `skip`.
fn best_other(v: &[f32], skip: usize) -> usize {
    v.iter()
        .enumerate()
        .filter(|(i, _)| *i != skip)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Runs the attack on `photo`; `on_step` sees every step, `cancelled` is checked before
/// each. `None` when cancelled.
pub fn attack(
    model: &LoadedModel,
    photo: &RgbImage,
    settings: &AttackSettings,
    cancelled: &dyn Fn() -> bool,
    on_step: &mut dyn FnMut(&AttackProgress),
) -> Result<Option<AttackOutcome>> {
    let device = &model.device;
    let pipeline = PhotoPipeline::new(&model.preprocess, photo.width(), photo.height(), device)?;
    let original = pixels_of(photo, device)?;
    let start_probs = exact_probs(model, photo)?;
    let source = argmax(&start_probs);
    if settings.target == Some(source) {
        return Err(Error::Invalid(format!(
            "the photo is already seen as {}: choose another target",
            crate::labels::imagenet_label(source)
        )));
    }
    let eps = f64::from(settings.eps.max(0.0));
    let mut delta = original.zeros_like()?;
    let mut adversarial = photo.clone();
    let mut last = AttackProgress {
        step: 0,
        source_prob: start_probs[source],
        target_prob: settings
            .target
            .map_or(start_probs[best_other(&start_probs, source)], |t| {
                start_probs.get(t).copied().unwrap_or(0.0)
            }),
        top_class: source,
    };
    let started = Instant::now();
    let mut steps = 0;
    let mut success = false;
    while steps < settings.max_steps && !success {
        if cancelled() {
            return Ok(None);
        }
        let x = Var::from_tensor(&(&original + &delta)?)?;
        let logits = model.backbone.forward(&pipeline.apply(x.as_tensor())?)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let objective = match settings.target {
            Some(target) => log_probs.i((0, target))?,
            None => log_probs.i((0, source))?.neg()?,
        };
        let grads = objective.backward()?;
        let grad = grads
            .get(x.as_tensor())
            .ok_or_else(|| Error::Invalid("no gradient reached the photo".into()))?;
        let stepped = (&delta + (grad.sign()? * f64::from(settings.step))?)?.clamp(-eps, eps)?;
        // Stay a photo: every channel within 0..=255, on whole 8-bit levels.
        let moved = (&original + stepped)?.clamp(0f32, 255f32)?.round()?;
        delta = (&moved - &original)?;
        adversarial = image_of(&moved)?;
        steps += 1;
        let probs = exact_probs(model, &adversarial)?;
        let top_class = argmax(&probs);
        let target_prob = match settings.target {
            Some(t) => probs.get(t).copied().unwrap_or(0.0),
            None => probs[best_other(&probs, source)],
        };
        last = AttackProgress {
            step: steps,
            source_prob: probs[source],
            target_prob,
            top_class,
        };
        on_step(&last);
        success = match settings.target {
            Some(t) => top_class == t,
            None => top_class != source,
        };
    }
    let ms_per_step = started.elapsed().as_secs_f64() * 1e3 / steps.max(1) as f64;
    let (linf, l2, psnr_db) = difference(photo, &adversarial);
    Ok(Some(AttackOutcome {
        adversarial,
        source,
        target: settings.target,
        success,
        steps,
        last,
        linf,
        l2,
        psnr_db,
        ms_per_step,
    }))
}

/// FGSM: one step of size `eps` (8-bit units) away from the photo's own class.
pub fn fgsm(model: &LoadedModel, photo: &RgbImage, eps: f32) -> Result<AttackOutcome> {
    let settings = AttackSettings {
        target: None,
        eps,
        step: eps,
        max_steps: 1,
    };
    attack(model, photo, &settings, &|| false, &mut |_| {})?
        .ok_or_else(|| Error::Invalid("the attack was cancelled".into()))
}

/// L-infinity (8-bit units), L2 (pixels in [0, 1]) and PSNR (dB) of `b` against `a`.
pub fn difference(a: &RgbImage, b: &RgbImage) -> (u8, f64, f64) {
    let mut linf = 0u8;
    let mut sum_sq = 0f64;
    let mut n = 0usize;
    for (p, q) in a.as_raw().iter().zip(b.as_raw()) {
        let d = p.abs_diff(*q);
        linf = linf.max(d);
        sum_sq += f64::from(d) * f64::from(d);
        n += 1;
    }
    let mse = sum_sq / n.max(1) as f64;
    let psnr = if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    };
    (linf, sum_sq.sqrt() / 255.0, psnr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_measured_in_pixel_units() {
        let a = RgbImage::from_pixel(10, 10, image::Rgb([100, 100, 100]));
        let mut b = a.clone();
        b.put_pixel(3, 3, image::Rgb([104, 98, 100]));
        let (linf, l2, psnr) = difference(&a, &b);
        assert_eq!(linf, 4);
        assert!((l2 - (20f64).sqrt() / 255.0).abs() < 1e-12);
        let mse = 20.0 / 300.0;
        assert!((psnr - 10.0 * (255.0f64 * 255.0 / mse).log10()).abs() < 1e-9);
        assert_eq!(difference(&a, &a).2, f64::INFINITY);
    }
}
