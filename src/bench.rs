//! The `bench` command's measurements: median wall time of a forward pass and of a dream step
//! (forward + gradient to the input + update) per model, as the PyTorch reference benchmark
//! (`shared/bench/peer_bench.py`) measures them.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use serde::Serialize;

use crate::error::Result;
use crate::explain::gradients::ascent_step;
use crate::model::Backbone;

/// One timing.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRecord {
    pub model: String,
    /// `forward` or `dream_step`.
    pub what: String,
    /// Input side in pixels (batch 1).
    pub size: usize,
    pub median_ms: f64,
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
        },
        BenchRecord {
            model: name.to_string(),
            what: "dream_step".into(),
            size,
            median_ms: dream,
        },
    ])
}
