//! Dreams: gradient ascent on the input image until the network sees a class (or one
//! channel lights up), as in Simonyan et al. 2013 (<https://arxiv.org/abs/1312.6034>).
//!
//! Two parameterisations:
//! - [`Parameterisation::Pixels`], the notebook's: the pixels themselves, with jitter and a
//!   total-variation penalty; quick, but the result is mostly high-frequency patterns.
//! - [`Parameterisation::Fourier`], after Lucid (Olah et al. 2017, "Feature Visualization",
//!   <https://distill.pub/2017/feature-visualization/>): the image is a sum of cosines whose
//!   amplitudes are scaled by 1/frequency, in a decorrelated colour space, squashed by a
//!   sigmoid, and seen through small random shifts and zooms each step, so that what grows is
//!   what the network sees robustly: shapes a person can recognise. This is the default.

use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor, Var, D};
use image::RgbImage;
use rand::{Rng, SeedableRng};

use super::gradients::total_variation;
use super::pipeline::image_of;
use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::vision::preprocess::{resize_matrix, Preprocess, ResizeFilter};

/// What the dream maximises.
#[derive(Debug, Clone, PartialEq)]
pub enum DreamTarget {
    /// An ImageNet class.
    Class(usize),
    /// The mean activation of one channel of one layer.
    Channel { layer: String, channel: usize },
}

/// How the image is represented while it is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parameterisation {
    /// The pixels (the notebook's way).
    Pixels,
    /// Lucid's: scaled cosine spectrum, decorrelated colour, sigmoid, random transforms.
    #[default]
    Fourier,
}

/// Where the dream starts.
#[derive(Debug, Clone, Default)]
pub enum DreamStart {
    /// Faint random noise (seeded).
    #[default]
    Noise,
    /// A photo, seen as the network sees it (resized and centre-cropped).
    Photo(RgbImage),
}

/// A dream's settings; the total-variation weight can also change while it runs.
#[derive(Debug, Clone)]
pub struct DreamSettings {
    pub target: DreamTarget,
    pub parameterisation: Parameterisation,
    pub start: DreamStart,
    pub steps: usize,
    /// Adam's learning rate (0.1 suits the Fourier parameterisation, 0.02 the pixels).
    pub learning_rate: f64,
    /// Weight of the total-variation penalty at the start (0 to 10; 0.1 by default).
    pub tv_weight: f32,
    /// Image side in pixels, 32 to 512 (the window offers 112, 160 and 224).
    pub size: u32,
    /// Largest random shift each step, in pixels.
    pub jitter: u32,
    pub seed: u64,
    /// Maximise the class's log-softmax instead of its logit (pushes the other classes down).
    pub log_softmax: bool,
}

impl DreamSettings {
    /// The defaults for `target`.
    pub fn new(target: DreamTarget) -> Self {
        Self {
            target,
            parameterisation: Parameterisation::Fourier,
            start: DreamStart::Noise,
            steps: 200,
            learning_rate: 0.1,
            tv_weight: 0.1,
            size: 224,
            jitter: 8,
            seed: 0,
            log_softmax: false,
        }
    }
}

/// One step of a dream.
#[derive(Debug, Clone)]
pub struct DreamFrame {
    pub step: usize,
    /// The image after this step, `size x size`.
    pub image: RgbImage,
    /// Softmax probability of the class (for a channel target, of the top class) as the
    /// network saw this step's input.
    pub prob: f32,
    /// The target's score (logit, log-softmax or mean activation).
    pub score: f32,
    /// The total-variation penalty (already weighted).
    pub penalty: f32,
}

/// The finished (or stopped) dream.
#[derive(Debug, Clone)]
pub struct DreamOutcome {
    pub image: RgbImage,
    pub steps: usize,
    /// The class's softmax probability on the final 8-bit image, untransformed (for a channel
    /// target, the top class's).
    pub prob: f32,
    pub ms_per_step: f64,
}

/// Overall gain of the cosine spectrum over Lucid's 1/f scale, chosen by eye on
/// EfficientNet-Lite0 (zebra, goldfish at 112 px, 150 steps): 2 stays grey, 16 turns noisy.
const SPECTRUM_GAIN: f64 = 8.0;

/// The TV weight's unit: weight 1 makes a typical dream's penalty about as large as the class
/// logit, so the window's slider (0 to 10) spans "no effect" to "flat".
const TV_SCALE: f64 = 1000.0;

/// Lucid's colour correlation square root, normalised by its largest column norm.
const COLOUR_SQRT: [[f32; 3]; 3] = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];

/// The orthonormal DCT-II matrix `[S, S]`: row k is the k-th cosine.
fn dct_matrix(size: usize) -> Vec<f32> {
    let mut m = vec![0f32; size * size];
    for k in 0..size {
        let alpha = if k == 0 {
            (1.0 / size as f64).sqrt()
        } else {
            (2.0 / size as f64).sqrt()
        };
        for n in 0..size {
            let angle = std::f64::consts::PI * (n as f64 + 0.5) * k as f64 / size as f64;
            m[k * size + n] = (alpha * angle.cos()) as f32;
        }
    }
    m
}

/// Lucid's image basis: a cosine spectrum scaled by 1/frequency, in a decorrelated colour
/// space, squashed by a sigmoid.
struct FourierBasis {
    /// The DCT `[S, S]` and its transpose.
    dct: Tensor,
    dct_t: Tensor,
    /// The 1/frequency scale `[S, S]`.
    scale: Tensor,
    /// The colour mix `[3, 3]`.
    mix: Tensor,
}

/// How the trainable parameters become pixels.
enum Basis {
    /// The parameters are the pixels (kept in [0, 1]).
    Pixels,
    Fourier(FourierBasis),
}

/// The image `[1, 3, S, S]` in [0, 1] as a function of trainable parameters.
struct ImageParam {
    basis: Basis,
    param: Var,
    size: usize,
}

impl ImageParam {
    fn new(
        kind: Parameterisation,
        start: &DreamStart,
        size: usize,
        filter: ResizeFilter,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let start_pixels = match start {
            DreamStart::Photo(photo) => {
                let view = Preprocess::imagenet(size as u32)
                    .with_filter(filter)
                    .network_view(photo);
                let pixels = super::pipeline::pixels_of(&view, device)?;
                Some((pixels / 255.0)?)
            }
            DreamStart::Noise => None,
        };
        match kind {
            Parameterisation::Pixels => {
                let init = match start_pixels {
                    Some(p) => p,
                    None => {
                        let noise: Vec<f32> = (0..3 * size * size)
                            .map(|_| 0.5 + rng.random_range(-0.05..0.05))
                            .collect();
                        Tensor::from_vec(noise, (1, 3, size, size), device)?
                    }
                };
                Ok(Self {
                    basis: Basis::Pixels,
                    param: Var::from_tensor(&init)?,
                    size,
                })
            }
            Parameterisation::Fourier => {
                let d = Tensor::from_vec(dct_matrix(size), (size, size), device)?;
                let dt = d.t()?.contiguous()?;
                let mut scale = vec![0f32; size * size];
                for ky in 0..size {
                    for kx in 0..size {
                        let (fy, fx) =
                            (ky as f64 / (2 * size) as f64, kx as f64 / (2 * size) as f64);
                        let f = (fy * fy + fx * fx).sqrt().max(1.0 / size as f64);
                        // 1/f as Lucid, in units where the lowest frequencies move the image
                        // by about the learning rate per step.
                        scale[ky * size + kx] = (SPECTRUM_GAIN / f / size as f64) as f32;
                    }
                }
                let scale = Tensor::from_vec(scale, (size, size), device)?;
                let max_norm = (0..3)
                    .map(|j| {
                        (0..3)
                            .map(|i| COLOUR_SQRT[i][j].powi(2))
                            .sum::<f32>()
                            .sqrt()
                    })
                    .fold(0f32, f32::max);
                let mix: Vec<f32> = COLOUR_SQRT.iter().flatten().map(|v| v / max_norm).collect();
                let mix = Tensor::from_vec(mix, (3, 3), device)?;
                let init = match start_pixels {
                    Some(p) => {
                        // Invert sigmoid, colour mix, cosine transform and scale.
                        let p = p.clamp(0.01f32, 0.99f32)?;
                        let logit = (&p / (1.0 - &p)?)?.log()?;
                        let inv = inverse3(&mix.to_device(&Device::Cpu)?.to_vec2::<f32>()?)?;
                        let inv = Tensor::new(inv, device)?;
                        let unmixed = inv
                            .matmul(&logit.reshape((3, size * size))?)?
                            .reshape((1, 3, size, size))?;
                        d.broadcast_matmul(&unmixed)?
                            .broadcast_matmul(&dt)?
                            .broadcast_div(&scale)?
                    }
                    None => {
                        let noise: Vec<f32> = (0..3 * size * size)
                            .map(|_| {
                                let (u1, u2): (f32, f32) =
                                    (rng.random_range(1e-7..1.0), rng.random());
                                0.01 * (-2.0 * u1.ln()).sqrt()
                                    * (2.0 * std::f32::consts::PI * u2).cos()
                            })
                            .collect();
                        Tensor::from_vec(noise, (1, 3, size, size), device)?
                    }
                };
                Ok(Self {
                    basis: Basis::Fourier(FourierBasis {
                        dct: d,
                        dct_t: dt,
                        scale,
                        mix,
                    }),
                    param: Var::from_tensor(&init)?,
                    size,
                })
            }
        }
    }

    /// The image in [0, 1], `[1, 3, S, S]`, as a differentiable function of the parameters.
    fn image(&self) -> Result<Tensor> {
        let p = self.param.as_tensor();
        match &self.basis {
            Basis::Fourier(f) => {
                let s = self.size;
                let spatial = f
                    .dct_t
                    .broadcast_matmul(&p.broadcast_mul(&f.scale)?)?
                    .broadcast_matmul(&f.dct)?;
                let rgb = f
                    .mix
                    .matmul(&spatial.reshape((3, s * s))?)?
                    .reshape((1, 3, s, s))?;
                Ok((rgb.neg()?.exp()? + 1.0)?.recip()?)
            }
            Basis::Pixels => Ok(p.clone()),
        }
    }

    /// Keeps pixel parameters within [0, 1] after an update (Fourier ones need nothing).
    fn project(&self) -> Result<()> {
        if matches!(self.basis, Basis::Pixels) {
            self.param.set(&self.param.as_tensor().clamp(0f32, 1f32)?)?;
        }
        Ok(())
    }
}

/// Inverse of a 3x3 matrix.
fn inverse3(m: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    let a = |i: usize, j: usize| f64::from(m[i][j]);
    let det = a(0, 0) * (a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1))
        - a(0, 1) * (a(1, 0) * a(2, 2) - a(1, 2) * a(2, 0))
        + a(0, 2) * (a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0));
    if det.abs() < 1e-12 {
        return Err(Error::Invalid("singular colour matrix".into()));
    }
    let cof = |i: usize, j: usize| {
        let (r0, r1) = ([1, 0, 0][i], [2, 2, 1][i]);
        let (c0, c1) = ([1, 0, 0][j], [2, 2, 1][j]);
        let minor = a(r0, c0) * a(r1, c1) - a(r0, c1) * a(r1, c0);
        if (i + j).is_multiple_of(2) {
            minor
        } else {
            -minor
        }
    };
    Ok((0..3)
        .map(|i| (0..3).map(|j| (cof(j, i) / det) as f32).collect())
        .collect())
}

/// Adam, ascending.
struct Adam {
    m: Tensor,
    v: Tensor,
    t: i32,
    lr: f64,
}

impl Adam {
    fn new(like: &Tensor, lr: f64) -> Result<Self> {
        Ok(Self {
            m: like.zeros_like()?,
            v: like.zeros_like()?,
            t: 0,
            lr,
        })
    }

    fn step(&mut self, param: &Var, grad: &Tensor) -> Result<()> {
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        self.t += 1;
        self.m = ((&self.m * b1)? + (grad * (1.0 - b1))?)?;
        self.v = ((&self.v * b2)? + (grad.sqr()? * (1.0 - b2))?)?;
        let m_hat = (&self.m / (1.0 - b1.powi(self.t)))?;
        let v_hat = (&self.v / (1.0 - b2.powi(self.t)))?;
        let update = (m_hat / (v_hat.sqrt()? + eps)?)?;
        param.set(&(param.as_tensor() + (update * self.lr)?)?)?;
        Ok(())
    }
}

/// Rolls `[1, C, H, W]` by `(dy, dx)` pixels (wrapping), a shift the gradient can follow.
fn roll(x: &Tensor, dy: usize, dx: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (dy, dx) = (dy % h, dx % w);
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

/// Zooms `[1, C, S, S]` in by `factor` >= 1 (bilinear), keeping the centre `S x S`.
fn zoom(x: &Tensor, factor: f64) -> Result<Tensor> {
    let (_, _, s, _) = x.dims4()?;
    let big = ((s as f64) * factor).round() as usize;
    if big <= s {
        return Ok(x.clone());
    }
    let offset = (big - s) / 2;
    let m = Tensor::from_vec(
        resize_matrix(s as u32, big as u32, ResizeFilter::Bilinear),
        (big, s),
        x.device(),
    )?;
    let m = m.narrow(0, offset, s)?.contiguous()?;
    let mt = m.t()?.contiguous()?;
    Ok(m.broadcast_matmul(x)?.broadcast_matmul(&mt)?)
}

/// Runs a dream. `tv_weight` is read before every step (the window's slider), `cancelled`
/// too; `on_step` sees every step's image. `None` when cancelled before the first step.
pub fn dream(
    model: &LoadedModel,
    settings: &DreamSettings,
    tv_weight: &dyn Fn() -> f32,
    cancelled: &dyn Fn() -> bool,
    on_step: &mut dyn FnMut(&DreamFrame),
) -> Result<Option<DreamOutcome>> {
    let size = settings.size as usize;
    if !(32..=512).contains(&size) {
        return Err(Error::Invalid(format!(
            "dream size {size} is out of range (32 to 512)"
        )));
    }
    if let DreamTarget::Class(c) = settings.target {
        if c >= model.backbone.num_classes() {
            return Err(Error::Invalid(format!("there is no class {c}")));
        }
    }
    let device = &model.device;
    let param = ImageParam::new(
        settings.parameterisation,
        &settings.start,
        size,
        model.preprocess.filter,
        settings.seed,
        device,
    )?;
    let mut adam = Adam::new(param.param.as_tensor(), settings.learning_rate)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed ^ 0x5eed);
    let mean = Tensor::from_vec(model.preprocess.mean.to_vec(), (1, 3, 1, 1), device)?;
    let std = Tensor::from_vec(model.preprocess.std.to_vec(), (1, 3, 1, 1), device)?;
    let normalise =
        |img: &Tensor| -> Result<Tensor> { Ok(img.broadcast_sub(&mean)?.broadcast_div(&std)?) };
    let started = Instant::now();
    let mut steps = 0;
    for step in 1..=settings.steps {
        if cancelled() {
            if steps == 0 {
                return Ok(None);
            }
            break;
        }
        let image = param.image()?;
        let mut seen = image.clone();
        if settings.parameterisation == Parameterisation::Fourier {
            let factor = [1.0, 1.025, 1.05, 1.075, 1.1][rng.random_range(0..5)];
            seen = zoom(&seen, factor)?;
        }
        if settings.jitter > 0 {
            let j = settings.jitter as usize;
            seen = roll(
                &seen,
                rng.random_range(0..=2 * j),
                rng.random_range(0..=2 * j),
            )?;
        }
        let input = normalise(&seen)?;
        let (score, logits) = match &settings.target {
            DreamTarget::Class(class) => {
                let logits = model.backbone.forward(&input)?;
                let score = if settings.log_softmax {
                    candle_nn::ops::log_softmax(&logits, D::Minus1)?.i((0, *class))?
                } else {
                    logits.i((0, *class))?
                };
                (score, logits)
            }
            DreamTarget::Channel { layer, channel } => {
                let tap = model.backbone.forward_until(&input, Some(layer))?;
                // Only the layer is differentiated; the class probabilities are for display.
                let logits = model.backbone.forward(&input.detach())?;
                let channels = tap.dim(1)?;
                if *channel >= channels {
                    return Err(Error::Invalid(format!(
                        "{layer} has {channels} channels, not {}",
                        channel + 1
                    )));
                }
                (tap.i((0, *channel))?.mean_all()?, logits)
            }
        };
        // TV of the untransformed image as the network gets it (normalised), as in the notebook.
        let weight = f64::from(tv_weight().max(0.0)) * TV_SCALE;
        let penalty = (total_variation(&normalise(&image)?)? * weight)?;
        let objective = (&score - &penalty)?;
        let grads = objective.backward()?;
        let grad = grads
            .get(param.param.as_tensor())
            .ok_or_else(|| Error::Invalid("no gradient reached the image".into()))?
            .clone();
        adam.step(&param.param, &grad)?;
        param.project()?;
        steps = step;
        let probs = candle_nn::ops::softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?.i(0)?;
        let prob = match settings.target {
            DreamTarget::Class(c) => probs.i(c)?.to_scalar::<f32>()?,
            DreamTarget::Channel { .. } => probs.max(0)?.to_scalar::<f32>()?,
        };
        on_step(&DreamFrame {
            step,
            image: image_of(&(param.image()?.detach() * 255.0)?)?,
            prob,
            score: score.to_dtype(DType::F32)?.to_scalar()?,
            penalty: penalty.to_dtype(DType::F32)?.to_scalar()?,
        });
    }
    let image = image_of(&(param.image()?.detach() * 255.0)?)?;
    let input = normalise(&(super::pipeline::pixels_of(&image, device)? / 255.0)?)?;
    let probs = candle_nn::ops::softmax(&model.backbone.forward(&input)?, D::Minus1)?.i(0)?;
    let prob = match settings.target {
        DreamTarget::Class(c) => probs.i(c)?.to_scalar::<f32>()?,
        DreamTarget::Channel { .. } => probs.max(0)?.to_scalar::<f32>()?,
    };
    Ok(Some(DreamOutcome {
        image,
        steps,
        prob,
        ms_per_step: started.elapsed().as_secs_f64() * 1e3 / steps.max(1) as f64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dct_is_orthonormal_and_the_colour_mix_invertible() {
        let n = 8;
        let d = Tensor::from_vec(dct_matrix(n), (n, n), &Device::Cpu).unwrap();
        let eye = d.matmul(&d.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in eye.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5);
            }
        }
        let m: Vec<Vec<f32>> = COLOUR_SQRT.iter().map(|r| r.to_vec()).collect();
        let inv = inverse3(&m).unwrap();
        for (i, row) in m.iter().enumerate() {
            for j in 0..3 {
                let v: f32 = row
                    .iter()
                    .zip(&inv)
                    .map(|(a, inv_row)| a * inv_row[j])
                    .sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn roll_and_zoom_keep_the_shape() {
        let x = Tensor::arange(0f32, 2.0 * 16.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 4, 4))
            .unwrap();
        let r = roll(&x, 1, 2).unwrap();
        assert_eq!(r.dims(), x.dims());
        assert_eq!(r.i((0, 0, 1, 2)).unwrap().to_scalar::<f32>().unwrap(), 0.0);
        assert_eq!(zoom(&x, 1.5).unwrap().dims(), x.dims());
    }
}
