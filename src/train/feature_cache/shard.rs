//! A shard on disk: reading and checking it record by record, appending to it, rewriting it
//! without its dead records (the format is in the parent module's header).

use super::*;

impl FeatureCache {
    /// Reads shard `index`, hands out the records of `members`, and prunes or touches it.
    pub(super) fn load_shard(&self, index: usize, members: &[usize], found: &mut [Option<Cached>]) {
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
    pub(super) fn read_shard(&self, shard: &Shard) -> Result<Option<ShardRead>, String> {
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

    pub(super) fn decode(&self, floats: &[u8]) -> Cached {
        let mut numbers = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let vector = numbers.by_ref().take(self.dim).collect();
        let flipped = self.flip.then(|| numbers.collect());
        Cached { vector, flipped }
    }

    pub(super) fn header(&self, shard: &Shard) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + shard.dir.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.push(u8::from(self.flip));
        out.extend_from_slice(&(shard.dir.len() as u32).to_le_bytes());
        out.extend_from_slice(&shard.dir);
        out
    }

    /// Replaces a shard by its `kept` records (removes it when there are none).
    pub(super) fn rewrite(
        &self,
        shard: &Shard,
        bytes: &[u8],
        kept: &[&Record],
    ) -> std::io::Result<()> {
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
    pub(super) fn append(&self, shard: &Shard, records: &[u8]) -> std::io::Result<()> {
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
}

/// Appends one record (see the module header).
pub(super) fn encode_record(
    out: &mut Vec<u8>,
    place: &Place,
    vector: &[f32],
    flipped: Option<&[f32]>,
) {
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
pub(super) fn unchanged(dir: &Path, (name, size, mtime): &(&[u8], u64, u128)) -> bool {
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
pub(super) fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// FNV-1a, 64 bits: a record's checksum (it finds torn and garbled records; it is no defence
/// against a forger, who could only make a run's features wrong anyway).
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Little-endian numbers off a byte slice; `None` past its end.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Some(out)
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut out = [0; 8];
        out.copy_from_slice(b);
        Some(u64::from_le_bytes(out))
    }
}
