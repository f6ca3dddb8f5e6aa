//! The whole "train a head on a folder" job, as the CLI and the worker run it: scan, split,
//! features, training, evaluation.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::dataset::{scan, Dataset, ScanOptions, Skipped};
use super::features::{extract, FeatureOptions, Progress};
use super::head::{train, EpochMetrics, Examples, Head, TrainOptions};
use super::split::{stratified_split, Split};
use crate::error::{Error, Result};
use crate::inference::LoadedModel;

/// Everything a training run is set up with.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub scan: ScanOptions,
    /// Share of each class kept for validation.
    pub val_fraction: f64,
    pub features: FeatureOptions,
    /// The head's settings; its seed also drives the split.
    pub head: TrainOptions,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            scan: ScanOptions::default(),
            val_fraction: 0.2,
            features: FeatureOptions::default(),
            head: TrainOptions::default(),
        }
    }
}

/// What a run reports as it goes.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// The folder was read: classes and counts, before any computing.
    Scanned(&'a Dataset),
    Features(Progress),
    /// Optimiser step number and its mini-batch loss.
    Step(usize, f32),
    Epoch(&'a EpochMetrics),
}

/// A validation photo the head got wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Mistake {
    pub path: PathBuf,
    pub truth: usize,
    pub predicted: usize,
}

/// The result of [`train_on_folder`].
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub dataset: Dataset,
    pub split: Split,
    /// Photos that failed to decode (on top of `dataset.skipped`).
    pub failed: Vec<Skipped>,
    pub features_from_cache: usize,
    pub features_computed: usize,
    /// Photos per second of feature extraction, decoding included (0 when all were cached).
    pub images_per_s: f64,
    pub head: Head,
    /// With the kept (best) weights.
    pub val_accuracy: f32,
    /// `[true][predicted]` counts on the validation photos.
    pub confusion: Vec<Vec<usize>>,
    pub mistakes: Vec<Mistake>,
}

/// Trains a head for `model` on the photos of `dir`.
pub fn train_on_folder(
    model: &LoadedModel,
    dir: &Path,
    config: &TrainConfig,
    on_event: &mut dyn FnMut(TrainEvent),
    cancelled: &dyn Fn() -> bool,
) -> Result<TrainOutcome> {
    let dataset = scan(dir, config.scan)?;
    on_event(TrainEvent::Scanned(&dataset));
    let features = extract(
        model,
        &dataset.items,
        &config.features,
        &mut |p| on_event(TrainEvent::Features(p)),
        cancelled,
    )?;
    // Split over the photos that decoded, so that both sides stay stratified.
    let usable: Vec<usize> = (0..dataset.items.len())
        .filter(|&i| features.vectors[i].is_some())
        .collect();
    let labels: Vec<usize> = usable.iter().map(|&i| dataset.items[i].class).collect();
    let mut counts = vec![0; dataset.classes.len()];
    for &l in &labels {
        counts[l] += 1;
    }
    if let Some(empty) = counts.iter().position(|&c| c == 0) {
        return Err(Error::Invalid(format!(
            "class '{}' has no photo that could be read",
            dataset.classes[empty]
        )));
    }
    let split = stratified_split(&labels, config.val_fraction, config.head.seed);
    let split = Split {
        train: split.train.iter().map(|&i| usable[i]).collect(),
        val: split.val.iter().map(|&i| usable[i]).collect(),
    };
    let examples = |indices: &[usize], with_flips: bool| {
        let mut out = Examples::default();
        for &i in indices {
            let class = dataset.items[i].class as u32;
            for v in [
                &features.vectors[i],
                if with_flips {
                    &features.flipped[i]
                } else {
                    &None
                },
            ]
            .into_iter()
            .flatten()
            {
                out.x.extend_from_slice(v);
                out.y.push(class);
            }
        }
        out
    };
    let (train_set, val_set) = (examples(&split.train, true), examples(&split.val, false));
    // Both callbacks report through the one `on_event`.
    let on_event = std::cell::RefCell::new(on_event);
    let head = train(
        &train_set,
        &val_set,
        features.dim,
        &dataset.classes,
        &config.head,
        &mut |step, loss| (on_event.borrow_mut())(TrainEvent::Step(step, loss)),
        &mut |m| (on_event.borrow_mut())(TrainEvent::Epoch(m)),
        cancelled,
    )?;
    let (val_accuracy, predicted, confusion) = head.evaluate(&val_set)?;
    let mistakes = split
        .val
        .iter()
        .zip(&predicted)
        .filter(|(&i, &p)| dataset.items[i].class != p as usize)
        .map(|(&i, &p)| Mistake {
            path: dataset.items[i].path.clone(),
            truth: dataset.items[i].class,
            predicted: p as usize,
        })
        .collect();
    Ok(TrainOutcome {
        images_per_s: if features.computed > 0 && features.seconds > 0.0 {
            features.computed as f64 / features.seconds
        } else {
            0.0
        },
        features_from_cache: features.from_cache,
        features_computed: features.computed,
        failed: features.failed,
        dataset,
        split,
        head,
        val_accuracy,
        confusion,
        mistakes,
    })
}

/// Class probabilities of each photo under `head`, `[n][classes]`, through `model`'s features.
pub fn classify_with_head(
    model: &LoadedModel,
    head: &Head,
    images: &[&image::RgbImage],
) -> Result<Vec<Vec<f32>>> {
    if model.backbone.embedding_dim() != head.dim {
        return Err(Error::Invalid(format!(
            "the head takes {}-wide features but {} gives {}",
            head.dim,
            model.spec.name,
            model.backbone.embedding_dim()
        )));
    }
    let x = model.backbone.embed(&model.input(images)?)?;
    let probs = head.probabilities(&x.flatten_all()?.to_vec1::<f32>()?)?;
    Ok(probs
        .chunks(head.classes.len().max(1))
        .map(<[f32]>::to_vec)
        .collect())
}
