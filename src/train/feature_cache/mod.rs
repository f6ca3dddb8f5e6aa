//! The feature cache on disk: the vectors [`super::features::extract`] computed, kept for the
//! next run.
//!
//! ```text
//! <cache>/.lock                      an OS file lock, held while anything below is read or changed
//! <cache>/<model-key>/               one folder per model, weights file, preprocessing and flip
//! <cache>/<model-key>/<hash>.feat    one shard per folder of photos (hash of its canonical path)
//! ```
//!
//! A shard is an append-only log: a header (magic, width, flip, the folder's canonical path)
//! then one record per photo (its file name, size and modification time, its vector(s), and a
//! checksum of the record).
//!
//! - **Each batch is appended as soon as it is computed**, under the lock: a cancelled or
//!   killed run keeps every batch it finished, and runs at the same time (on the same folder or
//!   not) add to the cache instead of overwriting each other. A run only touches the shards of
//!   its own folders, and never rewrites a shard just to add to it.
//! - **Reading refuses what it cannot trust**: a shard that is not a regular file, is larger
//!   than the cache's limit, or has another header is ignored with a warning naming it (its
//!   photos are computed again and the shard replaced); reading stops at the first record that
//!   is cut short, fails its checksum or holds a non-finite number (the tail of a run killed
//!   while appending).
//! - **Dead records are pruned**: records of photos that are gone or changed (size or time),
//!   duplicates and a damaged tail. A shard is rewritten (to a temporary file renamed over it)
//!   only when it is damaged or at least half of it is dead, so rewrites stay rare.
//! - **Housekeeping, before a run reads the cache**: temporary files of killed runs are
//!   deleted (every temporary file is written under the lock, so none can be in use), so are
//!   shards whose folder is gone and caches of the older single-file format; then, while the
//!   shards take more than the limit, the least recently used go (a run sets the modification
//!   time of the shards it uses).
//!
//! Every failure here is a warning: without a cache, features are simply computed.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::dataset::Item;
use crate::input::read_regular;
use crate::output::write_atomic;

mod housekeeping;
mod shard;

use shard::*;

const MAGIC: &[u8; 8] = b"CNXSHRD1";
/// The magic of the older format: one file per model key, rewritten whole on every run.
const OLD_MAGIC: &[u8; 8] = b"CNXFEAT1";
const SHARD_EXTENSION: &str = "feat";
const LOCK_NAME: &str = ".lock";
/// Longest file name a record holds (longer names are not cached).
const MAX_NAME: usize = 4096;
/// Longest folder path a header holds.
const MAX_DIR: usize = 64 * 1024;

/// A photo's vectors as cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub vector: Vec<f32>,
    /// With flips, the features of the mirrored photo.
    pub flipped: Option<Vec<f32>>,
}

/// A computed photo for [`FeatureCache::store`]: its index in the items, its vector, and with
/// flips its mirror image's.
pub type Row<'a> = (usize, &'a [f32], Option<&'a [f32]>);

/// The cache of one model key (see the module header), for one run.
#[derive(Debug)]
pub struct FeatureCache {
    root: PathBuf,
    key: String,
    dim: usize,
    flip: bool,
    max_bytes: u64,
    /// Where each item is cached, if it can be.
    places: Vec<Option<Place>>,
    shards: Vec<Shard>,
    /// Set when the cache cannot be used or written: the run goes on without it.
    broken: bool,
}

/// An item's shard (index into `FeatureCache::shards`) and record key.
#[derive(Debug)]
struct Place {
    shard: usize,
    name: Vec<u8>,
    size: u64,
    mtime: u128,
}

#[derive(Debug)]
struct Shard {
    /// The canonical folder, as bytes (the header's).
    dir: Vec<u8>,
    file: PathBuf,
}

/// A shard read into memory: its bytes, its good records, and why reading stopped early.
struct ShardRead {
    bytes: Vec<u8>,
    records: Vec<Record>,
    damage: Option<String>,
}

/// A record of a shard read into memory: byte ranges into the shard's bytes.
struct Record {
    bytes: Range<usize>,
    name: Range<usize>,
    size: u64,
    mtime: u128,
    floats: Range<usize>,
}

impl FeatureCache {
    /// The cache under `root` of model key `key` (a file-name-safe string), for vectors of
    /// `dim` numbers (and their mirror images' with `flip`), its shards kept within
    /// `max_bytes` in all.
    pub fn new(root: &Path, key: &str, dim: usize, flip: bool, max_bytes: u64) -> Self {
        Self {
            root: root.to_path_buf(),
            key: key.to_string(),
            dim,
            flip,
            max_bytes,
            places: Vec::new(),
            shards: Vec::new(),
            broken: false,
        }
    }

    /// The cached features of each of `items` (`None` where there are none), after the
    /// housekeeping of the module header. Remembers the items for [`Self::store`].
    pub fn load(&mut self, items: &[Item]) -> Vec<Option<Cached>> {
        let mut found = vec![None; items.len()];
        self.place(items);
        let Some(_lock) = self.lock() else {
            return found;
        };
        self.clean_leftovers();
        let mut members = vec![Vec::new(); self.shards.len()];
        for (i, place) in self.places.iter().enumerate() {
            if let Some(place) = place {
                members[place.shard].push(i);
            }
        }
        for (shard, members) in members.iter().enumerate() {
            self.load_shard(shard, members, &mut found);
        }
        self.evict();
        found
    }

    /// Appends the features of `computed` to their shards, at once, under the lock.
    pub fn store(&mut self, computed: &[Row<'_>]) {
        if self.broken || computed.is_empty() {
            return;
        }
        let mut buffers: Vec<Vec<u8>> = vec![Vec::new(); self.shards.len()];
        for &(i, vector, flipped) in computed {
            let Some(place) = self.places.get(i).and_then(Option::as_ref) else {
                continue;
            };
            if vector.len() == self.dim && flipped.is_some() == self.flip {
                encode_record(&mut buffers[place.shard], place, vector, flipped);
            }
        }
        let Some(_lock) = self.lock() else {
            return;
        };
        let failed = self
            .shards
            .iter()
            .zip(&buffers)
            .filter(|(_, records)| !records.is_empty())
            .find_map(|(shard, records)| {
                let e = self.append(shard, records).err()?;
                Some((shard.file.clone(), e))
            });
        if let Some((path, e)) = failed {
            tracing::warn!(path = %path.display(), "could not add to the feature cache: {e}");
            self.broken = true;
        }
    }

    /// The folder of this model key's shards.
    fn folder(&self) -> PathBuf {
        self.root.join(&self.key)
    }

    /// Each item's shard: the canonical folder it is in (items whose folder cannot be
    /// resolved, or with too long a name, are not cached).
    fn place(&mut self, items: &[Item]) {
        let folder = self.folder();
        let mut by_parent: HashMap<&Path, Option<usize>> = HashMap::new();
        let mut places = Vec::with_capacity(items.len());
        for item in items {
            let (Some(parent), Some(name)) = (item.path.parent(), item.path.file_name()) else {
                places.push(None);
                continue;
            };
            let shard = *by_parent.entry(parent).or_insert_with(|| {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                let dir = fs::canonicalize(parent).ok()?;
                let dir = dir.as_os_str().as_encoded_bytes().to_vec();
                if dir.len() > MAX_DIR {
                    return None;
                }
                // Two paths to one folder (a link) share its shard.
                if let Some(i) = self.shards.iter().position(|s| s.dir == dir) {
                    return Some(i);
                }
                let hash = hex(&Sha256::digest(&dir)[..12]);
                let file = folder.join(format!("{hash}.{SHARD_EXTENSION}"));
                self.shards.push(Shard { dir, file });
                Some(self.shards.len() - 1)
            });
            let name = name.as_encoded_bytes();
            places.push(shard.filter(|_| name.len() <= MAX_NAME).map(|shard| Place {
                shard,
                name: name.to_vec(),
                size: item.size,
                mtime: item.mtime_ns,
            }));
        }
        self.places = places;
    }

    /// Takes the cache's lock (released when the file is dropped); `None`, with a warning,
    /// when the cache cannot be used.
    fn lock(&mut self) -> Option<fs::File> {
        if self.broken {
            return None;
        }
        let path = self.root.join(LOCK_NAME);
        let taken = (|| {
            fs::create_dir_all(self.folder())?;
            // A FIFO planted there would block the open.
            if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
                return Err(std::io::Error::other("the lock is not a regular file"));
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })();
        match taken {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(path = %path.display(), "not using the feature cache: {e}");
                self.broken = true;
                None
            }
        }
    }
}
