//! A layer gallery, your own OpenAI Microscope (<https://microscope.openai.com>): one small
//! dream per channel of a layer, dreamed several channels at a time with
//! [`dream_each`] (no diversity term: each member has its own target), and cached on disk so
//! a gallery is dreamed once per model, weights file, layer and settings.
//!
//! The cache is a folder per key under the cache root, one PNG per channel
//! (`channel-0007.png`), each written atomically as soon as its batch is done: an interrupted
//! run keeps every finished batch and a rerun dreams only what is missing. A cached PNG that
//! does not decode or has the wrong size is dreamed again, never trusted; a batch that was
//! cancelled part-way is not written at all.
//!
//! Channels are dreamed in fixed chunks (`0..batch`, `batch..2*batch`, ...) so a channel is
//! always member `channel % batch` of its batch: its starting noise and its transforms are the
//! same whether it is dreamed in a full run or again after a damaged file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use sha2::{Digest, Sha256};

use super::dream::{dream_each, DreamSettings, DreamTarget, MAX_BATCH};
use crate::error::{Error, Result};
use crate::inference::{layer_infos, LoadedModel};
use crate::output::save_png;

/// Changes whenever the recipe behind a gallery's images changes, so older caches are not
/// shown as if they were made by this one.
pub const RECIPE_VERSION: u32 = 2;

/// How a gallery's dreams are made.
#[derive(Debug, Clone, PartialEq)]
pub struct GallerySettings {
    /// Side of each dream in pixels, 32 to 512.
    pub size: u32,
    /// Gradient steps per dream.
    pub steps: usize,
    /// Channels dreamed together in one batch, 1 to [`MAX_BATCH`] (part of the cache key: a
    /// channel's place in its batch decides its starting noise).
    pub batch: usize,
    pub seed: u64,
    /// Only the first this many channels (a quick look); `None`: all of them.
    pub limit: Option<usize>,
}

impl Default for GallerySettings {
    fn default() -> Self {
        Self {
            size: 96,
            steps: 96,
            batch: 8,
            seed: 0,
            limit: None,
        }
    }
}

/// Where a gallery job stands, after each step and each finished batch.
#[derive(Debug)]
pub struct GalleryProgress<'a> {
    /// Channels ready (cached or dreamed) out of `total`.
    pub done: usize,
    pub total: usize,
    /// The running batch's step out of `steps` (0 between batches).
    pub step: usize,
    pub steps: usize,
    /// Channels that became ready since the last report, with their images.
    pub new_tiles: &'a [(usize, RgbImage)],
}

impl GalleryProgress<'_> {
    /// The share of the work done, 0 to 1 (steps of the running batch included).
    pub fn fraction(&self, batch: usize) -> f32 {
        if self.total == 0 {
            return 1.0;
        }
        let running = if self.steps == 0 {
            0.0
        } else {
            batch.min(self.total - self.done) as f32 * self.step as f32 / self.steps as f32
        };
        ((self.done as f32 + running) / self.total as f32).min(1.0)
    }
}

/// A finished gallery.
#[derive(Debug, Clone)]
pub struct Gallery {
    /// One image per channel (`size x size`), channel order.
    pub images: Vec<RgbImage>,
    /// The layer's number of channels (more than `images` when limited).
    pub layer_channels: usize,
    /// Channels read from the cache, and dreamed now.
    pub cached: usize,
    pub computed: usize,
    /// The cache folder used, if any.
    pub cache_dir: Option<PathBuf>,
    pub seconds: f64,
}

/// Where galleries are cached: `gallery` in the cache folder ([`crate::places`]).
pub fn default_gallery_dir() -> PathBuf {
    crate::places::Places::current().gallery_cache()
}

/// The number of channels of `layer` (a `[1, C, H, W]` tap), from one forward pass on a
/// small blank input.
pub fn layer_channels(model: &LoadedModel, layer: &str) -> Result<usize> {
    let infos = layer_infos(model.backbone.as_ref(), 64, &model.device)?;
    let Some(info) = infos.iter().find(|i| i.name == layer) else {
        return Err(Error::UnknownLayer {
            name: layer.to_string(),
            model: model.spec.name.to_string(),
            known: infos
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    match info.shape.as_slice() {
        [_, c, _, _] => Ok(*c),
        other => Err(Error::Invalid(format!(
            "{layer} has no feature maps (shape {other:?}): a gallery needs a convolutional layer"
        ))),
    }
}

/// The cache folder's name for this model, weights file, layer and settings:
/// `MODEL-LAYER-<24 hex digits>`. The weights file counts by canonical path, size and
/// modification time, so replacing it (a fine-tuned copy) starts a new gallery; `limit` is
/// not part of it (a quick look fills the same cache a full run reads).
pub fn cache_key(model: &LoadedModel, layer: &str, settings: &GallerySettings) -> String {
    let (path, len, mtime) = model.weights_identity();
    let text = format!(
        "recipe {RECIPE_VERSION}\0model {}\0weights {}\0{len}\0{mtime}\0layer {layer}\0size {}\0\
         steps {}\0seed {}\0batch {}",
        model.spec.name,
        path.display(),
        settings.size,
        settings.steps,
        settings.seed,
        settings.batch
    );
    let hash: String = Sha256::digest(text.as_bytes())[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}-{}-{hash}", safe(model.spec.name), safe(layer))
}

/// The cached PNG of `channel` in `dir`.
pub fn tile_path(dir: &Path, channel: usize) -> PathBuf {
    dir.join(format!("channel-{channel:04}.png"))
}

/// A cached tile, if it decodes and has the expected side; anything else is dreamed again.
fn read_tile(path: &Path, size: u32) -> Option<RgbImage> {
    if !path.is_file() {
        return None;
    }
    match image::open(path) {
        Ok(img) if img.width() == size && img.height() == size => Some(img.to_rgb8()),
        Ok(img) => {
            tracing::warn!(path = %path.display(), width = img.width(), height = img.height(),
                "cached gallery tile has the wrong size: dreaming it again");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), "cached gallery tile unreadable ({e}): dreaming it again");
            None
        }
    }
}

fn check(settings: &GallerySettings) -> Result<()> {
    if !(32..=512).contains(&settings.size) {
        return Err(Error::Invalid(format!(
            "gallery size {} is out of range (32 to 512)",
            settings.size
        )));
    }
    if settings.steps == 0 {
        return Err(Error::Invalid("a gallery needs at least one step".into()));
    }
    if !(1..=MAX_BATCH).contains(&settings.batch) {
        return Err(Error::Invalid(format!(
            "a gallery batch of {} is out of range (1 to {MAX_BATCH})",
            settings.batch
        )));
    }
    Ok(())
}

/// Dreams every channel of `layer` (or the first `settings.limit`), reading and filling the
/// cache under `cache_root` (`None`: no cache). `cancelled` is checked at every step; `progress`
/// hears after every step and with the tiles of every finished batch (the cached ones first).
/// `None` when cancelled; what was finished stays cached.
pub fn dream_gallery(
    model: &LoadedModel,
    layer: &str,
    settings: &GallerySettings,
    cache_root: Option<&Path>,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(&GalleryProgress),
) -> Result<Option<Gallery>> {
    check(settings)?;
    let started = Instant::now();
    let layer_channels = layer_channels(model, layer)?;
    let total = settings
        .limit
        .map_or(layer_channels, |n| n.min(layer_channels));
    let cache_dir = match cache_root {
        Some(root) => {
            let dir = root.join(cache_key(model, layer, settings));
            std::fs::create_dir_all(&dir).map_err(|e| Error::Output {
                path: dir.clone(),
                reason: format!("cannot create the gallery cache: {e}"),
            })?;
            Some(dir)
        }
        None => None,
    };
    let mut images: Vec<Option<RgbImage>> = (0..total)
        .map(|c| {
            let dir = cache_dir.as_deref()?;
            read_tile(&tile_path(dir, c), settings.size)
        })
        .collect();
    let cached = images.iter().filter(|i| i.is_some()).count();
    let mut done = cached;
    let first: Vec<(usize, RgbImage)> = images
        .iter()
        .enumerate()
        .filter_map(|(c, i)| i.clone().map(|i| (c, i)))
        .collect();
    progress(&GalleryProgress {
        done,
        total,
        step: 0,
        steps: settings.steps,
        new_tiles: &first,
    });
    let mut dream = DreamSettings::new(DreamTarget::Channel {
        layer: layer.to_string(),
        channel: 0,
    });
    dream.size = settings.size;
    dream.steps = settings.steps;
    dream.seed = settings.seed;
    dream.diversity = 0.0;
    let mut computed = 0;
    for start in (0..total).step_by(settings.batch) {
        let chunk = start..(start + settings.batch).min(total);
        if chunk.clone().all(|c| images[c].is_some()) {
            continue;
        }
        if cancelled() {
            return Ok(None);
        }
        // The whole chunk is dreamed even when only some of it is missing: each channel keeps
        // its place in its batch (see the module header).
        let targets: Vec<DreamTarget> = chunk
            .clone()
            .map(|channel| DreamTarget::Channel {
                layer: layer.to_string(),
                channel,
            })
            .collect();
        let outcome = dream_each(model, &targets, &dream, &|| 0.0, cancelled, &mut |frame| {
            progress(&GalleryProgress {
                done,
                total,
                step: frame.step,
                steps: settings.steps,
                new_tiles: &[],
            })
        })?;
        // Stopped part-way (or before the first step): nothing of this batch is kept.
        let Some(outcome) = outcome.filter(|o| o.steps == settings.steps) else {
            return Ok(None);
        };
        let mut new_tiles = Vec::new();
        for (channel, image) in chunk.zip(outcome.images) {
            if images[channel].is_some() {
                continue;
            }
            if let Some(dir) = &cache_dir {
                save_png(
                    &tile_path(dir, channel),
                    &[],
                    &image::DynamicImage::ImageRgb8(image.clone()),
                )?;
            }
            new_tiles.push((channel, image.clone()));
            images[channel] = Some(image);
            computed += 1;
            done += 1;
        }
        progress(&GalleryProgress {
            done,
            total,
            step: 0,
            steps: settings.steps,
            new_tiles: &new_tiles,
        });
    }
    let images = images
        .into_iter()
        .map(|i| i.ok_or_else(|| Error::Invalid("a gallery channel was not dreamed".into())))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Gallery {
        images,
        layer_channels,
        cached,
        computed,
        cache_dir,
        seconds: started.elapsed().as_secs_f64(),
    }))
}
