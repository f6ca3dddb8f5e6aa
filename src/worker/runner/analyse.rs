//! The worker's model jobs: load a model of the catalogue on a device, and run it on a photo
//! (predictions, the trained head's classes, every tap's maps and atlas).

use std::time::Instant;

use candle_core::{IndexOp, Tensor};
use image::RgbImage;

use super::{decode_photo, rgba_of, Runner};
use crate::device::{describe_device, select_device, DeviceChoice};
use crate::error::{Error, Result};
use crate::inference::{channel_maps, load_model, ranked, top_k, LoadedModel};
use crate::train::pipeline::classify_with_head;
use crate::vision::atlas::{build_atlas, channel_stats};
use crate::vision::preprocess::normalize_chw;
use crate::weights;
use crate::worker::protocol::{
    Analysis, CancelToken, HeadPredictions, LayerMaps, ModelSummary, PhotoSource,
};

impl Runner {
    /// The head in use's top classes for `image`, or why it cannot classify it.
    pub(super) fn head_predictions(
        &self,
        model: &LoadedModel,
        image: &RgbImage,
    ) -> (Option<HeadPredictions>, Option<String>) {
        let Some(active) = &self.head else {
            return (None, None);
        };
        if active.info.backbone != model.spec.name {
            let note = format!(
                "The head {} was trained on {} features: choose {} to use it.",
                active.summary.name, active.info.backbone, active.info.backbone
            );
            return (None, Some(note));
        }
        match classify_with_head(model, &active.head, &[image]) {
            Ok(probs) => {
                let row = probs.into_iter().next().unwrap_or_default();
                let top = ranked(&row, 5, |i| {
                    active.head.classes.get(i).cloned().unwrap_or_default()
                });
                let predictions = HeadPredictions {
                    head: active.summary.name.clone(),
                    top,
                };
                (Some(predictions), None)
            }
            Err(e) => (
                None,
                Some(format!("The head could not classify the photo: {e:#}")),
            ),
        }
    }

    pub(super) fn loaded(&self) -> Result<&LoadedModel> {
        self.model.as_ref().ok_or_else(|| {
            Error::Invalid("no model is loaded yet: install or choose one first".into())
        })
    }

    pub(super) fn load(&mut self, name: &str, choice: DeviceChoice) -> Result<ModelSummary> {
        let spec = weights::find_model(name)?;
        let path = spec.path_in(&self.config.weights_dir);
        if !path.is_file() {
            return Err(Error::WeightsMissing {
                model: spec.name.to_string(),
                path,
            });
        }
        let device = select_device(choice)?;
        // The old model stays loaded until the new one is: if this one fails, the window
        // carries on with the old.
        let model = load_model(name, Some(&path), &device)?;
        let summary = ModelSummary {
            name: spec.name.to_string(),
            arch: spec.arch.to_string(),
            device: describe_device(&device),
            weights: path,
            input_size: model.preprocess.size,
            last_block: model.backbone.last_block().map(|b| {
                let skip = if b.residual { " with its skip" } else { "" };
                format!(
                    "{} convolution(s) after {}{skip}",
                    b.convs.len(),
                    b.input_tap
                )
            }),
        };
        self.model = Some(model);
        Ok(summary)
    }

    /// Runs the loaded model on `photo`; `None` when cancelled.
    pub(super) fn analyse(
        &self,
        photo: &PhotoSource,
        cancel: &CancelToken,
    ) -> Result<Option<Analysis>> {
        let started = Instant::now();
        let model = self.loaded()?;
        let image = decode_photo(photo, self.config.max_pixels)?;
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let view = model.preprocess.network_view(&image);
        let size = view.width() as usize;
        let chw = normalize_chw(&view, &model.preprocess.mean, &model.preprocess.std);
        let input = Tensor::from_vec(chw, (1, 3, size, size), &model.device)?;
        let forward_started = Instant::now();
        let taps = model.backbone.forward_taps(&input)?;
        let forward_ms = forward_started.elapsed().as_secs_f64() * 1e3;
        let logits = taps
            .last()
            .map(|t| t.tensor.clone())
            .ok_or_else(|| Error::Invalid("the model reported no layers".into()))?;
        let top5 = top_k(&logits, 5)?.into_iter().next().unwrap_or_default();
        let (head, head_note) = self.head_predictions(model, &image);
        let fields = crate::model::receptive::receptive_fields(model.backbone.network(), size)
            .unwrap_or_default();
        let mut layers = Vec::with_capacity(taps.len());
        for tap in &taps {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let maps = channel_maps(&tap.tensor.i(0)?)?;
            let stats = channel_stats(&maps);
            let atlas = build_atlas(&maps, &stats);
            layers.push(LayerMaps {
                name: tap.name.clone(),
                kind: tap.kind,
                shape: tap.tensor.dims()[1..].to_vec(),
                channels: maps.channels,
                height: maps.height,
                width: maps.width,
                values: maps.values,
                stats,
                atlas,
                receptive_field: crate::model::receptive::field_of(&fields, &tap.name),
            });
        }
        Ok(Some(Analysis {
            photo_name: photo.name(),
            original_width: image.width(),
            original_height: image.height(),
            network_view: rgba_of(&view),
            top5,
            layers,
            head,
            head_note,
            forward_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        }))
    }
}
