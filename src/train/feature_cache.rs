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

    /// Reads shard `index`, hands out the records of `members`, and prunes or touches it.
    fn load_shard(&self, index: usize, members: &[usize], found: &mut [Option<Cached>]) {
        let shard = &self.shards[index];
        let ShardRead {
            bytes,
            records,
            damage,
        } = match self.read_shard(shard) {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err(reason) => {
                tracing::warn!(path = %shard.file.display(), "ignoring the feature cache: {reason}");
                ShardRead {
                    bytes: Vec::new(),
                    records: Vec::new(),
                    damage: Some(reason),
                }
            }
        };
        let name = |r: &Record| &bytes[r.name.clone()];
        let mut first: HashMap<(&[u8], u64, u128), usize> = HashMap::new();
        for (r, record) in records.iter().enumerate() {
            first
                .entry((name(record), record.size, record.mtime))
                .or_insert(r);
        }
        let mut live = vec![false; records.len()];
        for &i in members {
            let Some(place) = &self.places[i] else {
                continue;
            };
            if let Some(&r) = first.get(&(place.name.as_slice(), place.size, place.mtime)) {
                found[i] = Some(self.decode(&bytes[records[r].floats.clone()]));
                live[r] = true;
            }
        }
        // Another run's photos stay while they are there, unchanged; duplicates go.
        let dir = path_from_bytes(&shard.dir);
        for (r, record) in records.iter().enumerate() {
            let key = (name(record), record.size, record.mtime);
            if !live[r] && first[&key] == r {
                live[r] = dir.as_ref().is_some_and(|dir| unchanged(dir, &key));
            }
        }
        let alive = live.iter().filter(|&&l| l).count();
        let dead = records.len() - alive;
        if damage.is_some() || (dead > 0 && dead >= alive) {
            let kept: Vec<&Record> = records
                .iter()
                .zip(&live)
                .filter(|(_, &l)| l)
                .map(|(r, _)| r)
                .collect();
            if let Err(e) = self.rewrite(shard, &bytes, &kept) {
                tracing::warn!(path = %shard.file.display(), "could not prune the feature cache: {e}");
            }
        } else if let Ok(file) = OpenOptions::new().write(true).open(&shard.file) {
            // Recently used: kept when the cache is over its limit.
            let _ = file.set_modified(SystemTime::now());
        }
    }

    /// A shard as read; `None` when there is none; an error when the file is not a shard of
    /// this key and folder.
    fn read_shard(&self, shard: &Shard) -> Result<Option<ShardRead>, String> {
        match fs::symlink_metadata(&shard.file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Ok(meta) if meta.is_symlink() => return Err("a link, not a cache file".into()),
            _ => {}
        }
        let bytes = read_regular(&shard.file, self.max_bytes)?;
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
        };
        let header_ok = (|| {
            let ok = r.take(8)? == &MAGIC[..]
                && r.u32()? as usize == self.dim
                && r.take(1)? == &[u8::from(self.flip)][..]
                && {
                    let len = r.u32()? as usize;
                    len <= MAX_DIR && r.take(len)? == shard.dir.as_slice()
                };
            Some(ok)
        })();
        if header_ok != Some(true) {
            return Err("not a feature cache of this model and folder".into());
        }
        let floats = 4 * self.dim * if self.flip { 2 } else { 1 };
        let mut records = Vec::new();
        let damage = loop {
            let start = r.at;
            if start == bytes.len() {
                break None;
            }
            let record = (|| {
                let len = usize::from(r.u16()?);
                if len == 0 || len > MAX_NAME {
                    return None;
                }
                let name = r.at..r.at + len;
                r.take(len)?;
                let size = r.u64()?;
                let mtime = u128::from(r.u64()?) | u128::from(r.u64()?) << 64;
                let numbers = r.at..r.at + floats;
                let finite = r
                    .take(floats)?
                    .chunks_exact(4)
                    .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite());
                let end = r.at;
                let sum = r.u64()?;
                (finite && sum == fnv1a(&bytes[start..end])).then_some(Record {
                    bytes: start..r.at,
                    name,
                    size,
                    mtime,
                    floats: numbers,
                })
            })();
            match record {
                Some(record) => records.push(record),
                None => {
                    break Some(format!(
                        "damaged after {} records (cut short, or a bad checksum)",
                        records.len()
                    ))
                }
            }
        };
        if let Some(reason) = &damage {
            tracing::warn!(path = %shard.file.display(), "feature cache {reason}: the rest is computed again");
        }
        Ok(Some(ShardRead {
            bytes,
            records,
            damage,
        }))
    }

    fn decode(&self, floats: &[u8]) -> Cached {
        let mut numbers = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let vector = numbers.by_ref().take(self.dim).collect();
        let flipped = self.flip.then(|| numbers.collect());
        Cached { vector, flipped }
    }

    fn header(&self, shard: &Shard) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + shard.dir.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.push(u8::from(self.flip));
        out.extend_from_slice(&(shard.dir.len() as u32).to_le_bytes());
        out.extend_from_slice(&shard.dir);
        out
    }

    /// Replaces a shard by its `kept` records (removes it when there are none).
    fn rewrite(&self, shard: &Shard, bytes: &[u8], kept: &[&Record]) -> std::io::Result<()> {
        // Anything but a regular file (a FIFO, a link) is removed, not written through.
        let regular = fs::symlink_metadata(&shard.file).map(|m| m.is_file());
        if kept.is_empty() || regular.as_ref().is_ok_and(|r| !r) {
            match fs::remove_file(&shard.file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        write_atomic(&shard.file, &[], |w| {
            w.write_all(&self.header(shard))?;
            for record in kept {
                w.write_all(&bytes[record.bytes.clone()])?;
            }
            Ok(())
        })
        .map_err(std::io::Error::other)
    }

    /// Appends `records` to a shard (starting it with its header when new), in one write.
    fn append(&self, shard: &Shard, records: &[u8]) -> std::io::Result<()> {
        if fs::symlink_metadata(&shard.file).is_ok_and(|m| !m.is_file()) {
            return Err(std::io::Error::other("not a regular file"));
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&shard.file)?;
        let mut out = Vec::new();
        if file.metadata()?.len() == 0 {
            out = self.header(shard);
        }
        out.extend_from_slice(records);
        file.write_all(&out)
    }

    /// Deletes what killed runs and older versions left: temporary files (none can be in
    /// use: they are only written under the lock), caches of the old single-file format, and
    /// shards whose folder is gone.
    fn clean_leftovers(&self) {
        for path in entries(&self.root) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let old_cache = name.strip_suffix(".bin").is_some_and(is_model_key)
                && starts_with(&path, OLD_MAGIC);
            let old_temp = name.rsplit_once(".tmp").is_some_and(|(key, pid)| {
                is_model_key(key) && pid.bytes().all(|b| b.is_ascii_digit())
            });
            if old_cache || old_temp {
                remove(&path, "an old feature cache file");
            } else if is_model_key(name) {
                for path in entries(&path) {
                    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    if name.starts_with('.') && name.ends_with(".tmp") && name.contains(".feat.") {
                        remove(&path, "a temporary file left by a stopped run");
                    } else if is_shard_name(name) && self.folder_gone(&path) {
                        remove(&path, "the cached features of a folder that is gone");
                    }
                }
            }
        }
    }

    /// Whether the shard at `path` names a folder that no longer exists.
    fn folder_gone(&self, path: &Path) -> bool {
        let mut head = [0u8; 17];
        // Checked first: opening a FIFO would block.
        if fs::symlink_metadata(path).map_or(true, |m| !m.is_file()) {
            return false;
        }
        let Ok(mut file) = fs::File::open(path) else {
            return false;
        };
        if std::io::Read::read_exact(&mut file, &mut head).is_err() || &head[..8] != MAGIC {
            return false;
        }
        let len = u32::from_le_bytes([head[13], head[14], head[15], head[16]]) as usize;
        let mut dir = vec![0; len.min(MAX_DIR)];
        if len > MAX_DIR || std::io::Read::read_exact(&mut file, &mut dir).is_err() {
            return false;
        }
        path_from_bytes(&dir).is_some_and(|dir| !dir.is_dir())
    }

    /// While all shards take more than the limit, deletes the least recently used ones
    /// (never this run's).
    fn evict(&self) {
        let mine: Vec<&Path> = self.shards.iter().map(|s| s.file.as_path()).collect();
        let mut shards = Vec::new();
        for folder in entries(&self.root) {
            if !folder
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_model_key)
            {
                continue;
            }
            for path in entries(&folder) {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if let Ok(meta) = fs::symlink_metadata(&path) {
                    if is_shard_name(name) && meta.is_file() {
                        let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                        shards.push((used, meta.len(), path));
                    }
                }
            }
        }
        let mut total: u64 = shards.iter().map(|(_, len, _)| len).sum();
        shards.sort();
        for (_, len, path) in shards {
            if total <= self.max_bytes {
                break;
            }
            if !mine.contains(&path.as_path())
                && remove(
                    &path,
                    "the least recently used cached features (over the cache's limit)",
                )
            {
                total -= len;
            }
        }
    }
}

/// Appends one record (see the module header).
fn encode_record(out: &mut Vec<u8>, place: &Place, vector: &[f32], flipped: Option<&[f32]>) {
    let start = out.len();
    out.extend_from_slice(&(place.name.len() as u16).to_le_bytes());
    out.extend_from_slice(&place.name);
    out.extend_from_slice(&place.size.to_le_bytes());
    out.extend_from_slice(&(place.mtime as u64).to_le_bytes());
    out.extend_from_slice(&((place.mtime >> 64) as u64).to_le_bytes());
    for v in vector.iter().chain(flipped.into_iter().flatten()) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let sum = fnv1a(&out[start..]);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// Whether the file `name` in `dir` still has this size and modification time.
fn unchanged(dir: &Path, (name, size, mtime): &(&[u8], u64, u128)) -> bool {
    let Some(name) = path_from_bytes(name) else {
        return false;
    };
    let Ok(meta) = fs::metadata(dir.join(name)) else {
        return false;
    };
    let time = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    meta.len() == *size && time == *mtime
}

/// A path from the bytes `as_encoded_bytes` gave (as they are on Unix, UTF-8 elsewhere).
fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes).ok().map(PathBuf::from)
    }
}

/// `NAME-<24 hex digits>`, as `features::cache_key` makes them.
fn is_model_key(name: &str) -> bool {
    name.rsplit_once('-').is_some_and(|(model, hash)| {
        !model.is_empty() && hash.len() == 24 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn is_shard_name(name: &str) -> bool {
    name.strip_suffix(".feat")
        .is_some_and(|hash| hash.len() == 24 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn starts_with(path: &Path, magic: &[u8]) -> bool {
    let mut head = vec![0; magic.len()];
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
        && fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
        && head == magic
}

/// The entries of `dir` (none when it cannot be read).
fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Removes a file of the cache, saying so; whether it went.
fn remove(path: &Path, what: &str) -> bool {
    match fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed {what}");
            true
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), "could not remove {what}: {e}");
            false
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// FNV-1a, 64 bits: a record's checksum (it finds torn and garbled records; it is no defence
/// against a forger, who could only make a run's features wrong anyway).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Little-endian numbers off a byte slice; `None` past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Some(out)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut out = [0; 8];
        out.copy_from_slice(b);
        Some(u64::from_le_bytes(out))
    }
}
