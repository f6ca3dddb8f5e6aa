//! The input-gradient methods (Captum's definitions): SmoothGrad, Integrated Gradients and
//! occlusion, each batched within [`MEMORY_CAP`](super::MEMORY_CAP) and cancellable between
//! batches.

use candle_core::{Device, Tensor};

use super::{batch_size, check, class_scores, gradient_at, Settings, Target};
use crate::error::{Error, Result};
use crate::model::Backbone;

/// A black photo through the model's normalisation, shaped like `x` `[1, 3, H, W]`.
pub(super) fn black(x: &Tensor) -> Result<Tensor> {
    let (mean, std) = (
        crate::vision::preprocess::IMAGENET_MEAN,
        crate::vision::preprocess::IMAGENET_STD,
    );
    let v: Vec<f32> = (0..3).map(|c| -mean[c] / std[c]).collect();
    Ok(Tensor::from_vec(v, (1, 3, 1, 1), x.device())?
        .broadcast_as(x.shape())?
        .contiguous()?)
}

/// Gaussian noise for SmoothGrad: `[samples, 3, H, W]`, sigma the noise share of `x`'s range.
pub fn smoothgrad_noise(x: &Tensor, settings: &Settings) -> Result<Tensor> {
    let (max, min) = (
        x.max_all()?.to_scalar::<f32>()?,
        x.min_all()?.to_scalar::<f32>()?,
    );
    let sigma = f64::from(settings.smooth_noise * (max - min));
    let (_, c, h, w) = x.dims4()?;
    // candle's CPU generator cannot be seeded: the noise comes from a seeded generator here
    // (Box-Muller), so the same seed gives the same map.
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
    let n = settings.smooth_samples.max(1);
    let len = n * c * h * w;
    let mut noise = Vec::with_capacity(len + 1);
    while noise.len() < len {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt() * sigma;
        let t = 2.0 * std::f64::consts::PI * u2;
        noise.push((r * t.cos()) as f32);
        noise.push((r * t.sin()) as f32);
    }
    noise.truncate(len);
    Ok(Tensor::from_vec(noise, (n, c, h, w), &Device::Cpu)?.to_device(x.device())?)
}

/// SmoothGrad: the mean of `|gradient|` over `x + noise[i]` (`noise` `[N, 3, H, W]`).
pub fn smoothgrad(
    backbone: &dyn Backbone,
    x: &Tensor,
    target: &Target,
    noise: &Tensor,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let n = noise.dim(0)?;
    let noisy = noise.to_device(x.device())?.broadcast_add(x)?;
    let mut sum = vec![0f32; x.elem_count()];
    batched(
        backbone,
        x,
        &noisy,
        target,
        cancelled,
        progress,
        &mut |_, g| {
            sum.iter_mut().zip(g).for_each(|(s, g)| *s += g.abs());
        },
    )?;
    Ok(sum.iter().map(|s| s / n as f32).collect())
}

/// Runs the gradient of `images` `[N, 3, H, W]` in batches, handing each image's gradient
/// (with its index) to `each`.
fn batched(
    backbone: &dyn Backbone,
    x: &Tensor,
    images: &Tensor,
    target: &Target,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
    each: &mut dyn FnMut(usize, &[f32]),
) -> Result<()> {
    let n = images.dim(0)?;
    let per = batch_size(backbone, x, true)?;
    let len = x.elem_count();
    let mut done = 0;
    progress(0, n);
    while done < n {
        check(cancelled)?;
        let k = per.min(n - done);
        let (_, g, _) = gradient_at(backbone, &images.narrow(0, done, k)?, None, target)?;
        for i in 0..k {
            each(done + i, &g[i * len..(i + 1) * len]);
        }
        done += k;
        progress(done, n);
    }
    Ok(())
}

/// Gauss-Legendre nodes on [0, 1] and their weights (summing to 1), as Captum builds them
/// with NumPy's `leggauss`: `(alphas, step sizes)`.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for i in 0..n {
        // Newton's method on P_n from Chebyshev's guess (ascending order, like NumPy).
        let mut x = -(std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            let p = if n == 0 { 1.0 } else { p1 };
            dp = n as f64 * (x * p - p0) / (x * x - 1.0);
            let dx = p / dp;
            x -= dx;
            if dx.abs() < 1e-15 {
                break;
            }
        }
        nodes.push(0.5 * (1.0 + x));
        weights.push(0.5 * 2.0 / ((1.0 - x * x) * dp * dp));
    }
    (nodes, weights)
}

/// Integrated Gradients from `baseline` (same shape as `x`), `steps` Gauss-Legendre points.
pub fn integrated_gradients(
    backbone: &dyn Backbone,
    x: &Tensor,
    baseline: &Tensor,
    target: &Target,
    steps: usize,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let (alphas, sizes) = gauss_legendre(steps.max(1));
    let diff = (x - baseline)?;
    let points: Vec<Tensor> = alphas
        .iter()
        .map(|&a| baseline + (&diff * a)?)
        .collect::<candle_core::Result<_>>()?;
    let points = Tensor::cat(&points, 0)?;
    let mut total = vec![0f64; x.elem_count()];
    batched(
        backbone,
        x,
        &points,
        target,
        cancelled,
        progress,
        &mut |i, g| {
            total
                .iter_mut()
                .zip(g)
                .for_each(|(t, &g)| *t += sizes[i] * f64::from(g));
        },
    )?;
    let diff: Vec<f32> = diff.flatten_all()?.to_vec1()?;
    Ok(total
        .iter()
        .zip(diff)
        .map(|(t, d)| (*t * f64::from(d)) as f32)
        .collect())
}

/// Occlusion: for every `(window, stride)` square (all channels), the logit's drop when it is
/// replaced by `baseline`, spread over its pixels and averaged where windows overlap.
pub fn occlusion(
    backbone: &dyn Backbone,
    x: &Tensor,
    baseline: &Tensor,
    target: &Target,
    (window, stride): (usize, usize),
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let (_, c, h, w) = x.dims4()?;
    if window == 0 || stride == 0 || window > h.min(w) {
        return Err(Error::Invalid(format!(
            "an occlusion window of {window} px (stride {stride}) on a {w}x{h} input"
        )));
    }
    let positions = |size: usize| (0..=(size - window) / stride).map(move |i| i * stride);
    let squares: Vec<(usize, usize)> = positions(h)
        .flat_map(|y| positions(w).map(move |x| (y, x)))
        .collect();
    let plain: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let base: Vec<f32> = baseline.flatten_all()?.to_vec1()?;
    let per = batch_size(backbone, x, false)?;
    let original = class_scores(backbone, x, target, (false, 1), cancelled, &mut |_, _| {})?[0];
    let mut total = vec![0f32; h * w];
    let mut count = vec![0f32; h * w];
    let mut done = 0;
    progress(0, squares.len());
    for group in squares.chunks(per) {
        check(cancelled)?;
        let mut batch = Vec::with_capacity(group.len() * plain.len());
        // Each occluded copy is written in place in the batch: one copy of the image each.
        for &(y0, x0) in group {
            let img = batch.len();
            batch.extend_from_slice(&plain);
            for ch in 0..c {
                for y in y0..y0 + window {
                    let row = ch * h * w + y * w;
                    batch[img + row + x0..img + row + x0 + window]
                        .copy_from_slice(&base[row + x0..row + x0 + window]);
                }
            }
        }
        let batch = Tensor::from_vec(batch, (group.len(), c, h, w), x.device())?;
        let scores = class_scores(
            backbone,
            &batch,
            target,
            (false, per),
            cancelled,
            &mut |_, _| {},
        )?;
        for (&(y0, x0), s) in group.iter().zip(scores) {
            for y in y0..y0 + window {
                for xx in x0..x0 + window {
                    total[y * w + xx] += original - s;
                    count[y * w + xx] += 1.0;
                }
            }
        }
        done += group.len();
        progress(done, squares.len());
    }
    let plane: Vec<f32> = total
        .iter()
        .zip(&count)
        .map(|(t, &n)| if n > 0.0 { t / n } else { 0.0 })
        .collect();
    Ok((0..c).flat_map(|_| plane.iter().copied()).collect())
}
