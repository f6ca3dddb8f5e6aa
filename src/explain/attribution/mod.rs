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
//! The score is the class's logit, as both libraries use it: of the network's own classes,
//! or of a trained head's on the network's features ([`Target`]). Every batch of images
//! (noisy copies, integration points, occluded copies) is cut to [`MEMORY_CAP`] bytes of
//! activations, so a large step count never runs out of memory.

pub mod explanation;
mod faithfulness;
mod input;

pub use crate::vision::heatmap::upsample;
pub use faithfulness::{causal_metric, Causal};
pub use input::{gauss_legendre, integrated_gradients, occlusion, smoothgrad, smoothgrad_noise};

use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Backbone, TapKind};
use crate::train::head::Head;

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

/// The score a map explains: a class of the network's own logits (ImageNet's), or of a
/// trained head on the network's features.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub class: usize,
    pub head: Option<&'a Head>,
}

impl<'a> Target<'a> {
    /// Class `class` of the network's own logits.
    pub fn imagenet(class: usize) -> Self {
        Self { class, head: None }
    }

    /// Class `class` of `head`, which must take `backbone`'s features.
    pub fn head(backbone: &dyn Backbone, head: &'a Head, class: usize) -> Result<Self> {
        if head.block.is_none() && head.dim != backbone.embedding_dim() {
            return Err(Error::Invalid(format!(
                "the head takes {}-wide features but this network gives {}",
                head.dim,
                backbone.embedding_dim()
            )));
        }
        if class >= head.classes.len() {
            return Err(Error::Invalid(format!(
                "class {class} is not one of the head's {} classes",
                head.classes.len()
            )));
        }
        Ok(Self {
            class,
            head: Some(head),
        })
    }

    /// The tap whose activation the score is computed from (`None`: the logits).
    fn output<'b>(&self, backbone: &'b dyn Backbone) -> Option<&'b str>
    where
        'a: 'b,
    {
        self.head.map(|head| match &head.block {
            Some(block) => block.input_tap.as_str(),
            None => backbone.embedding_tap().name,
        })
    }

    /// Logits `[B, classes]` of the output tap's activation `[B, ...]`: the network's own when
    /// there is no head (the activation is the logits); differentiable.
    fn logits_of(&self, backbone: &dyn Backbone, activation: &Tensor) -> Result<Tensor> {
        let Some(head) = self.head else {
            return Ok(activation.clone());
        };
        // The head's weights live on the CPU in f32.
        let x = activation.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let x = match &head.block {
            Some(block) => {
                if x.dims().get(1..) != Some(&block.input_shape[..]) {
                    return Err(Error::Invalid(format!(
                        "the head's fine-tuned block takes {:?} from {} but the network gives {:?}",
                        block.input_shape,
                        block.input_tap,
                        x.dims().get(1..).unwrap_or_default()
                    )));
                }
                x.flatten_from(1)?
            }
            None => backbone.embedding_tap().embed(&x)?.flatten_from(1)?,
        };
        head.logits(&x)
    }

    /// The gradient of the class score with respect to the output tap's activation `output`.
    fn gradient(&self, backbone: &dyn Backbone, output: &Tensor) -> Result<Tensor> {
        if self.head.is_none() {
            return Ok(one_hot(output, self.class)?);
        }
        let var = Var::from_tensor(&output.to_device(&Device::Cpu)?.to_dtype(DType::F32)?)?;
        let logits = self.logits_of(backbone, var.as_tensor())?;
        let grads = logits.narrow(1, self.class, 1)?.sum_all()?.backward()?;
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.as_tensor().zeros_like()?,
        };
        Ok(g.to_device(output.device())?.to_dtype(output.dtype())?)
    }

    /// Logits `[N, classes]` of images `[N, 3, H, W]`.
    fn logits(&self, backbone: &dyn Backbone, images: &Tensor) -> Result<Tensor> {
        let output = backbone.forward_until(images, self.output(backbone))?;
        self.logits_of(backbone, &output)
    }
}

/// The last tap with an activation of channels over space, at or before the score's output
/// (for a head, the features it reads): where CAMs look by default.
pub fn default_layer(backbone: &dyn Backbone, target: &Target) -> Option<String> {
    let steps = backbone.network().steps();
    let last = match target.output(backbone) {
        Some(name) => steps
            .iter()
            .rposition(|s| s.tap.as_ref().is_some_and(|t| t.name == name))?,
        None => steps.len().checked_sub(1)?,
    };
    steps[..=last]
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

/// Gradient of the target's score with respect to `layer` (the input when `None`), for `x`
/// `[B, 3, H, W]`: `(activation, gradient)` as plain vectors with the activation's dims.
fn gradient_at(
    backbone: &dyn Backbone,
    x: &Tensor,
    layer: Option<&str>,
    target: &Target,
) -> Result<(Vec<f32>, Vec<f32>, Vec<usize>)> {
    let lg =
        backbone
            .engine()
            .layer_gradient(x, layer, target.output(backbone), &mut |output| {
                target
                    .gradient(backbone, output)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
            })?;
    let dims = lg.activation.dims().to_vec();
    let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
    Ok((flat(&lg.activation)?, flat(&lg.gradient)?, dims))
}

/// Images per batch for inputs like `x` `[1, 3, H, W]`: the kept activations within
/// [`MEMORY_CAP`]. A gradient pass keeps every step's output (the taps are about a third of
/// them); a forward pass only a few at a time. Costs one forward pass, so callers size a whole
/// run once.
fn batch_size(backbone: &dyn Backbone, x: &Tensor, gradient: bool) -> Result<usize> {
    let taps = backbone.forward_taps(&x.narrow(0, 0, 1)?)?;
    let values: usize = taps.iter().map(|t| t.tensor.elem_count()).sum();
    let kept = if gradient { values * 3 } else { values / 4 };
    Ok((MEMORY_CAP / (kept * 4).max(1)).clamp(1, 64))
}

/// Class logits (or probabilities with `softmax`) of `images` `[N, 3, H, W]`, `per` at a
/// time (see [`batch_size`]).
fn class_scores(
    backbone: &dyn Backbone,
    images: &Tensor,
    target: &Target,
    (softmax, per): (bool, usize),
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let n = images.dim(0)?;
    let per = per.max(1);
    let mut out = Vec::with_capacity(n);
    progress(0, n);
    for start in (0..n).step_by(per) {
        check(cancelled)?;
        let k = per.min(n - start);
        let mut logits = target.logits(backbone, &images.narrow(0, start, k)?)?;
        if softmax {
            logits = candle_nn::ops::softmax(&logits, D::Minus1)?;
        }
        let column: Vec<f32> = logits
            .narrow(1, target.class, 1)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        out.extend(column);
        progress(start + k, n);
    }
    Ok(out)
}

/// Calls `cancelled` between batches; an error that says so when it returns true.
fn check(cancelled: &dyn Fn() -> bool) -> Result<()> {
    if cancelled() {
        return Err(Error::Cancelled);
    }
    Ok(())
}

/// The map of `method` for `target` of `x` `[1, 3, H, W]` (a network input, normalised).
/// `progress` gets (done, total) units of work; `cancelled` is checked between batches.
pub fn attribute(
    backbone: &dyn Backbone,
    x: &Tensor,
    method: Method,
    target: &Target,
    settings: &Settings,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Attribution> {
    let (_, _, h, w) = x.dims4()?;
    let x = x.to_dtype(candle_core::DType::F32)?;
    if method.is_cam() {
        let layer = match &settings.layer {
            Some(l) => l.clone(),
            None => default_layer(backbone, target)
                .ok_or_else(|| Error::Invalid("the model has no convolutional tap".into()))?,
        };
        progress(0, 1);
        let (a, g, dims) = gradient_at(backbone, &x, Some(&layer), target)?;
        let &[_, c, lh, lw] = dims.as_slice() else {
            return Err(Error::Invalid(format!(
                "{layer} is not a layer of channels over space (shape {dims:?}): CAMs need one"
            )));
        };
        progress(1, 1);
        return Ok(Attribution {
            method,
            class: target.class,
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
            let (_, g, _) = gradient_at(backbone, &x, None, target)?;
            progress(1, 1);
            g.iter().map(|v| v.abs()).collect()
        }
        Method::SmoothGrad => {
            let noise = smoothgrad_noise(&x, settings)?;
            smoothgrad(backbone, &x, target, &noise, cancelled, progress)?
        }
        Method::IntegratedGradients => integrated_gradients(
            backbone,
            &x,
            &input::black(&x)?,
            target,
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
                &input::black(&x)?,
                target,
                (window, stride),
                cancelled,
                progress,
            )?
        }
        _ => unreachable!("CAMs returned above"),
    };
    Ok(Attribution {
        method,
        class: target.class,
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
}
