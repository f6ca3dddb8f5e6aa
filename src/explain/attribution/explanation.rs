//! One photo explained, as the window and `explain` show it: the map of a method for a class
//! (the top one unless asked), the map at the input's resolution, and its deletion and
//! insertion scores.

use std::time::Instant;

use candle_core::D;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{attribute, causal_metric, upsample, Attribution, Causal, Method, Settings, Target};
use crate::error::Result;
use crate::inference::LoadedModel;
use crate::labels::imagenet_label;
use crate::train::head::Head;

/// Deletion and insertion steps unless asked otherwise: 50 forward passes each, batched.
pub const DEFAULT_CAUSAL_STEPS: usize = 50;

/// What to explain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Request {
    pub method: Method,
    /// The class (ImageNet's, or the head's when there is one); `None`: the top class.
    pub class: Option<usize>,
    pub settings: Settings,
    /// Steps of the deletion and insertion curves; 0 skips them.
    pub causal_steps: usize,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            method: Method::GradCam,
            class: None,
            settings: Settings::default(),
            causal_steps: DEFAULT_CAUSAL_STEPS,
        }
    }
}

/// A deletion or insertion run: the area under the curve and the class probability after
/// each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CausalScore {
    pub auc: f32,
    pub curve: Vec<f32>,
}

/// One map with what it needs to be shown and judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub attribution: Attribution,
    /// The class's name, and its probability on the photo.
    pub label: String,
    pub probability: f32,
    /// The map at the input's resolution `[H, W]` (CAMs upsampled bilinearly): what the
    /// overlay shows and deletion and insertion rank.
    pub full: Vec<f32>,
    pub full_height: usize,
    pub full_width: usize,
    pub deletion: Option<CausalScore>,
    pub insertion: Option<CausalScore>,
    /// Time for the map alone, and for the scores.
    pub map_ms: f64,
    pub scores_ms: f64,
}

/// Where an explanation is: `(stage, done, total)`, stage one of "map", "deletion",
/// "insertion".
pub type Progress<'a> = dyn FnMut(&str, usize, usize) + 'a;

/// Explains `photo` under `model` (through its exact preprocessing: the map lies on the
/// photo's network view, `Preprocess::network_view`), for a class of its own logits or of
/// `head`'s.
pub fn explain(
    model: &LoadedModel,
    photo: &RgbImage,
    head: Option<&Head>,
    request: &Request,
    cancelled: &dyn Fn() -> bool,
    progress: &mut Progress,
) -> Result<Explanation> {
    let backbone = model.backbone.as_ref();
    let x = model.input(&[photo])?;
    // The probabilities first: the default class is the top one, and its name is shown.
    let probe = Target { class: 0, head };
    let probs: Vec<f32> = candle_nn::ops::softmax(&probe.logits(backbone, &x)?, D::Minus1)?
        .flatten_all()?
        .to_vec1()?;
    let class = match request.class {
        Some(c) => c,
        None => (0..probs.len())
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap_or(0),
    };
    let target = match head {
        Some(h) => Target::head(backbone, h, class)?,
        None => Target::imagenet(class),
    };
    let label = match head {
        Some(h) => h.classes[class].clone(),
        None => imagenet_label(class),
    };
    let probability = probs.get(class).copied().unwrap_or(0.0);
    let start = Instant::now();
    let attribution = attribute(
        backbone,
        &x,
        request.method,
        &target,
        &request.settings,
        cancelled,
        &mut |d, t| progress("map", d, t),
    )?;
    let map_ms = start.elapsed().as_secs_f64() * 1e3;
    let (_, _, h, w) = x.dims4()?;
    let full = if (attribution.height, attribution.width) == (h, w) {
        attribution.map.clone()
    } else {
        upsample(
            &attribution.map,
            (attribution.height, attribution.width),
            (h, w),
        )
    };
    let start = Instant::now();
    let mut score = |mode: Causal, stage: &str| -> Result<Option<CausalScore>> {
        if request.causal_steps == 0 {
            return Ok(None);
        }
        let (auc, curve) = causal_metric(
            backbone,
            &x,
            &full,
            &target,
            (mode, request.causal_steps),
            cancelled,
            &mut |d, t| progress(stage, d, t),
        )?;
        Ok(Some(CausalScore { auc, curve }))
    };
    let deletion = score(Causal::Deletion, "deletion")?;
    let insertion = score(Causal::Insertion, "insertion")?;
    Ok(Explanation {
        attribution,
        label,
        probability,
        full,
        full_height: h,
        full_width: w,
        deletion,
        insertion,
        map_ms,
        scores_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}
