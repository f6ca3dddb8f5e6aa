//! The `bench` command's measurements: median wall time of a forward pass and of a dream step
//! (forward + gradient to the input + update) per model, as the PyTorch reference benchmark
//! (`shared/bench/peer_bench.py`) measures them; and of a step of the real dream (Lucid's
//! recipe, [`crate::explain::dream`]) alone and as a diverse batch of 4; and of each
//! attribution map with its default settings ([`bench_attribution`], as
//! `scripts/bench_attribution.py` times pytorch-grad-cam and Captum).

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use serde::Serialize;

use crate::error::Result;
use crate::explain::attribution::{attribute, Method, Settings, Target};
use crate::explain::dream::{dream, DreamSettings, DreamTarget};
use crate::explain::gradients::ascent_step;
use crate::inference::LoadedModel;
use crate::model::Backbone;

/// One timing.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRecord {
    pub model: String,
    /// `forward`, `dream_step` (pixels, batch 1), `lucid_step` (the dream's recipe, one
    /// image) or `lucid_step_batch4` (four images with the diversity term, per step of all four).
    pub what: String,
    /// Input side in pixels (batch 1); for `train_head`, the folder's photo count.
    pub size: usize,
    pub median_ms: f64,
    /// For `train_head`: the process's peak resident memory in MB (Linux; absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_mb: Option<f64>,
}

/// The process's peak resident set size in MB (`VmHWM`), where the system tells (Linux).
pub fn peak_resident_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// One cold training run on the photos of `dir` (features computed, no cache; the default
/// head settings): its wall time and the peak memory of the process after it, as a
/// `train_head` record whose `size` is the photo count.
pub fn bench_train_folder(model: &LoadedModel, dir: &std::path::Path) -> Result<BenchRecord> {
    let mut config = crate::train::pipeline::TrainConfig::default();
    config.features.cache_dir = None;
    let start = Instant::now();
    let outcome = crate::train::pipeline::train_on_folder(
        model,
        dir,
        &config,
        &mut crate::train::observe::Silent,
    )?;
    Ok(BenchRecord {
        model: model.spec.name.to_string(),
        what: "train_head".into(),
        size: outcome.dataset.items.len(),
        median_ms: start.elapsed().as_secs_f64() * 1e3,
        peak_mb: peak_resident_mb(),
    })
}

/// How many calls to time.
#[derive(Debug, Clone, Copy)]
pub struct BenchPlan {
    pub warmup: usize,
    pub runs: usize,
}

impl Default for BenchPlan {
    fn default() -> Self {
        Self {
            warmup: 3,
            runs: 10,
        }
    }
}

/// Median milliseconds of `runs` calls of `f` after `warmup` untimed ones.
pub fn median_ms(plan: BenchPlan, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..plan.warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(plan.runs);
    for _ in 0..plan.runs.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times `backbone`'s forward pass and dream step at `size`.
pub fn bench_backbone(
    name: &str,
    backbone: &dyn Backbone,
    device: &Device,
    size: usize,
    plan: BenchPlan,
) -> Result<Vec<BenchRecord>> {
    let x = Tensor::rand(0f32, 1f32, (1, 3, size, size), device)?;
    let forward = median_ms(plan, || {
        let logits = backbone.forward(&x)?;
        device.synchronize()?;
        drop(logits);
        Ok(())
    })?;
    let var = Var::from_tensor(&x.to_dtype(DType::F32)?)?;
    let dream = median_ms(plan, || {
        ascent_step(backbone, &var, 130, 1e-2, 0.02)?;
        device.synchronize()?;
        Ok(())
    })?;
    Ok(vec![
        BenchRecord {
            model: name.to_string(),
            what: "forward".into(),
            size,
            median_ms: forward,
            peak_mb: None,
        },
        BenchRecord {
            model: name.to_string(),
            what: "dream_step".into(),
            size,
            median_ms: dream,
            peak_mb: None,
        },
    ])
}

/// Times steps of the real dream of `model` at `size`: the median interval between steps after
/// `plan.warmup` of them (the set-up and the final check of a dream are not counted), for one
/// image and for a batch of 4 with the default diversity term.
pub fn bench_lucid(model: &LoadedModel, size: u32, plan: BenchPlan) -> Result<Vec<BenchRecord>> {
    let mut records = Vec::new();
    for (batch, what) in [(1, "lucid_step"), (4, "lucid_step_batch4")] {
        let mut settings = DreamSettings::new(DreamTarget::Class(281));
        settings.size = size;
        settings.batch = batch;
        settings.steps = plan.warmup + plan.runs.max(1) + 1;
        let mut times = Vec::new();
        let mut last = Instant::now();
        dream(model, &settings, &|| 0.0, &|| false, &mut |frame| {
            let now = Instant::now();
            if frame.step > plan.warmup + 1 {
                times.push((now - last).as_secs_f64() * 1e3);
            }
            last = now;
        })?;
        times.sort_by(f64::total_cmp);
        records.push(BenchRecord {
            model: model.spec.name.to_string(),
            what: what.into(),
            size: size as usize,
            median_ms: times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
            peak_mb: None,
        });
    }
    Ok(records)
}

/// Times each attribution method with its default settings (SmoothGrad 25 samples,
/// Integrated Gradients 50 steps, occlusion a seventh of the side with half of that as
/// stride) for one image of `model`'s size: `attr_METHOD` records. The slow ones (SmoothGrad,
/// Integrated Gradients, occlusion) are timed at most 3 times after one warm-up.
pub fn bench_attribution(model: &LoadedModel, plan: BenchPlan) -> Result<Vec<BenchRecord>> {
    let size = model.preprocess.size as usize;
    let device = &model.device;
    let x = Tensor::rand(-2f32, 2f32, (1, 3, size, size), device)?;
    let settings = Settings::default();
    let target = Target::imagenet(281);
    let mut records = Vec::new();
    for method in Method::ALL {
        let slow = matches!(
            method,
            Method::SmoothGrad | Method::IntegratedGradients | Method::Occlusion
        );
        let plan = if slow {
            BenchPlan {
                warmup: plan.warmup.min(1),
                runs: plan.runs.clamp(1, 3),
            }
        } else {
            plan
        };
        let ms = median_ms(plan, || {
            attribute(
                model.backbone.as_ref(),
                &x,
                method,
                &target,
                &settings,
                &|| false,
                &mut |_, _| {},
            )?;
            device.synchronize()?;
            Ok(())
        })?;
        records.push(BenchRecord {
            model: model.spec.name.to_string(),
            what: format!("attr_{}", method.name()),
            size,
            median_ms: ms,
            peak_mb: None,
        });
    }
    Ok(records)
}
