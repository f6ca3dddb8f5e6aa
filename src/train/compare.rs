//! Comparing backbones on a person's own photos: the same head (same settings, same seed)
//! trained on the same split of one folder with each model in turn, with what each costs
//! (feature time per photo, parameters, weights size) beside its validation accuracy.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::dataset::scan;
use super::observe::{FnObserver, TrainEvent, TrainObserver};
use super::pipeline::{train_on_folder, TrainConfig};
use crate::error::{Error, Result};
use crate::inference::load_model;
use crate::model::Arch;
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};
use crate::weights::ModelSpec;

/// How many photos the feature timing runs on (one batch).
const TIMING_PHOTOS: usize = 8;

/// One backbone's line of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRow {
    pub model: String,
    /// As its display name in JSON (`"VGG-16"`).
    #[serde(with = "crate::model::arch_display_name")]
    pub arch: Arch,
    /// Validation accuracy of the kept head, 0 to 1.
    pub val_accuracy: f32,
    /// The kept epoch (as the training log numbers it).
    pub best_epoch: usize,
    pub train_photos: usize,
    pub val_photos: usize,
    /// Milliseconds per photo of the backbone's pooled features (one batch of up to 8
    /// preprocessed photos, after a warm-up; decoding not included).
    pub feature_ms_per_image: f64,
    /// Photos per second of this run's feature extraction, decoding included (0 when every
    /// feature came from the cache).
    pub images_per_s: f64,
    /// Trainable parameters of the pretrained network (its published count).
    pub parameters: u64,
    /// Size of the weights file on disk.
    pub weights_bytes: u64,
    /// Length of the feature vector the head reads.
    pub embedding_dim: usize,
}

/// A backbone's result: its row, or why it could not run (weights missing, ...).
///
/// As JSON: `{"model": NAME, "row": {...}}` or `{"model": NAME, "error": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareEntry {
    pub model: String,
    pub result: std::result::Result<CompareRow, String>,
}

impl CompareEntry {
    /// The row, when the model ran.
    pub fn row(&self) -> Option<&CompareRow> {
        self.result.as_ref().ok()
    }

    /// Why the model could not run, when it did not.
    pub fn error(&self) -> Option<&str> {
        self.result.as_ref().err().map(String::as_str)
    }
}

impl Serialize for CompareEntry {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("model", &self.model)?;
        match &self.result {
            Ok(row) => map.serialize_entry("row", row)?,
            Err(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

/// What a comparison reports as it goes.
#[derive(Debug)]
pub enum CompareEvent<'a> {
    /// Model `index` of `total` starts (loading its weights).
    Started {
        model: &'a str,
        index: usize,
        total: usize,
    },
    /// Its training run's own events.
    Train(TrainEvent<'a>),
    /// Its entry, row or error.
    Finished(&'a CompareEntry),
}

/// Receives a comparison's events and says whether to stop (as [`TrainObserver`] does for
/// one training run).
pub trait CompareObserver {
    /// One event, as it happens.
    fn on_event(&mut self, event: CompareEvent<'_>);

    /// Polled before each model and wherever its training run polls: `true` ends the
    /// comparison with [`Error::Cancelled`] (the default never cancels).
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// A comparison observer calling `on_event` with each event and `cancelled` for the cancel
/// check (the same closure pair as a training run's [`observer`](super::observe::observer)).
pub fn compare_observer<E, C>(on_event: E, cancelled: C) -> FnObserver<E, C>
where
    E: FnMut(CompareEvent<'_>),
    C: Fn() -> bool,
{
    FnObserver {
        on_event,
        cancelled,
    }
}

impl<E, C> CompareObserver for FnObserver<E, C>
where
    E: FnMut(CompareEvent<'_>),
    C: Fn() -> bool,
{
    fn on_event(&mut self, event: CompareEvent<'_>) {
        (self.on_event)(event);
    }

    fn is_cancelled(&self) -> bool {
        (self.cancelled)()
    }
}

/// One model's training run as seen through the comparison's observer.
struct TrainOf<'o>(&'o mut dyn CompareObserver);

impl TrainObserver for TrainOf<'_> {
    fn on_event(&mut self, event: TrainEvent<'_>) {
        self.0.on_event(CompareEvent::Train(event));
    }

    fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// Trains `config`'s head on the photos of `dir` with each of `models` on `device`, each from
/// its weights in `weights_dir`. A folder that cannot be trained on (empty, one class) fails
/// the whole comparison at once; a model that cannot run (weights missing or broken) gets an
/// entry with its error and the others go on. `observer` hears each model start, its
/// training's events and its entry, and can stop the comparison between batches and steps.
pub fn compare_backbones(
    models: &[&'static ModelSpec],
    dir: &Path,
    weights_dir: &Path,
    config: &TrainConfig,
    device: &Device,
    observer: &mut dyn CompareObserver,
) -> Result<Vec<CompareEntry>> {
    // A model named twice runs once.
    let mut seen = std::collections::HashSet::new();
    let models: Vec<&'static ModelSpec> = models
        .iter()
        .copied()
        .filter(|m| seen.insert(m.name))
        .collect();
    if models.is_empty() {
        return Err(Error::Invalid("no model to compare".into()));
    }
    // Refuse a folder that no model could train on before loading any weights.
    let dataset = scan(dir, config.scan)?;
    let mut entries = Vec::with_capacity(models.len());
    for (index, spec) in models.iter().enumerate() {
        if observer.is_cancelled() {
            return Err(Error::Cancelled);
        }
        observer.on_event(CompareEvent::Started {
            model: spec.name,
            index,
            total: models.len(),
        });
        let result = match compare_one(
            spec,
            dir,
            weights_dir,
            config,
            device,
            &mut TrainOf(&mut *observer),
        ) {
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            result => result.map_err(|e| e.to_string()),
        };
        let entry = CompareEntry {
            model: spec.name.to_string(),
            result,
        };
        tracing::info!(model = spec.name, ?entry, "compared");
        observer.on_event(CompareEvent::Finished(&entry));
        entries.push(entry);
    }
    // Every model saw the same photos; say so if it was not the case (it cannot be, since
    // decoding does not depend on the model, but a reader of the table relies on it).
    let sizes: Vec<(usize, usize)> = entries
        .iter()
        .filter_map(|e| e.row().map(|r| (r.train_photos, r.val_photos)))
        .collect();
    if sizes.windows(2).any(|w| w[0] != w[1]) {
        tracing::warn!(?sizes, photos = dataset.items.len(), "splits differ");
    }
    Ok(entries)
}

fn compare_one(
    spec: &'static ModelSpec,
    dir: &Path,
    weights_dir: &Path,
    config: &TrainConfig,
    device: &Device,
    observer: &mut dyn TrainObserver,
) -> Result<CompareRow> {
    let path = spec.path_in(weights_dir);
    if !path.is_file() {
        return Err(Error::WeightsMissing {
            model: spec.name.to_string(),
            path,
        });
    }
    let weights_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let model = load_model(spec.name, Some(&path), device)?;
    let outcome = train_on_folder(&model, dir, config, observer)?;
    // Time the features on photos of this folder (the first that decode).
    let photos: Vec<_> = outcome
        .split
        .train
        .iter()
        .chain(&outcome.split.val)
        .filter_map(|&i| load_rgb(&outcome.dataset.items[i].path, DEFAULT_MAX_PIXELS).ok())
        .take(TIMING_PHOTOS)
        .collect();
    if photos.is_empty() {
        return Err(Error::Invalid(
            "none of the folder's photos could be read again to time the features".into(),
        ));
    }
    let refs: Vec<_> = photos.iter().collect();
    let input = model.input(&refs)?;
    model.backbone.embed(&input)?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let features = model.backbone.embed(&input)?;
        device.synchronize()?;
        drop(features);
        times.push(start.elapsed().as_secs_f64() * 1e3 / photos.len().max(1) as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(CompareRow {
        model: spec.name.to_string(),
        arch: spec.arch,
        val_accuracy: outcome.val_accuracy,
        best_epoch: outcome
            .head
            .metrics
            .get(outcome.head.best_epoch)
            .map_or(0, |m| m.epoch),
        train_photos: outcome.split.train.len(),
        val_photos: outcome.split.val.len(),
        feature_ms_per_image: times[times.len() / 2],
        images_per_s: outcome.images_per_s,
        parameters: spec.parameters,
        weights_bytes,
        embedding_dim: model.backbone.embedding_dim(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_written_as_its_row_or_its_error() {
        let row = CompareRow {
            model: "vgg16".into(),
            arch: Arch::Vgg16,
            val_accuracy: 0.5,
            best_epoch: 2,
            train_photos: 8,
            val_photos: 2,
            feature_ms_per_image: 3.0,
            images_per_s: 10.0,
            parameters: 138_357_544,
            weights_bytes: 1,
            embedding_dim: 512,
        };
        let ran = CompareEntry {
            model: "vgg16".into(),
            result: Ok(row.clone()),
        };
        let json = serde_json::to_value(&ran).unwrap();
        assert_eq!(json["model"], "vgg16");
        assert_eq!(json["row"]["embedding_dim"], 512);
        // The architecture as people read it, as `compare --json` always printed it.
        assert_eq!(json["row"]["arch"], "VGG-16");
        assert!(json.get("error").is_none());
        let back: CompareRow = serde_json::from_value(json["row"].clone()).unwrap();
        assert_eq!(back, row);
        assert_eq!(ran.row(), Some(&row));

        let failed = CompareEntry {
            model: "resnet18".into(),
            result: Err("no weights".into()),
        };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"model": "resnet18", "error": "no weights"})
        );
        assert_eq!(failed.error(), Some("no weights"));
        assert_eq!(failed.row(), None);
    }
}
