//! DeepDream on a photo: gradient ascent on the photo's own pixels to amplify whatever one
//! layer (or one channel of it) responds to, over a pyramid of octaves. The algorithm of
//! Mordvintsev, Olah and Tyka, "Inceptionism: Going Deeper into Neural Networks" (2015,
//! <https://research.google/blog/inceptionism-going-deeper-into-neural-networks/>), as their
//! notebook (<https://github.com/google/deepdream>) and the TensorFlow and PyTorch tutorials
//! after it run it:
//!
//! - the photo at its own aspect ratio, scaled down so its longest side is at most
//!   [`DeepDreamSettings::max_side`] (never up);
//! - octaves from the smallest (the photo shrunk by `octave_scale` per octave) to the photo's
//!   own size; at each, `steps` of gradient ascent on the pixels of the objective, the mean of
//!   the squared activations (the notebook's L2 objective; of one channel if one is chosen);
//! - each step rolls the image by a random shift of up to `jitter` pixels before the forward
//!   pass and rolls the gradient back, divides the gradient by its mean absolute value (so
//!   `step_size` is in 8-bit pixel units whatever the layer), and clamps the pixels to 0..=255;
//! - what the octave added to its base (the detail) is upsampled and added to the next
//!   octave's base, so the patterns grown at a coarse scale carry on at the finer ones.
//!
//! The pixels are kept as f32 in 0..=255 (like the notebook's) and normalised with the model's
//! mean and std for each forward pass; every resize is a pair of matrices (PIL's antialiased
//! bilinear filter, [`resize_matrix`]).

use std::borrow::Cow;
use std::ops::RangeInclusive;
use std::time::Instant;

use candle_core::{IndexOp, Tensor, Var};
use image::RgbImage;
use rand::{Rng, SeedableRng};

use super::pipeline::{image_of, pixels_of};
use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::vision::preprocess::{resize_matrix, ResizeFilter};

/// Octaves allowed.
pub const OCTAVES: RangeInclusive<usize> = 1..=10;
/// Octave scales allowed (1 keeps every octave at the photo's size).
pub const OCTAVE_SCALE: RangeInclusive<f64> = 1.0..=2.0;
/// Steps per octave allowed.
pub const STEPS: RangeInclusive<usize> = 1..=10_000;
/// Largest step size, in 8-bit pixel units (the step must be more than 0).
pub const MAX_STEP_SIZE: f32 = 255.0;
/// Largest jitter, in pixels.
pub const MAX_JITTER: u32 = 256;
/// Working sizes allowed for the longest side, in pixels.
pub const MAX_SIDE: RangeInclusive<u32> = 32..=2048;
/// An octave whose shorter side would be smaller than this is left out: the deep layers of
/// a network that downsamples 32 times see nothing in it.
pub const MIN_OCTAVE_SIDE: u32 = 32;

/// A DeepDream's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeepDreamSettings {
    /// The tap whose activations are amplified (`block5`, `conv4_3`, ...).
    pub layer: String,
    /// Only this channel of it (else the whole layer).
    pub channel: Option<usize>,
    /// Octaves, [`OCTAVES`] (4 by default); fewer run where the smallest would be too small.
    pub octaves: usize,
    /// Size ratio of one octave to the next, [`OCTAVE_SCALE`] (1.4).
    pub octave_scale: f64,
    /// Gradient steps per octave, [`STEPS`] (10).
    pub steps: usize,
    /// Mean absolute change per step, in 8-bit pixel units (1.5, the notebook's).
    pub step_size: f32,
    /// Largest random roll each step, in pixels, up to [`MAX_JITTER`] (32, the notebook's).
    pub jitter: u32,
    /// The photo is scaled down so its longest side is at most this, [`MAX_SIDE`] (512).
    pub max_side: u32,
    /// Seed of the random rolls.
    pub seed: u64,
}

impl DeepDreamSettings {
    /// The notebook's settings for `layer`.
    pub fn new(layer: impl Into<String>) -> Self {
        Self {
            layer: layer.into(),
            channel: None,
            octaves: 4,
            octave_scale: 1.4,
            steps: 10,
            step_size: 1.5,
            jitter: 32,
            max_side: 512,
            seed: 0,
        }
    }

    /// Refuses values out of their ranges (NaN included).
    pub fn validate(&self) -> Result<()> {
        let fail = |what: String| Err(Error::Invalid(what));
        if !OCTAVES.contains(&self.octaves) {
            return fail(format!("{} octaves: 1 to 10 are allowed", self.octaves));
        }
        if !OCTAVE_SCALE.contains(&self.octave_scale) {
            return fail(format!(
                "octave scale {}: 1 to 2 is allowed",
                self.octave_scale
            ));
        }
        if !STEPS.contains(&self.steps) {
            return fail(format!("{} steps per octave: 1 to 10000", self.steps));
        }
        if !(self.step_size > 0.0 && self.step_size <= MAX_STEP_SIZE) {
            return fail(format!(
                "step size {}: more than 0, at most 255",
                self.step_size
            ));
        }
        if self.jitter > MAX_JITTER {
            return fail(format!(
                "jitter {}: at most {MAX_JITTER} pixels",
                self.jitter
            ));
        }
        if !MAX_SIDE.contains(&self.max_side) {
            return fail(format!("max side {}: 32 to 2048 pixels", self.max_side));
        }
        Ok(())
    }
}

/// One step of a DeepDream.
#[derive(Debug, Clone)]
pub struct DeepDreamFrame {
    /// The image after this step, at the octave's size.
    pub image: RgbImage,
    /// The octave (0 is the smallest) and how many run.
    pub octave: usize,
    pub octaves: usize,
    /// The step within the octave (1-based) and the steps per octave.
    pub step: usize,
    pub steps: usize,
    /// The objective (mean squared activation) as this step's forward pass saw it, before
    /// the step.
    pub objective: f32,
}

/// A finished (or stopped) DeepDream.
#[derive(Debug, Clone)]
pub struct DeepDreamOutcome {
    /// At the working size (the photo's, or scaled down to `max_side`). A stopped dream's
    /// detail so far, added to the photo at that size.
    pub image: RgbImage,
    /// Steps run in all.
    pub steps: usize,
    /// It was stopped before its last step.
    pub stopped: bool,
    /// The objective of the photo at the working size, and of `image` (unjittered).
    pub objective_start: f32,
    pub objective_end: f32,
    pub ms_per_step: f64,
}

/// The size a `width x height` photo is dreamed at: scaled down (aspect kept) so that its
/// longest side is at most `max_side`; never scaled up.
pub fn working_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height).max(1);
    if longest <= max_side {
        return (width, height);
    }
    let scale = f64::from(max_side) / f64::from(longest);
    let fit = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(1, max_side);
    (fit(width), fit(height))
}

/// The octaves' sizes for a `width x height` working photo, smallest first, the photo's own
/// last: octave `i` from the end is the photo shrunk by `scale^i`. Octaves whose shorter side
/// would fall below [`MIN_OCTAVE_SIDE`] are left out (the photo's own size always stays).
pub fn octave_sizes(width: u32, height: u32, octaves: usize, scale: f64) -> Vec<(u32, u32)> {
    let mut sizes = vec![(width, height)];
    for i in 1..octaves {
        let shrink = scale.powi(i as i32);
        let (w, h) = (
            (f64::from(width) / shrink).round() as u32,
            (f64::from(height) / shrink).round() as u32,
        );
        if w.min(h) < MIN_OCTAVE_SIDE {
            break;
        }
        sizes.push((w, h));
    }
    sizes.reverse();
    sizes
}

/// Rolls `[1, C, H, W]` by `(dy, dx)` pixels with wrap-around (numpy's `roll`): a shift the
/// gradient can follow, since it is only `narrow` and `cat`.
pub fn roll(x: &Tensor, dy: i64, dx: i64) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let shift = |by: i64, n: usize| by.rem_euclid(n as i64) as usize;
    let (dy, dx) = (shift(dy, h), shift(dx, w));
    let x = if dy == 0 {
        x.clone()
    } else {
        Tensor::cat(&[x.narrow(2, h - dy, dy)?, x.narrow(2, 0, h - dy)?], 2)?
    };
    Ok(if dx == 0 {
        x
    } else {
        Tensor::cat(&[x.narrow(3, w - dx, dx)?, x.narrow(3, 0, w - dx)?], 3)?
    })
}

/// `[1, C, H, W]` resized to `[1, C, height, width]` (PIL's bilinear filter, antialiased when
/// shrinking, unrounded); itself when the size is already right.
fn resize(x: &Tensor, width: u32, height: u32) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if (w, h) == (width as usize, height as usize) {
        return Ok(x.clone());
    }
    let matrix = |from: usize, to: u32| {
        Tensor::from_vec(
            resize_matrix(from as u32, to, ResizeFilter::Bilinear),
            (to as usize, from),
            x.device(),
        )
    };
    let rows = matrix(h, height)?;
    let columns_t = matrix(w, width)?.t()?.contiguous()?;
    Ok(rows.broadcast_matmul(x)?.broadcast_matmul(&columns_t)?)
}

/// `photo` at its [`working_size`]: itself when it fits, else a copy scaled down with a
/// triangle filter (antialiased). [`deepdream`] makes it itself; a caller holding a large
/// photo can make it first and let the photo go.
pub fn working_photo(photo: &RgbImage, max_side: u32) -> Cow<'_, RgbImage> {
    let (w, h) = working_size(photo.width(), photo.height(), max_side);
    if (w, h) == photo.dimensions() {
        Cow::Borrowed(photo)
    } else {
        Cow::Owned(image::imageops::resize(
            photo,
            w,
            h,
            image::imageops::FilterType::Triangle,
        ))
    }
}

/// The objective of pixels `[1, 3, H, W]` (0 to 255): the mean squared activation of the
/// layer (or of its channel), a scalar that carries the gradient when the pixels track one.
struct Objective<'a> {
    model: &'a LoadedModel,
    layer: &'a str,
    channel: Option<usize>,
    /// `[1, 3, 1, 1]`, in 0..255 units.
    mean: Tensor,
    std: Tensor,
}

impl<'a> Objective<'a> {
    fn new(model: &'a LoadedModel, settings: &'a DeepDreamSettings) -> Result<Self> {
        let device = &model.device;
        let stats = |v: [f32; 3]| {
            Tensor::from_vec(v.iter().map(|s| s * 255.0).collect(), (1, 3, 1, 1), device)
        };
        Ok(Self {
            model,
            layer: &settings.layer,
            channel: settings.channel,
            mean: stats(model.preprocess.mean)?,
            std: stats(model.preprocess.std)?,
        })
    }

    fn of(&self, pixels: &Tensor) -> Result<Tensor> {
        let input = pixels.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        let tap = self
            .model
            .backbone
            .forward_until(&input, Some(self.layer))?;
        let tap = match self.channel {
            None => tap,
            Some(c) => {
                let channels = tap.dim(1)?;
                if c >= channels {
                    return Err(Error::Invalid(format!(
                        "{} has {channels} channels (0 to {}), not channel {c}",
                        self.layer,
                        channels - 1
                    )));
                }
                tap.i((.., c))?
            }
        };
        Ok(tap.sqr()?.mean_all()?)
    }

    fn value(&self, pixels: &Tensor) -> Result<f32> {
        Ok(self.of(pixels)?.to_scalar()?)
    }
}

/// Dreams `photo` (at its [`working_size`]): every step goes to `on_step`, `cancelled` is
/// checked before each. A stop keeps what was dreamed so far; `None` when cancelled before
/// the first step.
pub fn deepdream(
    model: &LoadedModel,
    photo: &RgbImage,
    settings: &DeepDreamSettings,
    cancelled: &dyn Fn() -> bool,
    on_step: &mut dyn FnMut(&DeepDreamFrame),
) -> Result<Option<DeepDreamOutcome>> {
    settings.validate()?;
    if model
        .backbone
        .network()
        .tap_index(&settings.layer)
        .is_none()
    {
        return Err(Error::Invalid(format!(
            "{} has no layer named {} (see `cnn-explorer layers`)",
            model.spec.name, settings.layer
        )));
    }
    let device = &model.device;
    let objective = Objective::new(model, settings)?;
    let working = working_photo(photo, settings.max_side);
    let (width, height) = working.dimensions();
    let photo_pixels = pixels_of(&working, device)?;
    let objective_start = objective.value(&photo_pixels)?;
    let sizes = octave_sizes(width, height, settings.octaves, settings.octave_scale);
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
    let jitter = i64::from(settings.jitter);
    let started = Instant::now();
    let mut done = 0;
    let mut stopped = false;
    // The octave's base (the photo at its size) and the dream on it, `[1, 3, h, w]`.
    let mut base = photo_pixels.clone();
    let mut image = photo_pixels.clone();
    'octaves: for (octave, &(w, h)) in sizes.iter().enumerate() {
        let detail = (&image - &base)?;
        base = resize(&photo_pixels, w, h)?;
        image = (&base + resize(&detail, w, h)?)?.clamp(0f32, 255f32)?;
        for step in 1..=settings.steps {
            if cancelled() {
                stopped = true;
                break 'octaves;
            }
            let (dy, dx) = (
                rng.random_range(-jitter..=jitter),
                rng.random_range(-jitter..=jitter),
            );
            let rolled = Var::from_tensor(&roll(&image, dy, dx)?)?;
            let value = objective.of(rolled.as_tensor())?;
            let grads = value.backward()?;
            let grad = grads
                .get(rolled.as_tensor())
                .ok_or_else(|| Error::Invalid("no gradient reached the photo".into()))?;
            let grad = roll(grad, -dy, -dx)?;
            let mean_abs: f32 = grad.abs()?.mean_all()?.to_scalar()?;
            // A layer that does not respond at all (a dead channel) leaves the image as it is.
            if mean_abs.is_finite() && mean_abs > 0.0 {
                let scale = f64::from(settings.step_size / mean_abs);
                image = (&image + (grad * scale)?)?.clamp(0f32, 255f32)?;
            }
            done += 1;
            on_step(&DeepDreamFrame {
                image: image_of(&image)?,
                octave,
                octaves: sizes.len(),
                step,
                steps: settings.steps,
                objective: value.to_scalar()?,
            });
        }
    }
    if done == 0 {
        return Ok(None);
    }
    // A stop before the last octave: its detail so far, on the photo at the working size.
    let detail = resize(&(&image - &base)?, width, height)?;
    let image = image_of(&(&photo_pixels + detail)?)?;
    let objective_end = objective.value(&pixels_of(&image, device)?)?;
    Ok(Some(DeepDreamOutcome {
        image,
        steps: done,
        stopped,
        objective_start,
        objective_end,
        ms_per_step: started.elapsed().as_secs_f64() * 1e3 / done as f64,
    }))
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use candle_core::{DType, Device};

    use super::*;
    use crate::model::Arch;

    /// EfficientNet-Lite0 with seeded random weights (Kaiming-uniform convolutions, batch
    /// norms near the identity): a real network's gradients, for the algorithm's mechanics;
    /// nothing here depends on what it has learnt.
    fn random_lite0() -> LoadedModel {
        let varmap = candle_nn::VarMap::new();
        let build = || {
            let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            crate::weights::loading::build_backbone(Arch::EfficientNetLite0, vb).unwrap()
        };
        // Once to make the variables, again (after filling them) for a network built on them.
        build();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let data = varmap.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let dims = var.dims().to_vec();
            let (lo, hi) =
                if name.ends_with("running_var") || (dims.len() == 1 && name.ends_with("weight")) {
                    (0.5, 1.5)
                } else if dims.len() == 1 {
                    (-0.05, 0.05)
                } else {
                    let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
                    let a = (6.0 / fan_in as f32).sqrt();
                    (-a, a)
                };
            let values: Vec<f32> = (0..var.elem_count())
                .map(|_| rng.random_range(lo..hi))
                .collect();
            var.set(&Tensor::from_vec(values, dims, &Device::Cpu).unwrap())
                .unwrap();
        }
        drop(data);
        let spec = crate::weights::find_model("efficientnet-lite0").unwrap();
        LoadedModel {
            spec,
            backbone: build(),
            preprocess: spec.preprocess,
            device: Device::Cpu,
            weights_path: Default::default(),
        }
    }

    fn photo(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 255 / width) as u8,
                (y * 255 / height) as u8,
                ((x * 7 + y * 13) % 256) as u8,
            ])
        })
    }

    fn small(layer: &str) -> DeepDreamSettings {
        DeepDreamSettings {
            octaves: 2,
            steps: 4,
            jitter: 4,
            max_side: 96,
            ..DeepDreamSettings::new(layer)
        }
    }

    #[test]
    fn octave_sizes_shrink_by_the_scale_and_stop_above_the_smallest_side() {
        assert_eq!(
            octave_sizes(451, 300, 4, 1.4),
            [(164, 109), (230, 153), (322, 214), (451, 300)]
        );
        assert_eq!(octave_sizes(451, 300, 1, 1.4), [(451, 300)]);
        // 96x64 / 1.4^2 is 49x33, / 1.4^3 would be 35x23: too small.
        assert_eq!(octave_sizes(96, 64, 6, 1.4), [(49, 33), (69, 46), (96, 64)]);
        assert_eq!(octave_sizes(20, 10, 4, 1.4), [(20, 10)]);
        assert_eq!(working_size(451, 300, 512), (451, 300));
        assert_eq!(working_size(3000, 2000, 512), (512, 341));
        assert_eq!(working_size(2000, 3000, 512), (341, 512));
    }

    #[test]
    fn roll_wraps_both_ways_and_back() {
        let x = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 3, 4))
            .unwrap();
        let r = roll(&x, 1, -1).unwrap();
        // Row 0 of the rolled image is the old row 2; column 0 the old column 1.
        assert_eq!(r.i((0, 0, 0, 0)).unwrap().to_scalar::<f32>().unwrap(), 9.0);
        let back: Vec<f32> = roll(&r, -1, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(back, (0..24).map(|v| v as f32).collect::<Vec<_>>());
        assert_eq!(roll(&x, 7, 9).unwrap().dims(), x.dims());
    }

    #[test]
    fn the_objective_rises_in_every_octave_and_the_dream_keeps_the_aspect_ratio() {
        let model = random_lite0();
        let frames = RefCell::new(Vec::new());
        let outcome = deepdream(
            &model,
            &photo(300, 200),
            // No jitter: each step's objective is of the very image the last step left.
            &DeepDreamSettings {
                jitter: 0,
                step_size: 4.0,
                ..small("block5")
            },
            &|| false,
            &mut |f| {
                frames
                    .borrow_mut()
                    .push((f.octave, f.step, f.objective, f.image.dimensions()))
            },
        )
        .unwrap()
        .unwrap();
        let frames = frames.into_inner();
        assert_eq!(frames.len(), 8, "2 octaves of 4 steps");
        assert_eq!(frames[0].3, (69, 46), "the small octave first");
        assert_eq!(frames[7].3, (96, 64));
        for pair in frames.windows(2).filter(|p| p[0].0 == p[1].0) {
            assert!(pair[1].2 > pair[0].2, "each step rises: {pair:?}");
        }
        assert_eq!(outcome.image.dimensions(), (96, 64), "the photo's 3:2");
        assert!(!outcome.stopped && outcome.steps == 8);
        assert!(
            outcome.objective_end > outcome.objective_start * 1.2,
            "{} -> {}",
            outcome.objective_start,
            outcome.objective_end
        );
    }

    #[test]
    fn cancel_stops_within_a_step_and_keeps_the_detail_at_the_working_size() {
        let model = random_lite0();
        let seen = Cell::new(0);
        let settings = DeepDreamSettings {
            channel: Some(3),
            ..small("block3")
        };
        let outcome = deepdream(
            &model,
            &photo(300, 200),
            &settings,
            &|| seen.get() >= 3,
            &mut |_| seen.set(seen.get() + 1),
        )
        .unwrap()
        .unwrap();
        assert_eq!((outcome.steps, seen.get()), (3, 3));
        assert!(outcome.stopped);
        assert_eq!(outcome.image.dimensions(), (96, 64));
        assert!(
            outcome.image != working_photo(&photo(300, 200), 96).into_owned(),
            "the steps so far are kept"
        );
        let none = deepdream(&model, &photo(300, 200), &settings, &|| true, &mut |_| {}).unwrap();
        assert!(none.is_none(), "cancelled before the first step");
    }

    #[test]
    fn unknown_layers_channels_and_out_of_range_settings_are_refused() {
        let model = random_lite0();
        let run = |s: &DeepDreamSettings| {
            deepdream(&model, &photo(64, 64), s, &|| false, &mut |_| {})
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(run(&small("conv9_9")).contains("no layer named conv9_9"));
        let channel = DeepDreamSettings {
            channel: Some(40),
            ..small("block3")
        };
        assert!(run(&channel).contains("40 channels"), "{}", run(&channel));
        for bad in [
            DeepDreamSettings {
                octave_scale: f64::NAN,
                ..small("block3")
            },
            DeepDreamSettings {
                octaves: 0,
                ..small("block3")
            },
            DeepDreamSettings {
                step_size: 0.0,
                ..small("block3")
            },
            DeepDreamSettings {
                max_side: 8,
                ..small("block3")
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(DeepDreamSettings::new("block3").validate().is_ok());
    }
}
