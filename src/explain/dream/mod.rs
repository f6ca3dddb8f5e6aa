//! Dreams: gradient ascent on the input image until the network sees a class (or a channel,
//! a neuron, a class and not another lights up), as in Simonyan et al. 2013
//! (<https://arxiv.org/abs/1312.6034>), with Lucid's recipe by default (Olah et al. 2017,
//! "Feature Visualization", <https://distill.pub/2017/feature-visualization/>): the image lives
//! in a 1/f-scaled Fourier spectrum in a decorrelated colour space ([`image_param`]) and is seen
//! through Lucid's random pad, jitter, scale and rotation every step ([`transforms`]), with Adam
//! and no total-variation term unless the user asks for one. Two measured changes make it
//! better than Lucid's: half the steps also see a central zoom of the canvas (the view a saved
//! PNG gets when opened like a photo), and Adam's rate is 0.08, not 0.05 (more colour).
//!
//! Several images of one target can be dreamed at once, pushed apart by Lucid's diversity
//! term ([`objective::gram_similarity`]); [`dream_each`] dreams a different target per member
//! (a layer gallery).

mod colour;
mod fft;
mod image_param;
mod objective;
mod transforms;

use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use image::RgbImage;
use rand::SeedableRng;

use super::gradients::total_variation;
use super::pipeline::image_of;
use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::vision::preprocess::Preprocess;
use image_param::ImageParam;
use transforms::{Draw, Sampling};

pub use objective::DreamTarget;

/// How the image is represented while it is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parameterisation {
    /// The pixels (the notebook's way): quick, but mostly high-frequency patterns.
    Pixels,
    /// Lucid's: 1/f-scaled Fourier spectrum, decorrelated colour, sigmoid.
    #[default]
    Fourier,
}

impl Parameterisation {
    /// Adam's default learning rate for this parameterisation: 0.08 for the Fourier one
    /// (Lucid's 0.05 gives paler pictures), 0.02 for the pixels.
    pub fn default_rate(self) -> f64 {
        match self {
            Self::Fourier => 0.08,
            Self::Pixels => 0.02,
        }
    }
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

/// The diversity term's default weight.
pub const DIVERSITY: f32 = 5.0;

/// The most images one dream optimises at once.
pub const MAX_BATCH: usize = 8;

/// A dream's settings; the total-variation weight can also change while it runs.
#[derive(Debug, Clone)]
pub struct DreamSettings {
    pub target: DreamTarget,
    pub parameterisation: Parameterisation,
    pub start: DreamStart,
    pub steps: usize,
    /// Adam's learning rate: 0.08 for the Fourier parameterisation (Lucid's 0.05 gives paler
    /// pictures: colourfulness 37.5 against 49.3 over the README's 8 classes, the same p),
    /// 0.02 for the pixels.
    pub learning_rate: f64,
    /// Weight of the total-variation penalty at the start (0 to 10; 0, Lucid's recipe, by
    /// default; 1 is visibly smoother, 10 flat).
    pub tv_weight: f32,
    /// Image side in pixels, 32 to 512; the network sees the same side.
    pub size: u32,
    /// Lucid's random transforms each step (pad, jitter, scale, rotate, jitter).
    pub transforms: bool,
    pub seed: u64,
    /// Maximise the class's log-softmax instead of its logit (pushes the other classes down).
    pub log_softmax: bool,
    /// How many images of the target to dream at once, 1 to [`MAX_BATCH`].
    pub batch: usize,
    /// Weight of Lucid's diversity term when `batch` > 1: 5 by default. Lucid's examples use
    /// 100 on channels; on EfficientNet-Lite0's class logits (tabby, batch 4) 10 already loses
    /// the class for one member, 5 keeps every p above 0.99 and cuts the members' Gram
    /// similarity to about a third of what it is without the term (see the README).
    pub diversity: f32,
    /// The layer whose Gram matrices the diversity term compares; by default the target's own
    /// layer, or for class targets a layer two thirds of the way in.
    pub diversity_layer: Option<String>,
}

impl DreamSettings {
    /// The defaults for `target`: Lucid's recipe.
    pub fn new(target: DreamTarget) -> Self {
        Self {
            target,
            parameterisation: Parameterisation::Fourier,
            start: DreamStart::Noise,
            steps: 256,
            learning_rate: Parameterisation::Fourier.default_rate(),
            tv_weight: 0.0,
            size: 224,
            transforms: true,
            seed: 0,
            log_softmax: false,
            batch: 1,
            diversity: DIVERSITY,
            diversity_layer: None,
        }
    }
}

/// One step of a dream.
#[derive(Debug, Clone)]
pub struct DreamFrame {
    pub step: usize,
    /// The images this step optimised (before its update), `size x size`, one per member.
    pub images: Vec<RgbImage>,
    /// Each member's softmax probability of its class (for other targets, of its top class)
    /// as the network saw this step's transformed input.
    pub probs: Vec<f32>,
    /// Each member's score (logit, log-softmax, difference or activation).
    pub scores: Vec<f32>,
    /// The total-variation penalty (already weighted, summed over the members).
    pub penalty: f32,
    /// Lucid's diversity term before weighting: the mean Gram similarity to the other members.
    pub similarity: f32,
}

/// The finished (or stopped) dream.
#[derive(Debug, Clone)]
pub struct DreamOutcome {
    /// One image per member.
    pub images: Vec<RgbImage>,
    pub steps: usize,
    /// Each image's probability of its class (for other targets, of its top class) when the
    /// saved 8-bit image is opened like a photo: the model's standard preprocessing.
    pub probs: Vec<f32>,
    /// For each image, the class the network sees in it (as above).
    pub top_classes: Vec<usize>,
    /// The last step's mean Gram similarity of the members (0 for one image).
    pub similarity: f32,
    pub ms_per_step: f64,
}

/// The TV weight's unit: weight 1 makes a Lucid-style dream's penalty about as large as a
/// class logit, so the window's slider (0 to 10) spans "no effect" to "flat".
const TV_SCALE: f64 = 10_000.0;

/// Adam's moments: plain vectors for f32 on the CPU (one loop per step instead of a dozen
/// tensor ops, each with its own buffer), tensors elsewhere.
enum Moments {
    Host { m: Vec<f32>, v: Vec<f32> },
    Device { m: Tensor, v: Tensor },
}

/// Adam, ascending.
struct Adam {
    moments: Moments,
    t: i32,
    lr: f64,
}

const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
const ADAM_EPS: f64 = 1e-8;

impl Adam {
    fn new(like: &Tensor, lr: f64) -> Result<Self> {
        let moments = if like.device().is_cpu() && like.dtype() == DType::F32 {
            let n = like.elem_count();
            Moments::Host {
                m: vec![0.0; n],
                v: vec![0.0; n],
            }
        } else {
            Moments::Device {
                m: like.zeros_like()?,
                v: like.zeros_like()?,
            }
        };
        Ok(Self { moments, t: 0, lr })
    }

    fn step(&mut self, param: &candle_core::Var, grad: &Tensor) -> Result<()> {
        let (b1, b2) = ADAM_BETAS;
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        match &mut self.moments {
            Moments::Host { m, v } => {
                let g: Vec<f32> = grad.flatten_all()?.to_vec1()?;
                let mut p: Vec<f32> = param.as_tensor().flatten_all()?.to_vec1()?;
                if g.len() != p.len() || m.len() != p.len() {
                    return Err(Error::Invalid("the gradient has the wrong size".into()));
                }
                let (b1, b2, c1, c2) = (b1 as f32, b2 as f32, c1 as f32, c2 as f32);
                let (lr, eps) = (self.lr as f32, ADAM_EPS as f32);
                for (((p, g), m), v) in p.iter_mut().zip(&g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p += lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                }
                let shape = param.as_tensor().shape().clone();
                param.set(&Tensor::from_vec(p, shape, param.device())?)?;
            }
            Moments::Device { m, v } => {
                *m = ((&*m * b1)? + (grad * (1.0 - b1))?)?;
                *v = ((&*v * b2)? + (grad.sqr()? * (1.0 - b2))?)?;
                let m_hat = (&*m / c1)?;
                let v_hat = (&*v / c2)?;
                let update = (m_hat / (v_hat.sqrt()? + ADAM_EPS)?)?;
                param.set(&(param.as_tensor() + (update * self.lr)?)?)?;
            }
        }
        Ok(())
    }
}

/// The members of `images` `[B, 3, S, S]` in [0, 1] as 8-bit images.
fn images_of(images: &Tensor) -> Result<Vec<RgbImage>> {
    let batch = images.dim(0)?;
    let scaled = (images.detach() * 255.0)?;
    (0..batch)
        .map(|b| Ok(image_of(&scaled.narrow(0, b, 1)?)?))
        .collect()
}

/// Each member's probability of its class (or of its top class) in `logits` `[B, classes]`,
/// and that top class.
fn probabilities(logits: &Tensor, targets: &[DreamTarget]) -> Result<(Vec<f32>, Vec<usize>)> {
    let probs = candle_nn::ops::softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    let rows: Vec<Vec<f32>> = probs.to_vec2()?;
    let mut out = (Vec::new(), Vec::new());
    for (row, target) in rows.iter().zip(targets) {
        let top = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        out.0.push(row[target.class().unwrap_or(top)]);
        out.1.push(top);
    }
    Ok(out)
}

/// Runs a dream of `settings.batch` images of `settings.target`. `tv_weight` is read before
/// every step (the window's slider), `cancelled` too; `on_step` sees every step. `None` when
/// cancelled before the first step.
pub fn dream(
    model: &LoadedModel,
    settings: &DreamSettings,
    tv_weight: &dyn Fn() -> f32,
    cancelled: &dyn Fn() -> bool,
    on_step: &mut dyn FnMut(&DreamFrame),
) -> Result<Option<DreamOutcome>> {
    if !(1..=MAX_BATCH).contains(&settings.batch) {
        return Err(Error::Invalid(format!(
            "a dream batch of {} is out of range (1 to {MAX_BATCH})",
            settings.batch
        )));
    }
    let targets = vec![settings.target.clone(); settings.batch];
    dream_each(model, &targets, settings, tv_weight, cancelled, on_step)
}

/// Runs one dream per target at once, as one batch (`settings.target` and `settings.batch`
/// are not used): member `b` maximises `targets[b]`.
pub fn dream_each(
    model: &LoadedModel,
    targets: &[DreamTarget],
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
    if targets.is_empty() {
        return Err(Error::Invalid("a dream needs at least one target".into()));
    }
    for t in targets {
        t.check(model.backbone.num_classes())?;
    }
    let device = &model.device;
    let batch = targets.len();
    let start = match &settings.start {
        DreamStart::Photo(photo) => {
            let view = Preprocess::imagenet(size as u32)
                .with_filter(model.preprocess.filter)
                .network_view(photo);
            let pixels = super::pipeline::pixels_of(&view, &Device::Cpu)?;
            Some((pixels / 255.0)?.flatten_all()?.to_vec1::<f32>()?)
        }
        DreamStart::Noise => None,
    };
    let fourier = settings.parameterisation == Parameterisation::Fourier;
    let param = ImageParam::new(
        fourier,
        start.as_deref(),
        batch,
        size,
        settings.seed,
        device,
    )?;
    let mut adam = Adam::new(param.param.as_tensor(), settings.learning_rate)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed ^ 0x5eed);
    let mean = Tensor::from_vec(model.preprocess.mean.to_vec(), (1, 3, 1, 1), device)?;
    let std = Tensor::from_vec(model.preprocess.std.to_vec(), (1, 3, 1, 1), device)?;
    let diversity_layer = settings
        .diversity_layer
        .clone()
        .or_else(|| targets[0].layer().map(str::to_string))
        .or_else(|| objective::diversity_layer(model.backbone.as_ref()));
    let diversity = diversity_layer
        .as_deref()
        .map(|l| (l, f64::from(settings.diversity) * batch as f64));
    let started = Instant::now();
    let mut steps = 0;
    let mut similarity = 0.0;
    for step in 1..=settings.steps {
        if cancelled() {
            if steps == 0 {
                return Ok(None);
            }
            break;
        }
        let images = param.images()?;
        let seen = if settings.transforms {
            Sampling::new(&Draw::random(&mut rng), size, size, device)?.apply(&images)?
        } else {
            images.clone()
        };
        let input = seen.broadcast_sub(&mean)?.broadcast_div(&std)?;
        let scores = objective::scores(
            model.backbone.as_ref(),
            &input,
            targets,
            settings.log_softmax,
            diversity,
        )?;
        // TV of the untransformed images, summed over the members.
        let weight = f64::from(tv_weight().max(0.0)) * TV_SCALE * batch as f64;
        // At weight 0 (the recipe) the penalty's graph would only cost time.
        let (objective, penalty) = if weight > 0.0 {
            let penalty = (total_variation(&images)? * weight)?;
            let value = penalty.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            ((&scores.total - &penalty)?, value)
        } else {
            (scores.total.clone(), 0.0)
        };
        let grads = objective.backward()?;
        let grad = grads
            .get(param.param.as_tensor())
            .ok_or_else(|| Error::Invalid("no gradient reached the image".into()))?
            .clone();
        adam.step(&param.param, &grad)?;
        param.project()?;
        steps = step;
        similarity = scores.similarity;
        let (probs, _) = probabilities(&scores.logits, targets)?;
        on_step(&DreamFrame {
            step,
            images: images_of(&images)?,
            probs,
            scores: scores.members,
            penalty,
            similarity: scores.similarity,
        });
    }
    let images = images_of(&param.images()?)?;
    // As the saved PNGs will be seen when opened like any photo.
    let refs: Vec<&RgbImage> = images.iter().collect();
    let logits = model.backbone.forward(&model.input(&refs)?)?;
    let (probs, top_classes) = probabilities(&logits, targets)?;
    Ok(Some(DreamOutcome {
        images,
        steps,
        probs,
        top_classes,
        similarity,
        ms_per_step: started.elapsed().as_secs_f64() * 1e3 / steps.max(1) as f64,
    }))
}

impl DreamOutcome {
    /// The first (for a single dream, the only) image.
    pub fn image(&self) -> Option<&RgbImage> {
        self.images.first()
    }

    /// The first image's probability.
    pub fn prob(&self) -> f32 {
        self.probs.first().copied().unwrap_or(0.0)
    }
}

/// What the dream ops' tests share.
#[cfg(test)]
mod test_support {
    use candle_core::{Tensor, Var};

    /// `f(x)` at `init`, and the gradient of `sum(f(x) * upstream)` with respect to `x`.
    pub(super) fn value_and_gradient(
        init: &Tensor,
        upstream: &Tensor,
        f: impl Fn(&Tensor) -> Tensor,
    ) -> (Tensor, Tensor) {
        let x = Var::from_tensor(init).unwrap();
        let y = f(x.as_tensor());
        let grads = (&y * upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grad = grads.get(x.as_tensor()).unwrap().clone();
        (y, grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_outside_one_to_eight_are_refused_before_any_work() {
        let spec = crate::weights::find_model("efficientnet-lite0").unwrap();
        let backbone = crate::weights::loading::zero_backbone(spec.arch, &Device::Cpu).unwrap();
        let model = LoadedModel {
            spec,
            backbone,
            preprocess: Preprocess::imagenet(224),
            device: Device::Cpu,
            weights_path: "none".into(),
        };
        for batch in [0, MAX_BATCH + 1] {
            let mut s = DreamSettings::new(DreamTarget::Class(1));
            s.batch = batch;
            let err = dream(&model, &s, &|| 0.0, &|| false, &mut |_| {}).unwrap_err();
            assert!(err.to_string().contains("out of range"), "{err}");
        }
    }
}
