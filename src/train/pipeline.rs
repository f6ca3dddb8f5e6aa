//! The whole "train a head on a folder" job, as the CLI and the worker run it: scan, split,
//! features, training, evaluation.

use std::path::{Path, PathBuf};

use super::dataset::{scan, Dataset, ScanOptions, Skipped};
use super::features::{extract, FeatureOptions};
use super::head::{train, Examples, FineTune, Head, TrainData, TrainOptions};
use super::observe::{TrainEvent, TrainObserver};
use super::review::ValPrediction;
use super::split::{stratified_split, Split};
use super::tsne::TsneInput;
use crate::error::{Error, Result};
use crate::inference::LoadedModel;

/// Everything a training run is set up with, resolved for the pipeline (front ends describe a
/// run as a [`super::request::TrainRequest`] and get this from [`TrainRequest::config`]).
///
/// [`TrainRequest::config`]: super::request::TrainRequest::config
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub scan: ScanOptions,
    /// Share of each class kept for validation.
    pub val_fraction: f64,
    pub features: FeatureOptions,
    /// The head's settings; its seed also drives the split.
    pub head: TrainOptions,
    /// Also train the backbone's last convolutional block, at the head's learning rate times
    /// this factor (its inputs are then computed every run, not cached).
    pub fine_tune: Option<f64>,
    /// Also reduce the map's features for a t-SNE map ([`TrainOutcome::map_input`]); off, that
    /// is left empty (a comparison, or a command line run without `--tsne`, needs none).
    pub tsne_input: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            scan: ScanOptions::default(),
            val_fraction: 0.2,
            features: FeatureOptions::default(),
            head: TrainOptions::default(),
            fine_tune: None,
            tsne_input: false,
        }
    }
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
    /// Every validation photo's prediction, in `split.val`'s order.
    pub predictions: Vec<ValPrediction>,
    /// The dataset map: each photo that decoded (`dataset.items` index) at its features' two
    /// principal components (see [`super::projection`]).
    pub map: Vec<(usize, [f32; 2])>,
    /// The same photos' features reduced for a t-SNE map (see [`super::tsne`]), a row each in
    /// `map`'s order; empty unless [`TrainConfig::tsne_input`].
    pub map_input: TsneInput,
}

impl TrainOutcome {
    /// The validation photos the head got wrong.
    pub fn mistakes(&self) -> impl Iterator<Item = &ValPrediction> {
        self.predictions.iter().filter(|p| p.is_mistake())
    }
}

/// Trains a head for `model` on the photos of `dir`, telling `observer` each stage's
/// [`TrainEvent`]s and stopping with [`Error::Cancelled`] when it asks.
pub fn train_on_folder(
    model: &LoadedModel,
    dir: &Path,
    config: &TrainConfig,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome> {
    let dataset = scan(dir, config.scan)?;
    observer.on_event(TrainEvent::Scanned(&dataset));
    let mut feature_options = config.features.clone();
    let fine_tune = match config.fine_tune {
        Some(lr_factor) => {
            let (block, input_shape) = block_to_fine_tune(model)?;
            let copies = if feature_options.flip { 2 } else { 1 };
            let width: usize = input_shape.iter().product();
            let bytes = (dataset.items.len() * copies * width * 4) as f64;
            if bytes > FINE_TUNE_MEMORY {
                return Err(Error::Invalid(format!(
                    "fine-tuning {} photos with {} would hold {:.1} GB of block inputs in \
                     memory (more than {:.0} GB): use fewer photos, no flips, or train the head \
                     alone",
                    dataset.items.len(),
                    model.spec.name,
                    bytes / 1e9,
                    FINE_TUNE_MEMORY / 1e9
                )));
            }
            feature_options.tap = Some((block.input_tap.clone(), width));
            Some((block, input_shape, lr_factor))
        }
        None => None,
    };
    let mut features = extract(model, &dataset.items, &feature_options, observer)?;
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
    let (map, map_input) = dataset_map(
        &features.vectors,
        &usable,
        fine_tune.as_ref().map(|f| f.1),
        config.tsne_input,
    );
    // Moved out of `features`, not copied: fine-tuning inputs are large.
    let mut examples = |indices: &[usize], with_flips: bool| {
        let mut out = Examples::default();
        for &i in indices {
            let class = dataset.items[i].class as u32;
            let flipped = if with_flips {
                features.flipped[i].take()
            } else {
                None
            };
            for v in [features.vectors[i].take(), flipped].into_iter().flatten() {
                out.x.extend_from_slice(&v);
                out.y.push(class);
            }
        }
        out
    };
    let (train_set, val_set) = (examples(&split.train, true), examples(&split.val, false));
    let data = TrainData {
        train: &train_set,
        val: &val_set,
        dim: model.backbone.embedding_dim(),
        classes: &dataset.classes,
    };
    let fine_tune = fine_tune
        .as_ref()
        .map(|(block, input_shape, lr_factor)| FineTune {
            block,
            input_shape: *input_shape,
            lr_factor: *lr_factor,
        });
    let head = train(&data, &config.head, fine_tune, observer)?;
    let (val_accuracy, predicted, confusion) = head.evaluate(&val_set)?;
    let predictions = val_predictions(&head, &val_set, &predicted, |n| {
        &dataset.items[split.val[n]].path
    })?;
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
        predictions,
        map,
        map_input,
    })
}

/// The photos `usable` (indices of `vectors`) on the 2-D PCA map of their features: the
/// pooled features, or for a fine-tuning run its block inputs `[C, H, W]` averaged over space
/// (the map shows what the frozen part of the backbone gives); and, if `tsne`, those features
/// reduced for t-SNE.
fn dataset_map(
    vectors: &[Option<Vec<f32>>],
    usable: &[usize],
    block_input: Option<[usize; 3]>,
    tsne: bool,
) -> (Vec<(usize, [f32; 2])>, TsneInput) {
    let mut x = Vec::new();
    let mut dim = 0;
    for &i in usable {
        let Some(v) = &vectors[i] else { continue };
        match block_input {
            Some([c, h, w]) if h * w > 0 && v.len() == c * h * w => {
                dim = c;
                x.extend(
                    v.chunks_exact(h * w)
                        .map(|s| s.iter().sum::<f32>() / s.len() as f32),
                );
            }
            _ => {
                dim = v.len();
                x.extend_from_slice(v);
            }
        }
    }
    if dim == 0 || x.len() != usable.len() * dim {
        return (Vec::new(), TsneInput::default());
    }
    let map = usable
        .iter()
        .copied()
        .zip(super::projection::pca_2d(&x, dim))
        .collect();
    let input = if tsne {
        TsneInput::new(&x, dim)
    } else {
        TsneInput::default()
    };
    (map, input)
}

/// Each validation example's [`ValPrediction`] (`path(n)` names the `n`-th), its
/// probabilities computed in batches so that fine-tuned block inputs stay within memory.
fn val_predictions<'p>(
    head: &Head,
    val: &Examples,
    predicted: &[u32],
    path: impl Fn(usize) -> &'p PathBuf,
) -> Result<Vec<ValPrediction>> {
    const BATCH: usize = 256;
    let width = head.input_width().max(1);
    let mut probabilities = Vec::with_capacity(val.len() * head.classes.len());
    for chunk in val.x.chunks(BATCH * width) {
        probabilities.extend(head.probabilities(chunk)?);
    }
    let k = head.classes.len().max(1);
    Ok(val
        .y
        .iter()
        .zip(predicted)
        .zip(probabilities.chunks(k))
        .enumerate()
        .map(|(n, ((&truth, &p), probs))| ValPrediction {
            path: path(n).clone(),
            truth: truth as usize,
            predicted: p as usize,
            probabilities: probs.to_vec(),
        })
        .collect())
}

/// Most memory the block inputs of a fine-tuning run may take.
const FINE_TUNE_MEMORY: f64 = 4e9;

/// `model`'s last block and the shape `[C, H, W]` of its input for one photo.
fn block_to_fine_tune(model: &LoadedModel) -> Result<(crate::model::LastBlock, [usize; 3])> {
    let block = model.backbone.last_block().ok_or_else(|| {
        Error::Invalid(format!(
            "{} has no last block that can be fine-tuned",
            model.spec.name
        ))
    })?;
    let side = model.preprocess.size;
    let blank = image::RgbImage::new(side, side);
    let probe = model
        .backbone
        .forward_until(&model.input(&[&blank])?, Some(&block.input_tap))?;
    match probe.dims() {
        &[_, c, h, w] => Ok((block, [c, h, w])),
        other => Err(Error::Invalid(format!(
            "tap {} has shape {other:?}, not an image of channels",
            block.input_tap
        ))),
    }
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
    let input = model.input(images)?;
    let x = match &head.block {
        Some(block) => {
            let x = model
                .backbone
                .forward_until(&input, Some(&block.input_tap))?;
            // A head made for another tap or input size must not read the wrong values.
            if x.dims().get(1..) != Some(&block.input_shape[..]) {
                return Err(Error::Invalid(format!(
                    "the head's fine-tuned block takes {:?} from {} but {} gives {:?}",
                    block.input_shape,
                    block.input_tap,
                    model.spec.name,
                    x.dims().get(1..).unwrap_or_default()
                )));
            }
            x
        }
        None => model.backbone.embed(&input)?,
    };
    let probs = head.probabilities(&x.flatten_all()?.to_vec1::<f32>()?)?;
    Ok(probs
        .chunks(head.classes.len().max(1))
        .map(<[f32]>::to_vec)
        .collect())
}
