//! Where the network looks: attribution maps of one class for one input, and how faithful
//! each map is.
//!
//! - Class activation maps at a convolutional tap, from its activation `A` `[C, h, w]` and the
//!   class score's gradient `G` there (pytorch-grad-cam's definitions, ReLU included):
//!   Grad-CAM (`sum_c mean(G_c) A_c`), Grad-CAM++ (its second-order weights), HiResCAM
//!   (`sum_c G_c A_c`) and LayerCAM (`sum_c relu(G_c) A_c`).
//! - Input-gradient maps (Captum's definitions), `[3, H, W]`: saliency (`|dS/dx|`),
//!   SmoothGrad (the mean saliency of noisy copies), Integrated Gradients (Gauss-Legendre
//!   quadrature from a black photo, Captum's default rule) and occlusion (the score's drop when
//!   a black window covers each pixel, averaged over the windows that cover it).
//! - Faithfulness ([`causal_metric`]): the deletion and insertion scores of Petsiuk et al.
//!   2018 (RISE).
//!
//! The score is the class's logit, as both libraries use it. Every batch of images (noisy
//! copies, integration points, occluded copies) is cut to [`MEMORY_CAP`] bytes of
//! activations, so a large step count never runs out of memory.

use candle_core::{Device, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Backbone, TapKind};

/// Bytes of kept activations one batch may use (a gradient pass keeps every step's output).
pub const MEMORY_CAP: usize = 1 << 30;

/// An attribution method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    GradCam,
    GradCamPlusPlus,
    HiResCam,
    LayerCam,
    Saliency,
    SmoothGrad,
    IntegratedGradients,
    Occlusion,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Self::GradCam,
        Self::GradCamPlusPlus,
        Self::HiResCam,
        Self::LayerCam,
        Self::Saliency,
        Self::SmoothGrad,
        Self::IntegratedGradients,
        Self::Occlusion,
    ];

    /// The name on the command line and in JSON (`grad-cam`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::GradCam => "grad-cam",
            Self::GradCamPlusPlus => "grad-cam-plus-plus",
            Self::HiResCam => "hires-cam",
            Self::LayerCam => "layer-cam",
            Self::Saliency => "saliency",
            Self::SmoothGrad => "smoothgrad",
            Self::IntegratedGradients => "integrated-gradients",
            Self::Occlusion => "occlusion",
        }
    }

    /// The method named `name` (see [`Method::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether it reads a convolutional layer (the CAMs) rather than the input.
    pub fn is_cam(self) -> bool {
        matches!(
            self,
            Self::GradCam | Self::GradCamPlusPlus | Self::HiResCam | Self::LayerCam
        )
    }

    /// Whether its map has a sign (drawn with a diverging colour map).
    pub fn signed(self) -> bool {
        matches!(self, Self::IntegratedGradients | Self::Occlusion)
    }
}

/// How to compute a map; the defaults are the references' usual settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The CAMs' layer; `None`: the last convolutional tap ([`default_layer`]).
    pub layer: Option<String>,
    /// SmoothGrad's noisy copies.
    pub smooth_samples: usize,
    /// SmoothGrad's noise, as a share of the input's range (the paper's 0.15).
    pub smooth_noise: f32,
    /// Integrated Gradients' integration points.
    pub ig_steps: usize,
    /// Occlusion's window side and stride, in input pixels (`0`: a seventh of the side, and
    /// half of that).
    pub occlusion_window: usize,
    pub occlusion_stride: usize,
    /// Seed of SmoothGrad's noise.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            layer: None,
            smooth_samples: 25,
            smooth_noise: 0.15,
            ig_steps: 50,
            occlusion_window: 0,
            occlusion_stride: 0,
            seed: 0,
        }
    }
}

/// One attribution map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    pub method: Method,
    pub class: usize,
    /// The CAM's layer.
    pub layer: Option<String>,
    /// The map `[height, width]`, row-major, at its own resolution (a CAM's layer's, else the
    /// input's), before any normalising or resizing. Input maps are reduced from their
    /// channels: the maximum of `|a|` for saliency and SmoothGrad, the sum for Integrated
    /// Gradients, channel 0 for occlusion (its windows cover all three alike).
    pub map: Vec<f32>,
    pub height: usize,
    pub width: usize,
    /// Input methods: the attribution per input value, `[3, H, W]`, as Captum returns it.
    #[serde(skip)]
    pub channels: Option<Vec<f32>>,
}

/// The last tap with an activation of channels over space: where CAMs look by default.
pub fn default_layer(backbone: &dyn Backbone) -> Option<String> {
    backbone
        .network()
        .steps()
        .iter()
        .rev()
        .filter_map(|s| s.tap.as_ref())
        .find(|t| !matches!(t.kind, TapKind::Fc | TapKind::Logits))
        .map(|t| t.name.clone())
}

/// Gradient of the class logit: a one-hot row per image.
fn one_hot(logits: &Tensor, class: usize) -> candle_core::Result<Tensor> {
    let (batch, classes) = logits.dims2()?;
    if class >= classes {
        candle_core::bail!("class {class} is not one of the {classes} classes");
    }
    let mut g = vec![0f32; batch * classes];
    for b in 0..batch {
        g[b * classes + class] = 1.0;
    }
    Tensor::from_vec(g, (batch, classes), logits.device())?.to_dtype(logits.dtype())
}

/// Gradient of the class logit with respect to `layer` (the input when `None`), for `x`
/// `[B, 3, H, W]`: `(activation, gradient)` as plain vectors with the activation's dims.
fn gradient_at(
    backbone: &dyn Backbone,
    x: &Tensor,
    layer: Option<&str>,
    class: usize,
) -> Result<(Vec<f32>, Vec<f32>, Vec<usize>)> {
    let lg = backbone
        .engine()
        .layer_gradient(x, layer, None, &mut |logits| one_hot(logits, class))?;
    let dims = lg.activation.dims().to_vec();
    let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
    Ok((flat(&lg.activation)?, flat(&lg.gradient)?, dims))
}

/// Images per batch for inputs like `x` `[1, 3, H, W]`: the kept activations within
/// [`MEMORY_CAP`].
fn batch_size(backbone: &dyn Backbone, x: &Tensor) -> Result<usize> {
    let taps = backbone.forward_taps(x)?;
    // The taps are a fraction of the kept steps (about a third): count them three times.
    let per_image: usize = taps.iter().map(|t| t.tensor.elem_count()).sum::<usize>() * 3 * 4;
    Ok((MEMORY_CAP / per_image.max(1)).clamp(1, 64))
}

/// Calls `cancelled` between batches; an error that says so when it returns true.
fn check(cancelled: &dyn Fn() -> bool) -> Result<()> {
    if cancelled() {
        return Err(Error::Cancelled);
    }
    Ok(())
}

/// The map of `method` for `class` of `x` `[1, 3, H, W]` (a network input, normalised).
/// `progress` gets (done, total) units of work; `cancelled` is checked between batches.
pub fn attribute(
    backbone: &dyn Backbone,
    x: &Tensor,
    method: Method,
    class: usize,
    settings: &Settings,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Attribution> {
    let (_, _, h, w) = x.dims4()?;
    let x = x.to_dtype(candle_core::DType::F32)?;
    if method.is_cam() {
        let layer = match &settings.layer {
            Some(l) => l.clone(),
            None => default_layer(backbone)
                .ok_or_else(|| Error::Invalid("the model has no convolutional tap".into()))?,
        };
        progress(0, 1);
        let (a, g, dims) = gradient_at(backbone, &x, Some(&layer), class)?;
        let &[_, c, lh, lw] = dims.as_slice() else {
            return Err(Error::Invalid(format!(
                "{layer} is not a layer of channels over space (shape {dims:?}): CAMs need one"
            )));
        };
        progress(1, 1);
        return Ok(Attribution {
            method,
            class,
            layer: Some(layer),
            map: cam(method, &a, &g, c, lh * lw),
            height: lh,
            width: lw,
            channels: None,
        });
    }
    let channels = match method {
        Method::Saliency => {
            progress(0, 1);
            let (_, g, _) = gradient_at(backbone, &x, None, class)?;
            progress(1, 1);
            g.iter().map(|v| v.abs()).collect()
        }
        Method::SmoothGrad => {
            let noise = smoothgrad_noise(&x, settings)?;
            smoothgrad(backbone, &x, class, &noise, cancelled, progress)?
        }
        Method::IntegratedGradients => integrated_gradients(
            backbone,
            &x,
            &black(&x)?,
            class,
            settings.ig_steps,
            cancelled,
            progress,
        )?,
        Method::Occlusion => {
            let window = match settings.occlusion_window {
                0 => (h.min(w) / 7).max(1),
                n => n,
            };
            let stride = match settings.occlusion_stride {
                0 => (window / 2).max(1),
                n => n,
            };
            occlusion(
                backbone,
                &x,
                &black(&x)?,
                class,
                (window, stride),
                cancelled,
                progress,
            )?
        }
        _ => unreachable!("CAMs returned above"),
    };
    Ok(Attribution {
        method,
        class,
        layer: None,
        map: reduce_channels(method, &channels, h * w),
        height: h,
        width: w,
        channels: Some(channels),
    })
}

/// A CAM `[h*w]` from one image's activation `a` and gradient `g` (`[c, h*w]` each).
pub fn cam(method: Method, a: &[f32], g: &[f32], c: usize, plane: usize) -> Vec<f32> {
    let mut map = vec![0f32; plane];
    for ch in 0..c {
        let (a, g) = (&a[ch * plane..][..plane], &g[ch * plane..][..plane]);
        let weight = match method {
            Method::GradCam => g.iter().sum::<f32>() / plane as f32,
            Method::GradCamPlusPlus => {
                let sum_a: f32 = a.iter().sum();
                g.iter()
                    .map(|&g| {
                        let (g2, g3) = (g * g, g * g * g);
                        let aij = if g != 0.0 {
                            g2 / (2.0 * g2 + sum_a * g3 + 1e-6)
                        } else {
                            0.0
                        };
                        g.max(0.0) * aij
                    })
                    .sum()
            }
            _ => 0.0,
        };
        for i in 0..plane {
            map[i] += match method {
                Method::HiResCam => g[i] * a[i],
                Method::LayerCam => g[i].max(0.0) * a[i],
                _ => weight * a[i],
            };
        }
    }
    map.iter().map(|v| v.max(0.0)).collect()
}

/// An input map `[3, H, W]` reduced to `[H, W]` (see [`Attribution::map`]).
fn reduce_channels(method: Method, a: &[f32], plane: usize) -> Vec<f32> {
    (0..plane)
        .map(|i| {
            let v = [a[i], a[plane + i], a[2 * plane + i]];
            match method {
                Method::IntegratedGradients => v.iter().sum(),
                Method::Occlusion => v[0],
                _ => v.iter().fold(0f32, |m, x| m.max(x.abs())),
            }
        })
        .collect()
}

/// A black photo through the model's normalisation, shaped like `x` `[1, 3, H, W]`.
fn black(x: &Tensor) -> Result<Tensor> {
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
    let device = Device::Cpu;
    device.set_seed(settings.seed)?;
    let n = settings.smooth_samples.max(1);
    Ok(Tensor::randn(0f32, sigma as f32, (n, c, h, w), &device)?.to_device(x.device())?)
}

/// SmoothGrad: the mean of `|gradient|` over `x + noise[i]` (`noise` `[N, 3, H, W]`).
pub fn smoothgrad(
    backbone: &dyn Backbone,
    x: &Tensor,
    class: usize,
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
        class,
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
    class: usize,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
    each: &mut dyn FnMut(usize, &[f32]),
) -> Result<()> {
    let n = images.dim(0)?;
    let per = batch_size(backbone, x)?;
    let len = x.elem_count();
    let mut done = 0;
    progress(0, n);
    while done < n {
        check(cancelled)?;
        let k = per.min(n - done);
        let (_, g, _) = gradient_at(backbone, &images.narrow(0, done, k)?, None, class)?;
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
    class: usize,
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
        class,
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

/// Class logits (or probabilities with `softmax`) of `images` `[N, 3, H, W]`, in batches.
fn class_scores(
    backbone: &dyn Backbone,
    images: &Tensor,
    class: usize,
    softmax: bool,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let n = images.dim(0)?;
    let per = 16;
    let mut out = Vec::with_capacity(n);
    progress(0, n);
    for start in (0..n).step_by(per) {
        check(cancelled)?;
        let k = per.min(n - start);
        let mut logits = backbone.forward(&images.narrow(0, start, k)?)?;
        if softmax {
            logits = candle_nn::ops::softmax(&logits, D::Minus1)?;
        }
        let column: Vec<f32> = logits.narrow(1, class, 1)?.flatten_all()?.to_vec1()?;
        out.extend(column);
        progress(start + k, n);
    }
    Ok(out)
}

/// Occlusion: for every `(window, stride)` square (all channels), the logit's drop when it is
/// replaced by `baseline`, spread over its pixels and averaged where windows overlap.
pub fn occlusion(
    backbone: &dyn Backbone,
    x: &Tensor,
    baseline: &Tensor,
    class: usize,
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
    let original = class_scores(backbone, x, class, false, cancelled, &mut |_, _| {})?[0];
    let mut total = vec![0f32; h * w];
    let mut count = vec![0f32; h * w];
    let chunk = 16;
    let mut done = 0;
    progress(0, squares.len());
    for group in squares.chunks(chunk) {
        check(cancelled)?;
        let mut batch = Vec::with_capacity(group.len() * plain.len());
        for &(y0, x0) in group {
            let mut img = plain.clone();
            for ch in 0..c {
                for y in y0..y0 + window {
                    let row = ch * h * w + y * w;
                    img[row + x0..row + x0 + window]
                        .copy_from_slice(&base[row + x0..row + x0 + window]);
                }
            }
            batch.extend(img);
        }
        let batch = Tensor::from_vec(batch, (group.len(), c, h, w), x.device())?;
        let scores = class_scores(backbone, &batch, class, false, cancelled, &mut |_, _| {})?;
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

/// Bilinear resize of a `[h, w]` map to `[out_h, out_w]` (PyTorch's `align_corners=False`).
pub fn upsample(map: &[f32], (h, w): (usize, usize), (out_h, out_w): (usize, usize)) -> Vec<f32> {
    let coord = |o: usize, out: usize, size: usize| {
        let s = ((o as f32 + 0.5) * size as f32 / out as f32 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(size - 1);
        let i1 = (i0 + 1).min(size - 1);
        (i0, i1, s - i0 as f32)
    };
    let mut out = Vec::with_capacity(out_h * out_w);
    for oy in 0..out_h {
        let (y0, y1, fy) = coord(oy, out_h, h);
        for ox in 0..out_w {
            let (x0, x1, fx) = coord(ox, out_w, w);
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// A deletion or insertion run ([`causal_metric`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Causal {
    /// From the photo, the most important pixels set to 0 (the mean colour) first: lower is
    /// more faithful.
    Deletion,
    /// From a blurred photo, the most important pixels revealed first: higher is better.
    Insertion,
}

/// The class probability after each of `steps` steps and the area under that curve (RISE's
/// `CausalMetric`, trapezoid rule on [0, 1]) for `saliency` `[H*W]` of `x` `[1, 3, H, W]`:
/// `ceil(H*W / steps)` pixels per step, in order of decreasing saliency (ties by index).
pub fn causal_metric(
    backbone: &dyn Backbone,
    x: &Tensor,
    saliency: &[f32],
    class: usize,
    (mode, steps): (Causal, usize),
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(f32, Vec<f32>)> {
    let (_, c, h, w) = x.dims4()?;
    let hw = h * w;
    if saliency.len() != hw {
        return Err(Error::Invalid(format!(
            "a saliency map of {} values for a {w}x{h} input",
            saliency.len()
        )));
    }
    let steps = steps.clamp(1, hw);
    let per = hw.div_ceil(steps);
    let mut order: Vec<usize> = (0..hw).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (saliency[a], saliency[b]);
        b.partial_cmp(&a)
            .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
    });
    let plain: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let (mut start, finish) = match mode {
        Causal::Deletion => (plain.clone(), vec![0f32; plain.len()]),
        Causal::Insertion => (blur(&plain, c, h, w), plain),
    };
    let mut images = Vec::with_capacity((steps + 1) * start.len());
    for i in 0..=steps {
        images.extend_from_slice(&start);
        for &p in order.iter().skip(per * i).take(per) {
            for ch in 0..c {
                start[ch * hw + p] = finish[ch * hw + p];
            }
        }
    }
    let images = Tensor::from_vec(images, (steps + 1, c, h, w), x.device())?;
    let probs = class_scores(backbone, &images, class, true, cancelled, progress)?;
    let n = probs.len() - 1;
    let sum: f32 = probs.iter().sum();
    let auc = (sum - probs[0] / 2.0 - probs[n] / 2.0) / n as f32;
    Ok((auc, probs))
}

/// Each channel of `[c, h, w]` blurred by a normalised 11-tap Gaussian of sigma 5 in both
/// directions, zero-padded (the insertion's starting image).
fn blur(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let k: Vec<f32> = (0..11)
        .map(|i| (-((i as f32 - 5.0).powi(2)) / 50.0).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
    let mut out = vec![0f32; x.len()];
    let mut tmp = vec![0f32; h * w];
    for ch in 0..c {
        let src = &x[ch * h * w..][..h * w];
        for y in 0..h {
            for xx in 0..w {
                tmp[y * w + xx] = (0..11)
                    .filter_map(|i| (xx + i).checked_sub(5).filter(|&s| s < w).map(|s| (i, s)))
                    .map(|(i, s)| k[i] * src[y * w + s])
                    .sum();
            }
        }
        for y in 0..h {
            for xx in 0..w {
                out[ch * h * w + y * w + xx] = (0..11)
                    .filter_map(|i| (y + i).checked_sub(5).filter(|&s| s < h).map(|s| (i, s)))
                    .map(|(i, s)| k[i] * tmp[s * w + xx])
                    .sum();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_matches_numpys_leggauss() {
        // numpy.polynomial.legendre.leggauss(3): nodes -sqrt(3/5), 0, sqrt(3/5); weights 5/9, 8/9, 5/9.
        let (a, s) = gauss_legendre(3);
        let r = (0.6f64).sqrt();
        for (got, want) in a.iter().zip([0.5 * (1.0 - r), 0.5, 0.5 * (1.0 + r)]) {
            assert!((got - want).abs() < 1e-12, "{got} {want}");
        }
        for (got, want) in s.iter().zip([5.0 / 18.0, 8.0 / 18.0, 5.0 / 18.0]) {
            assert!((got - want).abs() < 1e-12, "{got} {want}");
        }
        let (_, s) = gauss_legendre(50);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn upsampling_matches_pytorch_bilinear_on_a_ramp() {
        // F.interpolate([[0, 1], [2, 3]], size=4, mode="bilinear", align_corners=False).
        let up = upsample(&[0.0, 1.0, 2.0, 3.0], (2, 2), (4, 4));
        let want = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (g, w) in up.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{up:?}");
        }
    }
}
