//! The dataset examples' cache: a folder per key holding `examples.json` (the lists) and
//! `crops.png` (row `c` holds channel `c`'s crops, strongest first), both written together
//! (see [`crate::output::write_atomic_files`]); read back only when everything checks out.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ChannelExample, ChannelExamples, ExampleSettings, CROP_SIDE, MIN_CROP};
use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::model::receptive::ReceptiveField;
use crate::train::dataset::{Item, Skipped};
use crate::vision::image_io::decode_rgb;

/// Changes whenever what a cached result holds, or how it is found, changes.
const RECIPE_VERSION: u32 = 1;

/// Largest `crops.png` read back (512 channels x 32 crops of 64 x 64 pixels).
const MAX_CACHE_BYTES: u64 = 512 << 20;

/// Where dataset examples are cached: `examples` in the cache folder ([`crate::places`]).
pub fn default_examples_dir() -> PathBuf {
    crate::places::Places::current().examples_cache()
}

/// The cache folder's name for these inputs: model, weights file (path, size, time), layer,
/// settings, preprocessing and every photo (path, size, time).
pub(super) fn key(
    model: &LoadedModel,
    layer: &str,
    settings: ExampleSettings,
    items: &[Item],
) -> String {
    let (weights, len, mtime) = model.weights_identity();
    let mut hash = Sha256::new();
    hash.update(format!(
        "recipe {RECIPE_VERSION}\0model {}\0weights {}\0{len}\0{mtime}\0layer {layer}\0top {}\0\
         crop {CROP_SIDE} {MIN_CROP}\0{:?}\0",
        model.spec.name,
        weights.display(),
        settings.top,
        model.preprocess,
    ));
    for item in items {
        hash.update(format!(
            "{}\0{}\0{}\0",
            item.path.display(),
            item.size,
            item.mtime_ns
        ));
    }
    let hex: String = hash
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    // Layer names hold dots (`layer4.2`), never separators.
    format!(
        "{}-{}-{hex}",
        model.spec.name,
        layer.replace(['/', '\\'], "_")
    )
}

/// An example without its crop (which lives in the PNG).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredExample {
    photo: usize,
    value: f32,
    cell: [usize; 2],
    field: [u32; 4],
    window: [u32; 4],
}

impl From<&ChannelExample> for StoredExample {
    fn from(e: &ChannelExample) -> Self {
        Self {
            photo: e.photo,
            value: e.value,
            cell: e.cell,
            field: e.field,
            window: e.window,
        }
    }
}

impl StoredExample {
    /// The example again, with its crop cut from the sheet.
    fn with_crop(self, crop: RgbImage) -> ChannelExample {
        ChannelExample {
            photo: self.photo,
            value: self.value,
            cell: self.cell,
            field: self.field,
            window: self.window,
            crop,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: u32,
    model: String,
    layer: String,
    photos: Vec<PathBuf>,
    channels: Vec<Vec<StoredExample>>,
    field: ReceptiveField,
    view_side: u32,
    /// `(path, reason)` of each photo that could not be used.
    failed: Vec<(PathBuf, String)>,
    seconds: f64,
}

/// The crops sheet's `(width, height)` for these lists: a row per channel, as many crops
/// across as the longest list.
fn sheet_size<T>(channels: &[Vec<T>]) -> (u32, u32) {
    let top = channels.iter().map(Vec::len).max().unwrap_or(0).max(1);
    (top as u32 * CROP_SIDE, channels.len() as u32 * CROP_SIDE)
}

/// Writes `examples` into `dir` (created if needed).
pub(super) fn write(dir: &Path, examples: &ChannelExamples) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Output {
        path: dir.to_path_buf(),
        reason: format!("cannot create the examples cache: {e}"),
    })?;
    let (width, height) = sheet_size(&examples.channels);
    let mut sheet = RgbImage::new(width, height);
    for (c, list) in examples.channels.iter().enumerate() {
        for (k, e) in list.iter().enumerate() {
            image::imageops::replace(
                &mut sheet,
                &e.crop,
                (k as u32 * CROP_SIDE).into(),
                (c as u32 * CROP_SIDE).into(),
            );
        }
    }
    let stored = Stored {
        version: RECIPE_VERSION,
        model: examples.model.clone(),
        layer: examples.layer.clone(),
        photos: examples.photos.clone(),
        channels: examples
            .channels
            .iter()
            .map(|list| list.iter().map(StoredExample::from).collect())
            .collect(),
        field: examples.field,
        view_side: examples.view_side,
        failed: examples
            .failed
            .iter()
            .map(|s| (s.path.clone(), s.reason.clone()))
            .collect(),
        seconds: examples.seconds,
    };
    let (json, png) = (dir.join("examples.json"), dir.join("crops.png"));
    crate::output::write_atomic_files(&[&json, &png], &[], |i, temp| {
        let mut out = BufWriter::new(File::create(temp)?);
        if i == 0 {
            serde_json::to_writer(&mut out, &stored).map_err(|e| Error::Invalid(e.to_string()))?;
        } else {
            sheet
                .write_to(&mut out, image::ImageFormat::Png)
                .map_err(|e| Error::Invalid(e.to_string()))?;
        }
        out.flush()?;
        Ok(())
    })
}

/// The examples cached in `dir` for exactly `items`, if they are there and check out.
pub(super) fn read(dir: &Path, items: &[Item]) -> Option<ChannelExamples> {
    let json = dir.join("examples.json");
    if !json.is_file() {
        return None;
    }
    match try_read(dir, items) {
        Ok(found) => Some(found),
        Err(reason) => {
            tracing::warn!(dir = %dir.display(), "cached dataset examples unusable ({reason}): finding them again");
            None
        }
    }
}

fn try_read(dir: &Path, items: &[Item]) -> std::result::Result<ChannelExamples, String> {
    let file = File::open(dir.join("examples.json")).map_err(|e| e.to_string())?;
    let stored: Stored =
        serde_json::from_reader(BufReader::new(file)).map_err(|e| e.to_string())?;
    if stored.version != RECIPE_VERSION {
        return Err(format!(
            "recipe {} (this is {RECIPE_VERSION})",
            stored.version
        ));
    }
    if stored.photos.len() != items.len()
        || stored.photos.iter().zip(items).any(|(p, i)| *p != i.path)
    {
        return Err("made for other photos".into());
    }
    let bytes = crate::input::read_regular(&dir.join("crops.png"), MAX_CACHE_BYTES)?;
    let (width, height) = sheet_size(&stored.channels);
    // Never more pixels than the lists call for: the file is not trusted.
    let sheet = decode_rgb(&bytes, u64::from(width) * u64::from(height))?;
    if (sheet.width(), sheet.height()) != (width, height) {
        return Err(format!(
            "crops of {}x{} pixels do not fit the lists",
            sheet.width(),
            sheet.height()
        ));
    }
    let side = stored.view_side;
    let inside = |b: &[u32; 4]| b[0] < b[2] && b[1] < b[3] && b[2] <= side && b[3] <= side;
    let mut channels = Vec::with_capacity(stored.channels.len());
    for (c, list) in stored.channels.into_iter().enumerate() {
        let mut out = Vec::with_capacity(list.len());
        for (k, e) in list.into_iter().enumerate() {
            if e.photo >= stored.photos.len() || !inside(&e.field) || !inside(&e.window) {
                return Err(format!(
                    "channel {c}'s example {k} points outside its photos"
                ));
            }
            let crop = image::imageops::crop_imm(
                &sheet,
                k as u32 * CROP_SIDE,
                c as u32 * CROP_SIDE,
                CROP_SIDE,
                CROP_SIDE,
            )
            .to_image();
            out.push(e.with_crop(crop));
        }
        channels.push(out);
    }
    Ok(ChannelExamples {
        model: stored.model,
        layer: stored.layer,
        photos: stored.photos,
        channels,
        field: stored.field,
        view_side: side,
        failed: stored
            .failed
            .into_iter()
            .map(|(path, reason)| Skipped { path, reason })
            .collect(),
        from_cache: true,
        seconds: stored.seconds,
    })
}
