//! Dataset examples per channel, OpenAI Microscope's other half: for a layer, the photos of a
//! folder that excite each channel most, each cropped around the channel's strongest cell
//! (the cell's receptive field, see [`crate::model::receptive`]).
//!
//! One pass over the folder in batches: each photo's activation `[C, H, W]` at the layer gives,
//! per channel, its maximum and where it is; a channel keeps its `top` best photos, and a
//! photo's crop is cut from its network view (what the model saw, `S x S`) the moment it
//! enters a channel's list, so no photo is decoded twice and memory holds `C x top` crops.
//! A receptive field smaller than [`MIN_CROP`] pixels is shown with some context around it
//! (the field's box is kept, to be drawn inside the crop); one clipped by the image's edge is
//! shifted inside it.
//!
//! The result is cached per model, weights file, layer, settings and folder contents (every
//! photo's path, size and time): a folder `examples.json` (the lists) + `crops.png` (a row of
//! crops per channel) under the cache root, written once the whole pass is done; any change
//! in the folder recomputes it, a damaged cache is computed again, never trusted.

mod cache;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use image::RgbImage;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::model::receptive::{receptive_fields, ReceptiveField};
use crate::model::TapKind;
use crate::train::dataset::{Item, Skipped};
use crate::vision::preprocess::normalize_chw;

pub use cache::default_examples_dir;

/// Side of each crop in pixels.
pub const CROP_SIDE: u32 = 64;

/// Smallest crop window in network-view pixels: a 3-pixel field is shown with context.
pub const MIN_CROP: usize = 32;

/// How examples are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExampleSettings {
    /// Photos kept per channel (1 to [`MAX_TOP`]).
    pub top: usize,
    /// Photos per forward pass.
    pub batch_size: usize,
}

/// Most photos kept per channel.
pub const MAX_TOP: usize = 32;

impl Default for ExampleSettings {
    fn default() -> Self {
        Self {
            top: 8,
            batch_size: 16,
        }
    }
}

/// One photo that excites a channel: where, how much, and its crop.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelExample {
    /// Index into [`ChannelExamples::photos`].
    pub photo: usize,
    /// The channel's largest activation on the photo.
    pub value: f32,
    /// The cell `[y, x]` of that activation in the layer's `H x W` map.
    pub cell: [usize; 2],
    /// The cell's receptive field in network-view pixels, `[x0, y0, x1, y1]` (half-open,
    /// clipped to the view).
    pub field: [u32; 4],
    /// The window cut out of the view, `[x0, y0, x1, y1]` (holds `field`).
    pub window: [u32; 4],
    /// The window resized to [`CROP_SIDE`] square.
    pub crop: RgbImage,
}

impl ChannelExample {
    /// `field` in the crop's pixels `[x0, y0, x1, y1]`, for drawing its box.
    pub fn field_in_crop(&self) -> [f32; 4] {
        let [wx0, wy0, wx1, _] = self.window;
        let scale = CROP_SIDE as f32 / (wx1 - wx0).max(1) as f32;
        let [fx0, fy0, fx1, fy1] = self.field;
        [
            (fx0 - wx0) as f32 * scale,
            (fy0 - wy0) as f32 * scale,
            (fx1 - wx0) as f32 * scale,
            (fy1 - wy0) as f32 * scale,
        ]
    }
}

impl ChannelExample {
    /// The crop with its receptive field boxed in `colour` where the field is smaller than
    /// the crop (a 1-pixel outline).
    pub fn boxed(&self, colour: [u8; 3]) -> RgbImage {
        let mut out = self.crop.clone();
        let [x0, y0, x1, y1] = self.field_in_crop().map(|v| v.round().max(0.0) as u32);
        let last = CROP_SIDE - 1;
        let (x1, y1) = (
            x1.saturating_sub(1).min(last),
            y1.saturating_sub(1).min(last),
        );
        if x0 == 0 && y0 == 0 && x1 == last && y1 == last {
            return out;
        }
        let pixel = image::Rgb(colour);
        for x in x0..=x1 {
            out.put_pixel(x, y0.min(last), pixel);
            out.put_pixel(x, y1, pixel);
        }
        for y in y0..=y1 {
            out.put_pixel(x0.min(last), y, pixel);
            out.put_pixel(x1, y, pixel);
        }
        out
    }
}

/// A layer's dataset examples (plain data: it crosses the worker channel as itself).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelExamples {
    pub model: String,
    pub layer: String,
    /// The folder's photos the lists point into.
    pub photos: Vec<PathBuf>,
    /// Per channel, its best photos, strongest first (fewer than `top` with a small folder).
    pub channels: Vec<Vec<ChannelExample>>,
    /// The layer's receptive field for the model's input.
    pub field: ReceptiveField,
    /// Side of the network view (the model's input).
    pub view_side: u32,
    /// Photos that could not be used, with the reason.
    pub failed: Vec<Skipped>,
    /// Read back from the cache (else computed now, in `seconds`).
    pub from_cache: bool,
    pub seconds: f64,
}

/// Where a search stands: photos looked at out of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExamplesProgress {
    pub done: usize,
    pub total: usize,
}

/// Finds each channel's best photos of `items` at `layer` (a convolutional tap), reading and
/// filling the cache under `cache_root` (`None`: none). `cancelled` is asked between batches,
/// `progress` hears after each; `None` when cancelled (nothing is cached then).
pub fn find_examples(
    model: &LoadedModel,
    layer: &str,
    items: &[Item],
    settings: ExampleSettings,
    cache_root: Option<&Path>,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(ExamplesProgress),
) -> Result<Option<ChannelExamples>> {
    if !(1..=MAX_TOP).contains(&settings.top) {
        return Err(Error::Invalid(format!(
            "{} examples per channel is out of range (1 to {MAX_TOP})",
            settings.top
        )));
    }
    if items.is_empty() {
        return Err(Error::Invalid("no photos to find examples in".into()));
    }
    let started = Instant::now();
    let side = model.preprocess.size as usize;
    let field = spatial_field(model, layer, side)?;
    let key = cache::key(model, layer, settings, items);
    if let Some(found) = cache_root.and_then(|root| cache::read(&root.join(&key), items)) {
        progress(ExamplesProgress {
            done: items.len(),
            total: items.len(),
        });
        return Ok(Some(found));
    }
    let mut channels: Vec<Vec<ChannelExample>> = Vec::new();
    let mut failed = Vec::new();
    let total = items.len();
    progress(ExamplesProgress { done: 0, total });
    for (b, batch) in items.chunks(settings.batch_size.max(1)).enumerate() {
        if cancelled() {
            return Ok(None);
        }
        let first = b * settings.batch_size.max(1);
        let views = crate::train::features::network_views(model, batch);
        let mut ok = Vec::new();
        for (i, view) in views.into_iter().enumerate() {
            match view {
                Ok(view) => ok.push((first + i, view)),
                Err(e) => failed.push(Skipped {
                    path: batch[i].path.clone(),
                    reason: match e {
                        Error::Image { reason, .. } => reason,
                        other => other.to_string(),
                    },
                }),
            }
        }
        if !ok.is_empty() {
            let maxima = channel_maxima(model, layer, &ok)?;
            if channels.is_empty() {
                channels = vec![Vec::new(); maxima.first().map_or(0, Vec::len)];
            }
            channels.par_iter_mut().enumerate().for_each(|(c, best)| {
                for ((photo, view), row) in ok.iter().zip(&maxima) {
                    if let Some(&(value, cell)) = row.get(c) {
                        offer(best, settings.top, *photo, value, cell, || {
                            cut(view, &field, cell)
                        });
                    }
                }
            });
        }
        progress(ExamplesProgress {
            done: (first + batch.len()).min(total),
            total,
        });
    }
    if channels.is_empty() {
        return Err(Error::Invalid(format!(
            "none of the {total} photos could be read (the first: {})",
            failed.first().map_or(String::new(), |s| format!(
                "{}: {}",
                s.path.display(),
                s.reason
            ))
        )));
    }
    let examples = ChannelExamples {
        model: model.spec.name.to_string(),
        layer: layer.to_string(),
        photos: items.iter().map(|i| i.path.clone()).collect(),
        channels,
        field,
        view_side: side as u32,
        failed,
        from_cache: false,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(root) = cache_root {
        if let Err(e) = cache::write(&root.join(&key), &examples) {
            tracing::warn!("dataset examples not cached: {e}");
        }
    }
    Ok(Some(examples))
}

/// `layer`'s receptive field for a `side` input; refused for vectors (fc layers, logits),
/// which have no position to crop around.
fn spatial_field(model: &LoadedModel, layer: &str, side: usize) -> Result<ReceptiveField> {
    let network = model.backbone.network();
    let fields = receptive_fields(network, side).ok_or_else(|| {
        Error::Invalid(format!(
            "{side}x{side} is too small an input for {}",
            model.spec.name
        ))
    })?;
    let Some((_, field)) = fields.iter().find(|(name, _)| name == layer) else {
        return Err(Error::UnknownLayer {
            name: layer.to_string(),
            model: model.spec.name.to_string(),
            known: fields
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let spatial = network
        .tap_index(layer)
        .and_then(|i| network.steps()[i].tap.as_ref())
        .is_some_and(|t| !matches!(t.kind, TapKind::Fc | TapKind::Logits));
    if !spatial {
        return Err(Error::Invalid(format!(
            "{layer} is a vector of units, not a map: dataset examples need a convolutional \
             layer"
        )));
    }
    Ok(*field)
}

/// A channel's largest activation on a photo and its cell `[y, x]`.
type Maximum = (f32, [usize; 2]);

/// Per photo of `views`, per channel: its largest activation at `layer` and the cell `[y, x]`
/// where it is (NaN cells never win).
fn channel_maxima(
    model: &LoadedModel,
    layer: &str,
    views: &[(usize, RgbImage)],
) -> Result<Vec<Vec<Maximum>>> {
    let p = &model.preprocess;
    let side = p.size as usize;
    let mut data = Vec::with_capacity(views.len() * 3 * side * side);
    for (_, view) in views {
        data.extend(normalize_chw(view, &p.mean, &p.std));
    }
    let x = Tensor::from_vec(data, (views.len(), 3, side, side), &model.device)?;
    let y = model.backbone.forward_until(&x, Some(layer))?;
    let (b, c, h, w) = y.dims4()?;
    let values = y
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let plane = h * w;
    Ok((0..b)
        .map(|i| {
            (0..c)
                .map(|ch| {
                    let start = (i * c + ch) * plane;
                    let map = &values[start..start + plane];
                    // The first of equal maxima (ReLU6 saturates at 6), NaN never.
                    let (mut at, mut value) = (0, f32::NEG_INFINITY);
                    for (i, &v) in map.iter().enumerate() {
                        if v > value {
                            (at, value) = (i, v);
                        }
                    }
                    (value, [at / w, at % w])
                })
                .collect()
        })
        .collect())
}

/// Puts photo `photo` into `best` (strongest first, at most `top`) if it beats the last;
/// `crop` is only made when it does.
fn offer(
    best: &mut Vec<ChannelExample>,
    top: usize,
    photo: usize,
    value: f32,
    cell: [usize; 2],
    crop: impl FnOnce() -> ([u32; 4], [u32; 4], RgbImage),
) {
    if value == f32::NEG_INFINITY || (best.len() == top && best[top - 1].value >= value) {
        return;
    }
    let at = best.partition_point(|e| e.value >= value);
    let (field, window, crop) = crop();
    best.insert(
        at,
        ChannelExample {
            photo,
            value,
            cell,
            field,
            window,
            crop,
        },
    );
    best.truncate(top);
}

/// Cell `[y, x]`'s receptive field in `view` (`[x0, y0, x1, y1]`), the square window shown
/// around it, and that window resized to [`CROP_SIDE`].
fn cut(
    view: &RgbImage,
    field: &ReceptiveField,
    [y, x]: [usize; 2],
) -> ([u32; 4], [u32; 4], RgbImage) {
    let side = view.width().min(view.height()) as usize;
    let (y0, y1) = field.span(y, side);
    let (x0, x1) = field.span(x, side);
    let want = (y1 - y0).max(x1 - x0).max(MIN_CROP).min(side);
    // Centred on the field, shifted inside the view where it would leave it.
    let place = |lo: usize, hi: usize| {
        let centre = (lo + hi) / 2;
        centre.saturating_sub(want / 2).min(side - want)
    };
    let (wx, wy) = (place(x0, x1), place(y0, y1));
    let window =
        image::imageops::crop_imm(view, wx as u32, wy as u32, want as u32, want as u32).to_image();
    let crop = image::imageops::resize(
        &window,
        CROP_SIDE,
        CROP_SIDE,
        image::imageops::FilterType::Triangle,
    );
    let b = |v: usize| v as u32;
    (
        [b(x0), b(y0), b(x1), b(y1)],
        [b(wx), b(wy), b(wx + want), b(wy + want)],
        crop,
    )
}
