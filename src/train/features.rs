//! Frozen-backbone features of a dataset's photos, computed once in batches and cached.
//!
//! Each photo is decoded and preprocessed (in parallel), the batch goes through
//! [`Backbone::embed`](crate::model::Backbone::embed) (`[B, 3, S, S]` -> `[B, D]`), and the
//! vectors are kept per file. Photos that fail to decode are skipped and reported. The cache
//! file is keyed by model, weights file (path, size, time), preprocessing and augmentation;
//! inside it each entry is keyed by the photo's path, size and modification time, so a
//! changed or added photo is recomputed and the rest are read back.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::dataset::{Item, Skipped};
use super::observe::{TrainEvent, TrainObserver};
use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};

const MAGIC: &[u8; 8] = b"CNXFEAT1";

/// Options of [`extract`].
#[derive(Debug, Clone)]
pub struct FeatureOptions {
    /// Photos per forward pass.
    pub batch_size: usize,
    /// Also compute the features of each photo flipped left-right (training augmentation).
    pub flip: bool,
    /// Folder of the cache files; `None` computes everything and stores nothing.
    pub cache_dir: Option<PathBuf>,
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
            tap: None,
        }
    }
}

/// Where feature caches go: `$CNN_EXPLORER_CACHE_DIR`, else the user's cache folder.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CNN_EXPLORER_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LOCALAPPDATA").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("cnn-explorer").join("features")
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
/// is asked between batches whether to stop; a cancelled run returns [`Error::Cancelled`] and
/// keeps what it computed in the cache.
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
    let cache_path = options
        .cache_dir
        .as_ref()
        .filter(|_| options.tap.is_none())
        .map(|dir| dir.join(format!("{}.bin", cache_key(model, options.flip))));
    let mut cache = cache_path
        .as_deref()
        .map(|p| read_cache(p, dim))
        .unwrap_or_default();
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
    for (i, item) in items.iter().enumerate() {
        match cache.get(&entry_key(item)) {
            Some(entry) if !options.flip || entry.flipped.is_some() => {
                features.vectors[i] = Some(entry.vector.clone());
                features.flipped[i] = entry.flipped.clone();
                features.from_cache += 1;
            }
            _ => todo.push(i),
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
    let mut outcome = Ok(());
    for batch in todo.chunks(options.batch_size.max(1)) {
        if observer.is_cancelled() {
            outcome = Err(Error::Cancelled);
            break;
        }
        let decoded: Vec<(usize, std::result::Result<RgbImage, Error>)> = batch
            .par_iter()
            .map(|&i| (i, load_rgb(&items[i].path, DEFAULT_MAX_PIXELS)))
            .collect();
        let mut ok = Vec::new();
        for (i, image) in decoded {
            match image {
                Ok(image) => ok.push((i, image)),
                Err(e) => features.failed.push(Skipped {
                    path: items[i].path.clone(),
                    reason: match e {
                        Error::Image { reason, .. } => reason,
                        other => other.to_string(),
                    },
                }),
            }
        }
        if !ok.is_empty() {
            let images: Vec<&RgbImage> = ok.iter().map(|(_, im)| im).collect();
            let tap = options.tap.as_ref().map(|(name, _)| name.as_str());
            let vectors = embed(model, &images, tap)?;
            let flipped = if options.flip {
                let mirrored: Vec<RgbImage> = images
                    .iter()
                    .map(|im| image::imageops::flip_horizontal(*im))
                    .collect();
                Some(embed(model, &mirrored.iter().collect::<Vec<_>>(), tap)?)
            } else {
                None
            };
            for (row, (i, _)) in ok.iter().enumerate() {
                let v = vectors[row * dim..(row + 1) * dim].to_vec();
                let f = flipped
                    .as_ref()
                    .map(|f| f[row * dim..(row + 1) * dim].to_vec());
                if cache_path.is_some() {
                    cache.insert(
                        entry_key(&items[*i]),
                        CacheEntry {
                            vector: v.clone(),
                            flipped: f.clone(),
                        },
                    );
                }
                features.vectors[*i] = Some(v);
                features.flipped[*i] = f;
            }
        }
        features.computed += batch.len();
        let done = features.from_cache + features.computed;
        observer.on_event(TrainEvent::Features(report(&features, done)));
    }
    features.seconds = start.elapsed().as_secs_f64();
    if let Some(path) = &cache_path {
        if features.computed > 0 {
            if let Err(e) = write_cache(path, dim, &cache) {
                tracing::warn!(path = %path.display(), "could not write the feature cache: {e}");
            }
        }
    }
    outcome.map(|()| features)
}

/// `[B * D]` embeddings of `images`, or their activations at `tap`.
fn embed(model: &LoadedModel, images: &[&RgbImage], tap: Option<&str>) -> Result<Vec<f32>> {
    let x = model.input(images)?;
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

/// A photo's identity in the cache: path, size, modification time.
type EntryKey = (PathBuf, u64, u128);

fn entry_key(item: &Item) -> EntryKey {
    (item.path.clone(), item.size, item.mtime_ns)
}

#[derive(Debug, Clone)]
struct CacheEntry {
    vector: Vec<f32>,
    flipped: Option<Vec<f32>>,
}

/// Reads a cache file; a missing, foreign or damaged one reads as empty.
fn read_cache(path: &Path, dim: usize) -> HashMap<EntryKey, CacheEntry> {
    let parse = || -> std::io::Result<HashMap<EntryKey, CacheEntry>> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut bytes)?;
        let mut r = Reader(&bytes);
        if r.take(8)? != MAGIC || r.u64()? as usize != dim {
            return Err(std::io::Error::other("not a cache of this model"));
        }
        let count = r.u64()? as usize;
        let mut map = HashMap::with_capacity(count.min(1 << 20));
        for _ in 0..count {
            let len = r.u64()? as usize;
            let path = PathBuf::from(String::from_utf8_lossy(r.take(len)?).into_owned());
            let (size, mtime) = (r.u64()?, u128::from(r.u64()?) << 64 | u128::from(r.u64()?));
            let vector = r.floats(dim)?;
            let flipped = if r.take(1)?[0] == 1 {
                Some(r.floats(dim)?)
            } else {
                None
            };
            map.insert((path, size, mtime), CacheEntry { vector, flipped });
        }
        Ok(map)
    };
    match parse() {
        Ok(map) => map,
        Err(e) => {
            if path.exists() {
                tracing::warn!(path = %path.display(), "ignoring the feature cache: {e}");
            }
            HashMap::new()
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(std::io::Error::other("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> std::io::Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(std::io::Error::other)?,
        ))
    }

    fn floats(&mut self, n: usize) -> std::io::Result<Vec<f32>> {
        Ok(self
            .take(4 * n)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Writes the cache atomically (a temporary file renamed over the old one).
fn write_cache(path: &Path, dim: usize, cache: &HashMap<EntryKey, CacheEntry>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = Vec::with_capacity(cache.len() * (dim * 4 + 64));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(dim as u64).to_le_bytes());
    out.extend_from_slice(&(cache.len() as u64).to_le_bytes());
    for ((p, size, mtime), entry) in cache {
        let name = p.to_string_lossy();
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&((mtime >> 64) as u64).to_le_bytes());
        out.extend_from_slice(&(*mtime as u64).to_le_bytes());
        for v in &entry.vector {
            out.extend_from_slice(&v.to_le_bytes());
        }
        match &entry.flipped {
            Some(f) => {
                out.push(1);
                for v in f {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            None => out.push(0),
        }
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&out)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
