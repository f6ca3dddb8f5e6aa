//! What the CLI and the window ask of a model: load it by name, classify photos, list its
//! layers with their shapes, and pull one layer's channels out for display.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use image::RgbImage;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::labels::imagenet_label;
use crate::model::{Backbone, TapKind};
use crate::vision::grid::ChannelMaps;
use crate::vision::preprocess::Preprocess;
use crate::weights::{self, loading, ModelSpec};

/// A backbone ready to run, with what it needs to be fed.
pub struct LoadedModel {
    pub spec: &'static ModelSpec,
    pub backbone: Box<dyn Backbone>,
    pub preprocess: Preprocess,
    pub device: Device,
    /// The weights file it came from.
    pub weights_path: PathBuf,
}

/// Loads model `name` from `weights` (a file) or from the weights folder.
pub fn load_model(name: &str, weights: Option<&Path>, device: &Device) -> Result<LoadedModel> {
    let spec = weights::find_model(name)?;
    let path = match weights {
        Some(p) => p.to_path_buf(),
        None => {
            let path = spec.path_in(&weights::weights_dir());
            if !path.is_file() {
                return Err(Error::WeightsMissing {
                    model: spec.name.to_string(),
                    path,
                });
            }
            path
        }
    };
    let backbone = loading::load_backbone(spec.arch, &path, device)?;
    tracing::info!(model = spec.name, path = %path.display(), "loaded weights");
    Ok(LoadedModel {
        spec,
        backbone,
        preprocess: spec.preprocess,
        device: device.clone(),
        weights_path: path,
    })
}

/// One class of a prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    pub index: usize,
    pub label: String,
    pub prob: f32,
}

/// Class probabilities of every row of `logits` `[B, classes]`, the `top` best first.
pub fn top_k(logits: &Tensor, top: usize) -> Result<Vec<Vec<ClassScore>>> {
    let probs = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)?;
    let rows: Vec<Vec<f32>> = probs.to_device(&Device::Cpu)?.to_vec2()?;
    Ok(rows
        .iter()
        .map(|row| ranked(row, top, imagenet_label))
        .collect())
}

/// The `top` most probable classes of one row of probabilities, best first, named by `label`.
pub fn ranked(row: &[f32], top: usize, label: impl Fn(usize) -> String) -> Vec<ClassScore> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    order
        .into_iter()
        .take(top)
        .map(|index| ClassScore {
            index,
            label: label(index),
            prob: row[index],
        })
        .collect()
}

impl LoadedModel {
    /// The weights file as caches key on it: its canonical path, size and modification time
    /// (nanoseconds since the Unix epoch; 0 where unknown).
    pub fn weights_identity(&self) -> (PathBuf, u64, u128) {
        let path =
            std::fs::canonicalize(&self.weights_path).unwrap_or_else(|_| self.weights_path.clone());
        let (len, mtime) = std::fs::metadata(&path).map_or((0, 0), |m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            (m.len(), mtime)
        });
        (path, len, mtime)
    }

    /// The input tensor `[B, 3, S, S]` for `images`.
    pub fn input(&self, images: &[&RgbImage]) -> Result<Tensor> {
        self.preprocess.batch(images, &self.device)
    }

    /// The `top` most likely ImageNet classes of each image (one batched forward pass).
    pub fn predict(&self, images: &[&RgbImage], top: usize) -> Result<Vec<Vec<ClassScore>>> {
        let logits = self.backbone.forward(&self.input(images)?)?;
        top_k(&logits, top)
    }

    /// One layer's activations for `image` as plain data.
    pub fn layer_maps(&self, image: &RgbImage, layer: &str) -> Result<ChannelMaps> {
        let taps = self.backbone.forward_taps(&self.input(&[image])?)?;
        let Some(tap) = taps.iter().find(|t| t.name == layer) else {
            return Err(Error::UnknownLayer {
                name: layer.to_string(),
                model: self.spec.name.to_string(),
                known: taps
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        channel_maps(&tap.tensor.i(0)?)
    }
}

/// `[C, H, W]` or `[F]` (one image's activation) as plain data.
pub fn channel_maps(t: &Tensor) -> Result<ChannelMaps> {
    let t = t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let (channels, height, width) = match t.dims() {
        [c, h, w] => (*c, *h, *w),
        [f] => (*f, 1, 1),
        other => {
            return Err(Error::Invalid(format!(
                "cannot show a tensor of shape {other:?}"
            )))
        }
    };
    Ok(ChannelMaps {
        values: t.flatten_all()?.to_vec1()?,
        channels,
        height,
        width,
    })
}

/// A tap as the `layers` command lists it.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    pub name: String,
    pub kind: TapKind,
    /// Shape for one `size x size` image, batch dimension included.
    pub shape: Vec<usize>,
    /// Side in input pixels of what one cell sees (see [`crate::model::receptive`]; for fc
    /// layers and logits, what the last map's cells together see).
    pub receptive_field: usize,
    /// Input pixels between neighbouring cells.
    pub stride: usize,
}

/// Every tap of `backbone` with its shape and receptive field for one `size x size` image.
pub fn layer_infos(
    backbone: &dyn Backbone,
    size: usize,
    device: &Device,
) -> Result<Vec<LayerInfo>> {
    let x = Tensor::zeros((1, 3, size, size), DType::F32, device)?;
    let fields =
        crate::model::receptive::receptive_fields(backbone.network(), size).unwrap_or_default();
    Ok(backbone
        .forward_taps(&x)?
        .into_iter()
        .map(|t| {
            let field = crate::model::receptive::field_of(&fields, &t.name);
            LayerInfo {
                receptive_field: field.map_or(0, |f| f.size),
                stride: field.map_or(0, |f| f.stride),
                name: t.name,
                kind: t.kind,
                shape: t.tensor.dims().to_vec(),
            }
        })
        .collect())
}

/// What to build when a model's weights are absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandIn {
    /// Random weights of the right shapes (timings do not depend on the values).
    Random,
    /// All-zero weights (shapes only; instant).
    Zeros,
}

/// `spec`'s backbone from `weights` or the weights folder when present, else a stand-in with
/// the same shapes. The flag says whether the real weights were loaded.
pub fn backbone_or_stand_in(
    spec: &ModelSpec,
    weights: Option<&Path>,
    device: &Device,
    stand_in: StandIn,
) -> Result<(Box<dyn Backbone>, bool)> {
    let path = weights.map_or_else(|| spec.path_in(&weights::weights_dir()), Path::to_path_buf);
    // A file given on purpose is loaded (and a folder or device refused by the loader, which
    // says which); only absent default weights get a stand-in.
    if path.is_file() || weights.is_some() {
        return Ok((loading::load_backbone(spec.arch, &path, device)?, true));
    }
    let backbone = match stand_in {
        StandIn::Random => loading::random_backbone(spec.arch, device, 0)?,
        StandIn::Zeros => loading::zero_backbone(spec.arch, device)?,
    };
    Ok((backbone, false))
}
