//! How faithful a map is: the deletion and insertion scores of Petsiuk et al. 2018 (RISE),
//! the area under the class probability as the most important pixels are removed from the
//! photo or revealed on a blurred copy.

use candle_core::Tensor;
use serde::Serialize;

use super::{batch_size, class_scores, Target};
use crate::error::{Error, Result};
use crate::model::Backbone;

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
    target: &Target,
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
    let per = batch_size(backbone, x, false)?;
    let probs = class_scores(backbone, &images, target, (true, per), cancelled, progress)?;
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
