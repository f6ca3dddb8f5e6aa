//! Housekeeping before a run reads the cache: leftovers of killed runs and older formats,
//! shards of folders that are gone, and eviction of the least recently used over the limit.

use super::*;

impl FeatureCache {
    /// Deletes what killed runs and older versions left: temporary files (none can be in
    /// use: they are only written under the lock), caches of the old single-file format, and
    /// shards whose folder is gone.
    pub(super) fn clean_leftovers(&self) {
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
    pub(super) fn folder_gone(&self, path: &Path) -> bool {
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
    pub(super) fn evict(&self) {
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

/// `NAME-<24 hex digits>`, as `features::cache_key` makes them.
pub(super) fn is_model_key(name: &str) -> bool {
    name.rsplit_once('-').is_some_and(|(model, hash)| {
        !model.is_empty() && hash.len() == 24 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

pub(super) fn is_shard_name(name: &str) -> bool {
    name.strip_suffix(".feat")
        .is_some_and(|hash| hash.len() == 24 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(super) fn starts_with(path: &Path, magic: &[u8]) -> bool {
    let mut head = vec![0; magic.len()];
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
        && fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
        && head == magic
}

/// The entries of `dir` (none when it cannot be read).
pub(super) fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Removes a file of the cache, saying so; whether it went.
pub(super) fn remove(path: &Path, what: &str) -> bool {
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
