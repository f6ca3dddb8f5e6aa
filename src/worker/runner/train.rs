//! The worker's training jobs: train a head on a folder (and use it), compare backbones,
//! load a saved head; and how their results are told to the window.

use image::RgbImage;

use super::{rgba_of, ActiveHead, Runner};
use crate::error::{Error, Result};
use crate::progress::Throttle;
use crate::train::compare::{compare_backbones, compare_observer, CompareEntry, CompareEvent};
use crate::train::dataset::Dataset;
use crate::train::head::{Head, HeadInfo};
use crate::train::observe::{observer, TrainEvent};
use crate::train::pipeline::{train_on_folder, TrainConfig};
use crate::train::review::top_losses;
use crate::vision::image_io::load_rgb;
use crate::weights;
use crate::worker::protocol::{
    CancelToken, CompareFailure, CompareRequest, ComparisonRow, DatasetSummary, Event, HeadSummary,
    JobId, MapPoint, RgbaImage, Thumbnail, TrainReport, TrainRequest, THUMBNAIL_SIDE,
};

/// Top losses sent back with thumbnails (others come on request).
const MAX_GALLERY: usize = 60;

impl Runner {
    /// The training set-up `request` asks for, with the worker's feature cache.
    pub(super) fn train_config(&self, request: &TrainRequest) -> TrainConfig {
        request.config(self.config.feature_cache.clone())
    }

    /// Trains the request's head with each of its models on the loaded model's device (the
    /// CPU before any is loaded); `None` when cancelled.
    pub(super) fn compare(
        &self,
        job: JobId,
        request: &CompareRequest,
        cancel: &CancelToken,
    ) -> Result<Option<Vec<ComparisonRow>>> {
        let specs = request
            .models
            .iter()
            .map(|name| weights::find_model(name))
            .collect::<Result<Vec<_>>>()?;
        let mut config = self.train_config(&request.train);
        config.fine_tune = None;
        let epochs = config.head.epochs.max(1);
        let device = self
            .model
            .as_ref()
            .map_or(candle_core::Device::Cpu, |m| m.device.clone());
        let mut current = (String::new(), 0, 0);
        let mut throttle = Throttle::window();
        let progress = |current: &(String, usize, usize), stage: String, fraction: f32| {
            self.send(Event::CompareProgress {
                job,
                model: current.0.clone(),
                index: current.1,
                total: current.2,
                stage,
                fraction,
            })
        };
        let on_event = |event: CompareEvent| match event {
            CompareEvent::Started {
                model,
                index,
                total,
            } => {
                current = (model.to_string(), index, total);
                progress(&current, "loading weights".into(), 0.0);
            }
            CompareEvent::Train(TrainEvent::Features(p)) => {
                if throttle.ready(p.done == p.total) {
                    let stage = format!("features {}/{} ({} cached)", p.done, p.total, p.cached);
                    progress(&current, stage, 0.8 * p.done as f32 / p.total.max(1) as f32);
                }
            }
            CompareEvent::Train(TrainEvent::Epoch(m)) => {
                let stage = format!("epoch {}/{epochs}", m.epoch);
                progress(&current, stage, 0.8 + 0.2 * m.epoch as f32 / epochs as f32);
            }
            CompareEvent::Train(_) => {}
            CompareEvent::Finished(entry) => self.send(Event::CompareRow {
                job,
                row: comparison_row(entry),
            }),
        };
        let entries = match compare_backbones(
            &specs,
            &request.train.dir,
            &self.config.weights_dir,
            &config,
            &device,
            &mut compare_observer(on_event, || cancel.is_cancelled()),
        ) {
            Ok(entries) => entries,
            Err(Error::Cancelled) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(entries.iter().map(comparison_row).collect()))
    }

    /// Trains a head on a folder with the loaded model, saves it and makes it the head in
    /// use. `None` when cancelled.
    pub(super) fn train(
        &mut self,
        job: JobId,
        request: &TrainRequest,
        cancel: &CancelToken,
    ) -> Result<Option<(TrainReport, HeadSummary)>> {
        let model = self.loaded()?;
        let config = TrainConfig {
            tsne_input: true,
            ..self.train_config(request)
        };
        let mut throttle = Throttle::window();
        let on_event = |event: TrainEvent| match event {
            TrainEvent::Scanned(dataset) => self.send(Event::TrainScanned {
                job,
                summary: summarise(dataset),
            }),
            TrainEvent::Features(p) => {
                if throttle.ready(p.done == p.total) {
                    self.send(Event::TrainFeatures {
                        job,
                        done: p.done,
                        total: p.total,
                        cached: p.cached,
                        images_per_s: p.images_per_s,
                        eta_s: p.eta_s,
                    });
                }
            }
            TrainEvent::Step { step, loss } => self.send(Event::TrainStep { job, step, loss }),
            TrainEvent::Epoch(m) => self.send(Event::TrainEpoch {
                job,
                row: m.clone(),
            }),
        };
        let mut watch = observer(on_event, || cancel.is_cancelled());
        let outcome = match train_on_folder(model, &request.dir, &config, &mut watch) {
            Ok(outcome) => outcome,
            Err(Error::Cancelled) => return Ok(None),
            Err(e) => return Err(e),
        };
        if cancel.is_cancelled() {
            return Ok(None);
        }
        outcome
            .head
            .save(&request.output, model.spec.name, &model.preprocess)?;
        // Saved: from here on the run finishes (a late cancel only skips the thumbnails).
        let thumbnails = top_losses(&outcome.predictions, MAX_GALLERY)
            .into_iter()
            .take_while(|_| !cancel.is_cancelled())
            .map(|i| self.thumbnail(&outcome.predictions[i].path))
            .collect();
        let head = &outcome.head;
        let report = TrainReport {
            classes: head.classes.clone(),
            confusion: outcome.confusion.clone(),
            val_accuracy: outcome.val_accuracy,
            best_epoch: head.metrics.get(head.best_epoch).map_or(0, |m| m.epoch),
            epochs: head.metrics.clone(),
            predictions: outcome.predictions.clone(),
            thumbnails,
            map: map_points(&outcome),
            train_count: outcome.split.train.len(),
            val_count: outcome.split.val.len(),
            unreadable: outcome
                .failed
                .iter()
                .map(|f| (f.path.clone(), f.reason.clone()))
                .collect(),
            features_computed: outcome.features_computed,
            features_from_cache: outcome.features_from_cache,
            images_per_s: outcome.images_per_s,
            saved_to: request.output.clone(),
        };
        let info = head.info(model.spec.name, &model.preprocess);
        let summary = head_summary(&request.output, &info);
        self.map_input = Some(std::sync::Arc::new(outcome.map_input));
        self.head = Some(ActiveHead {
            head: outcome.head,
            info,
            summary: summary.clone(),
        });
        Ok(Some((report, summary)))
    }

    /// Loads a saved head and makes it the head in use (the one before stays if it fails).
    pub(super) fn load_head(&mut self, path: &std::path::Path) -> Result<HeadSummary> {
        let (head, info) = Head::load(path)?;
        let summary = head_summary(path, &info);
        self.head = Some(ActiveHead {
            head,
            info,
            summary: summary.clone(),
        });
        Ok(summary)
    }
}

/// A comparison entry as the window shows it: its row, or why it failed.
fn comparison_row(entry: &CompareEntry) -> ComparisonRow {
    entry.result.clone().map_err(|error| CompareFailure {
        model: entry.model.clone(),
        arch: weights::find_model(&entry.model).ok().map(|m| m.arch),
        error,
    })
}

impl Runner {
    /// Thumbnails of `paths`, one event each, in order (see [`Self::thumbnail`]). `None` when
    /// cancelled.
    pub(super) fn thumbnails(
        &self,
        job: JobId,
        paths: &[std::path::PathBuf],
        cancel: &CancelToken,
    ) -> Option<()> {
        for path in paths {
            if cancel.is_cancelled() {
                return None;
            }
            self.send(Event::Thumbnail {
                job,
                thumbnail: self.thumbnail(path),
            });
        }
        Some(())
    }

    /// `path`'s thumbnail; grey when it no longer decodes (it did when features were made), so
    /// that the gallery does not wait for it.
    fn thumbnail(&self, path: &std::path::Path) -> Thumbnail {
        let image = load_rgb(path, self.config.max_pixels)
            .map(|img| rgba_of(&thumbnail_of(&img, THUMBNAIL_SIDE)))
            .unwrap_or_else(|e| {
                tracing::debug!(path = %path.display(), "no thumbnail: {e:#}");
                RgbaImage {
                    width: 1,
                    height: 1,
                    rgba: vec![128, 128, 128, 255],
                }
            });
        Thumbnail {
            path: path.to_path_buf(),
            image,
        }
    }
}

/// The outcome's dataset map, each validation photo with the head's class.
fn map_points(outcome: &crate::train::pipeline::TrainOutcome) -> Vec<MapPoint> {
    let predicted: std::collections::HashMap<usize, usize> = outcome
        .split
        .val
        .iter()
        .zip(&outcome.predictions)
        .map(|(&i, p)| (i, p.predicted))
        .collect();
    outcome
        .map
        .iter()
        .filter_map(|&(i, xy)| {
            let item = outcome.dataset.items.get(i)?;
            Some(MapPoint {
                path: item.path.clone(),
                truth: item.class,
                xy,
                predicted: predicted.get(&i).copied(),
            })
        })
        .collect()
}

/// `image` shrunk to fit a `side` square, keeping its proportions.
fn thumbnail_of(image: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let scale = f64::from(side) / f64::from(w.max(h).max(1));
    let size = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(1, side);
    image::imageops::thumbnail(image, size(w), size(h))
}

/// A scanned folder as the window shows it.
pub(super) fn summarise(dataset: &Dataset) -> DatasetSummary {
    DatasetSummary {
        root: dataset.root.clone(),
        layout: dataset.layout,
        classes: dataset.classes.clone(),
        counts: dataset.class_counts(),
        skipped: dataset
            .skipped
            .iter()
            .map(|s| (s.path.clone(), s.reason.clone()))
            .collect(),
    }
}

/// A head as the window shows it.
fn head_summary(path: &std::path::Path, info: &HeadInfo) -> HeadSummary {
    HeadSummary {
        path: path.to_path_buf(),
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "head".into()),
        backbone: info.backbone.clone(),
        classes: info.classes.clone(),
        kind: info.kind,
        fine_tuned: info.block.is_some(),
        val_accuracy: info.metrics.get(info.best_epoch).map(|m| m.val_acc),
    }
}
