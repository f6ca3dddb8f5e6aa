//! Frozen-backbone features of a dataset's photos, computed once in batches and cached.
//!
//! Each photo is decoded and turned at once into what the network sees (its `S x S` view, and
//! the mirrored photo's with flips), on a few threads; the full-resolution pixels are dropped
//! before that thread decodes another photo, so memory holds about one full photo per thread
//! (at most `MAX_DECODING`), never a batch of them. The batch of views goes through
//! [`Backbone::embed`](crate::model::Backbone::embed) (`[B, 3, S, S]` -> `[B, D]`) and the
//! vectors are kept per file. Photos that fail to decode are skipped and reported.
//!
//! The cache (see `feature_cache`) is keyed by model, weights file (path, size, time),
//! preprocessing and augmentation; inside it each photo by its folder, name, size and
//! modification time, so a changed or added photo is recomputed and the rest are read back.
//! Each batch is added to it as soon as it is computed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use candle_core::Tensor;
use image::RgbImage;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::dataset::{Item, Skipped};
use super::feature_cache::{FeatureCache, Row};
use super::observe::{TrainEvent, TrainObserver};
use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};
use crate::vision::preprocess::{normalize_chw, Preprocess};

/// Most disk space the feature cache takes by default (least recently used folders go first).
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

/// Options of [`extract`].
#[derive(Debug, Clone)]
pub struct FeatureOptions {
    /// Photos per forward pass.
    pub batch_size: usize,
    /// Also compute the features of each photo flipped left-right (training augmentation).
    pub flip: bool,
    /// Folder of the cache files; `None` computes everything and stores nothing.
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the cache's files may take in all.
    pub cache_max_bytes: u64,
    /// Instead of the pooled embedding, this tap's whole activation (name, values per photo),
    /// for fine-tuning the block after it; never cached.
    pub tap: Option<(String, usize)>,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        Self {
            batch_size: 16,
            flip: false,
            cache_dir: Some(default_cache_dir()),
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            tap: None,
        }
    }
}

/// Where feature caches go: `features` in the cache folder ([`crate::places`]).
pub fn default_cache_dir() -> PathBuf {
    crate::places::Places::current().features_cache()
}

pub use super::observe::Progress;

/// The features of a dataset: `vectors[i]` (and `flipped[i]` with augmentation) for
/// `items[i]`, `None` where the photo could not be used.
#[derive(Debug, Clone)]
pub struct Features {
    pub dim: usize,
    pub vectors: Vec<Option<Vec<f32>>>,
    pub flipped: Vec<Option<Vec<f32>>>,
    /// Photos that failed to decode, with the reason.
    pub failed: Vec<Skipped>,
    /// Photos read from the cache.
    pub from_cache: usize,
    /// Photos computed, and the seconds that took (decoding included).
    pub computed: usize,
    pub seconds: f64,
}

/// Computes (or reads back) the features of `items` with `model`, reporting
/// [`TrainEvent::Features`] to `observer` before the first batch and after each. The observer
/// is asked between batches whether to stop; a cancelled run returns [`Error::Cancelled`].
/// Every batch computed is in the cache at once, whatever stops the run later.
pub fn extract(
    model: &LoadedModel,
    items: &[Item],
    options: &FeatureOptions,
    observer: &mut dyn TrainObserver,
) -> Result<Features> {
    let dim = options
        .tap
        .as_ref()
        .map_or(model.backbone.embedding_dim(), |(_, width)| *width);
    let mut cache = options
        .cache_dir
        .as_ref()
        .filter(|_| options.tap.is_none())
        .map(|dir| {
            let key = cache_key(model, options.flip);
            FeatureCache::new(dir, &key, dim, options.flip, options.cache_max_bytes)
        });
    let cached = match cache.as_mut() {
        Some(cache) => cache.load(items),
        None => vec![None; items.len()],
    };
    let mut features = Features {
        dim,
        vectors: vec![None; items.len()],
        flipped: vec![None; items.len()],
        failed: Vec::new(),
        from_cache: 0,
        computed: 0,
        seconds: 0.0,
    };
    let mut todo = Vec::new();
    for (i, entry) in cached.into_iter().enumerate() {
        match entry {
            Some(entry) => {
                features.vectors[i] = Some(entry.vector);
                features.flipped[i] = entry.flipped;
                features.from_cache += 1;
            }
            None => todo.push(i),
        }
    }
    let start = Instant::now();
    let total = items.len();
    let report = |features: &Features, done: usize| {
        let secs = start.elapsed().as_secs_f32();
        let rate = if secs > 0.0 {
            features.computed as f32 / secs
        } else {
            0.0
        };
        Progress {
            done,
            total,
            cached: features.from_cache,
            images_per_s: rate,
            eta_s: if rate > 0.0 {
                (total - done) as f32 / rate
            } else {
                0.0
            },
        }
    };
    observer.on_event(TrainEvent::Features(report(&features, features.from_cache)));
    let tap = options.tap.as_ref().map(|(name, _)| name.as_str());
    for batch in todo.chunks(options.batch_size.max(1)) {
        if observer.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let prepare = || -> Vec<(usize, Result<View>)> {
            batch
                .par_iter()
                .map(|&i| (i, View::of(&model.preprocess, &items[i].path, options.flip)))
                .collect()
        };
        let prepared = match decoders() {
            Some(pool) => pool.install(prepare),
            None => prepare(),
        };
        let mut views = Vec::new();
        for (i, view) in prepared {
            match view {
                Ok(view) => views.push((i, view)),
                Err(e) => features.failed.push(Skipped {
                    path: items[i].path.clone(),
                    reason: match e {
                        Error::Image { reason, .. } => reason,
                        other => other.to_string(),
                    },
                }),
            }
        }
        if !views.is_empty() {
            let plain: Vec<&RgbImage> = views.iter().map(|(_, v)| &v.plain).collect();
            let vectors = embed(model, &plain, tap)?;
            let mirrored: Vec<&RgbImage> = views
                .iter()
                .filter_map(|(_, v)| v.mirrored.as_ref())
                .collect();
            let flipped = if options.flip {
                Some(embed(model, &mirrored, tap)?)
            } else {
                None
            };
            let row = |all: &[f32], r: usize| all[r * dim..(r + 1) * dim].to_vec();
            for (r, (i, _)) in views.iter().enumerate() {
                features.vectors[*i] = Some(row(&vectors, r));
                features.flipped[*i] = flipped.as_ref().map(|f| row(f, r));
            }
            if let Some(cache) = cache.as_mut() {
                let rows: Vec<Row<'_>> = views
                    .iter()
                    .filter_map(|&(i, _)| {
                        let vector = features.vectors[i].as_deref()?;
                        Some((i, vector, features.flipped[i].as_deref()))
                    })
                    .collect();
                cache.store(&rows);
            }
        }
        features.computed += batch.len();
        let done = features.from_cache + features.computed;
        observer.on_event(TrainEvent::Features(report(&features, done)));
    }
    features.seconds = start.elapsed().as_secs_f64();
    Ok(features)
}

/// Most photos decoded at once: each holds its full-resolution pixels until its views are
/// made (up to 100 megapixels, 300 MB), so peak memory is about this many photos, whatever the
/// batch size and core count. The network, not decoding, takes most of the time.
const MAX_DECODING: usize = 4;

/// The threads that decode photos (`None`, using rayon's global pool, if they could not be
/// started).
fn decoders() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads().clamp(1, MAX_DECODING))
            .thread_name(|i| format!("decode-{i}"))
            .build()
            .inspect_err(|e| tracing::warn!("decoding on the shared threads: {e}"))
            .ok()
    })
    .as_ref()
}

/// The network views (`S x S`, see [`Preprocess::network_view`]) of `items`' photos, decoded
/// on the decoding threads (at most `MAX_DECODING` full photos in memory), in order.
pub(crate) fn network_views(model: &LoadedModel, items: &[Item]) -> Vec<Result<RgbImage>> {
    let prepare = || -> Vec<Result<RgbImage>> {
        items
            .par_iter()
            .map(|item| View::of(&model.preprocess, &item.path, false).map(|v| v.plain))
            .collect()
    };
    match decoders() {
        Some(pool) => pool.install(prepare),
        None => prepare(),
    }
}

/// A photo as the network sees it: its `S x S` view, and with flips its mirror image's.
struct View {
    plain: RgbImage,
    mirrored: Option<RgbImage>,
}

impl View {
    /// Decodes the photo at `path` and makes its views; the full-resolution image is dropped
    /// on return (the mirror image is flipped in place: no second full copy).
    fn of(preprocess: &Preprocess, path: &Path, flip: bool) -> Result<Self> {
        let mut full = load_rgb(path, DEFAULT_MAX_PIXELS)?;
        let plain = preprocess.network_view(&full);
        let mirrored = flip.then(|| {
            image::imageops::flip_horizontal_in_place(&mut full);
            preprocess.network_view(&full)
        });
        Ok(Self { plain, mirrored })
    }
}

/// `[B * D]` embeddings of the network views `views`, or their activations at `tap`.
fn embed(model: &LoadedModel, views: &[&RgbImage], tap: Option<&str>) -> Result<Vec<f32>> {
    let p = &model.preprocess;
    let side = p.size as usize;
    let mut data = Vec::with_capacity(views.len() * 3 * side * side);
    for view in views {
        data.extend(normalize_chw(view, &p.mean, &p.std));
    }
    let x = Tensor::from_vec(data, (views.len(), 3, side, side), &model.device)?;
    let y = match tap {
        Some(name) => model.backbone.forward_until(&x, Some(name))?,
        None => model.backbone.embed(&x)?,
    };
    Ok(y.flatten_all()?.to_vec1::<f32>()?)
}

/// Identifies the model, weights, preprocessing and augmentation of a cache file.
fn cache_key(model: &LoadedModel, flip: bool) -> String {
    let meta = std::fs::metadata(&model.weights_path).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let description = format!(
        "{}|{}|{}|{}|{:?}|flip={flip}",
        model.spec.name,
        model.weights_path.display(),
        meta.map_or(0, |m| m.len()),
        mtime,
        model.preprocess,
    );
    let digest = Sha256::digest(description.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", model.spec.name)
}
