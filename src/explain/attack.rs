//! Adversarial examples: a targeted iterative attack (PGD, Madry et al. 2018,
//! <https://arxiv.org/abs/1706.06083>) and the one-step untargeted FGSM (Goodfellow et al.
//! 2015, <https://arxiv.org/abs/1412.6572>).
//!
//! The perturbation lives on the photo's own pixels, in 8-bit units, and the gradient goes
//! through the preprocessing ([`PhotoPipeline`]); every step's result is rounded to a valid
//! 8-bit image and judged by the exact preprocessing, so what is reported is what a saved PNG
//! does when it is loaded again.
//!
//! The attack goes on until the network gives the target at least
//! [`AttackSettings::confidence`] (0.9 by default; untargeted: any other class), or the step
//! budget is spent: the first flip of the top class is usually a coin toss, not a fooled
//! network. The outcome says whether the confidence was reached.
//!
//! Memory is bounded by a working resolution, not by the photo: a photo larger than
//! [`working_size`] (twice the preprocessing's resize side on its shorter edge, four times
//! that squared in all: 512 px and about 1 MP for the 224-px models) is first scaled down to
//! it, and the attack, its PNG and its distances are of that working photo. The gradient loop
//! holds several f32 copies of the photo at once (the pixels, the perturbation, their sum,
//! the gradient and its sign, the rounded step, the 8-bit image read back): on a 100 MP photo
//! `attack` peaked at 8.2 GB and took 73 s a step; at the working size each copy is at most
//! 12 MB, the peak (0.9 GB) is the decoding of the photo itself, and a step takes 0.4 s. The
//! network sees a 224-px view either way, so the attack loses nothing it could use.

use std::borrow::Cow;
use std::time::Instant;

use candle_core::{IndexOp, Var, D};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::pipeline::{image_of, pixels_of, PhotoPipeline};
use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::vision::preprocess::Preprocess;

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
    /// Steps at most; the attack stops as soon as the confidence is reached.
    pub max_steps: usize,
    /// The target's probability to reach, more than 0 and at most 1 (untargeted: the best
    /// other class's), judged on the rounded 8-bit photo.
    pub confidence: f32,
}

/// The confidence an attack aims for unless told otherwise.
pub const DEFAULT_CONFIDENCE: f32 = 0.9;

impl Default for AttackSettings {
    fn default() -> Self {
        Self {
            target: None,
            eps: 4.0,
            step: 1.0,
            max_steps: 50,
            confidence: DEFAULT_CONFIDENCE,
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
    /// The photo as attacked: the photo itself, or its copy at [`working_size`].
    pub original: RgbImage,
    /// `original` changed; the same size.
    pub adversarial: RgbImage,
    /// The original photo's top class.
    pub source: usize,
    pub target: Option<usize>,
    /// The network's top class is the target at the end (untargeted: not the source).
    pub success: bool,
    /// And with at least the confidence asked for.
    pub reached: bool,
    /// The confidence asked for.
    pub confidence: f32,
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

/// The size a `width x height` photo is attacked at for `preprocess`: the photo's own when its
/// shorter side is at most twice the resize side and it has at most four times that squared
/// in pixels, else scaled down (aspect kept) to fit both.
pub fn working_size(preprocess: &Preprocess, width: u32, height: u32) -> (u32, u32) {
    let side = 2.0 * f64::from(preprocess.resize_short_side().max(preprocess.size));
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let scale = (side / w.min(h)).min((4.0 * side * side / (w * h)).sqrt());
    if scale >= 1.0 {
        return (width, height);
    }
    let fit = |v: f64| ((v * scale).round() as u32).max(1);
    (fit(w), fit(h))
}

/// `photo` at its [`working_size`]: itself when it fits, else a copy scaled down with a
/// triangle filter (antialiased; no full-size intermediate).
pub fn working_photo<'a>(preprocess: &Preprocess, photo: &'a RgbImage) -> Cow<'a, RgbImage> {
    let (w, h) = working_size(preprocess, photo.width(), photo.height());
    if (w, h) == photo.dimensions() {
        Cow::Borrowed(photo)
    } else {
        tracing::info!(
            from = ?photo.dimensions(),
            to = ?(w, h),
            "the photo is attacked at a bounded working size"
        );
        Cow::Owned(image::imageops::resize(
            photo,
            w,
            h,
            image::imageops::FilterType::Triangle,
        ))
    }
}

/// Whether `probs` put `class` first with at least `confidence`.
fn confident(probs: &[f32], class: usize, confidence: f32) -> bool {
    argmax(probs) == class && probs.get(class).is_some_and(|&p| p >= confidence)
}

/// Runs the attack on `photo` (at its [`working_size`]) until the confidence is reached or
/// the steps are spent; `on_step` sees every step, `cancelled` is checked before each. `None`
/// when cancelled.
pub fn attack(
    model: &LoadedModel,
    photo: &RgbImage,
    settings: &AttackSettings,
    cancelled: &dyn Fn() -> bool,
    on_step: &mut dyn FnMut(&AttackProgress),
) -> Result<Option<AttackOutcome>> {
    let device = &model.device;
    let photo = working_photo(&model.preprocess, photo);
    let photo = photo.as_ref();
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
    let mut reached = false;
    while steps < settings.max_steps && !reached {
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
        let goal = settings
            .target
            .unwrap_or_else(|| best_other(&probs, source));
        let target_prob = probs.get(goal).copied().unwrap_or(0.0);
        last = AttackProgress {
            step: steps,
            source_prob: probs[source],
            target_prob,
            top_class,
        };
        on_step(&last);
        reached = confident(&probs, goal, settings.confidence);
    }
    let success = match settings.target {
        Some(t) => last.top_class == t,
        None => last.top_class != source,
    };
    let ms_per_step = started.elapsed().as_secs_f64() * 1e3 / steps.max(1) as f64;
    let (linf, l2, psnr_db) = difference(photo, &adversarial);
    Ok(Some(AttackOutcome {
        original: photo.clone(),
        adversarial,
        source,
        target: settings.target,
        success,
        reached,
        confidence: settings.confidence,
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
        ..AttackSettings::default()
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

    #[test]
    fn large_photos_are_attacked_at_a_bounded_working_size() {
        let pre = Preprocess::imagenet(224);
        // Small photos and ordinary panoramas keep their size.
        assert_eq!(working_size(&pre, 451, 300), (451, 300));
        assert_eq!(working_size(&pre, 1500, 512), (1500, 512));
        // 100 MP: 512 on the shorter side.
        assert_eq!(working_size(&pre, 10_000, 10_000), (512, 512));
        assert_eq!(working_size(&pre, 12_000, 8_000), (768, 512));
        // A very long panorama: at most about 1 MP in all.
        let (w, h) = working_size(&pre, 100_000, 1_000);
        assert!(u64::from(w) * u64::from(h) <= 1_050_000, "{w}x{h}");
        assert_eq!((w, h), (10_240, 102));
        assert_eq!(working_size(&pre, 0, 0), (0, 0));
    }
}
