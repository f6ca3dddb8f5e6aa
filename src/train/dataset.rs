//! Labelled photos from a folder, in the layouts people download.
//!
//! - **Class folders**: `DIR/<class>/*.jpg` (any depth below each class folder), as in
//!   Microsoft's Cats-vs-Dogs `PetImages/{Cat,Dog}` (a `PetImages` folder inside `DIR` is
//!   looked into).
//! - **Oxford-IIIT Pet**: flat `DIR/images/*.jpg` (or flat `DIR/*.jpg`), the class being the
//!   file name up to its last `_` (`Abyssinian_12.jpg` is `Abyssinian`); with
//!   [`ScanOptions::cats_vs_dogs`] the 37 breeds become `cat` (capitalised names) and `dog`.
//!
//! Scanning only looks at names and sizes: zero-byte files and files that are not images by
//! their extension are skipped and counted here; files that fail to decode are skipped and
//! counted when their features are computed.
//!
//! Links are followed, safely: a walk never enters the same folder twice (no loops, no
//! exponential walks through links to `.`), never the dataset folder or one above it, and
//! never another class's folder. Each file counts once, by identity (device and inode on
//! Unix): a file reached twice in one class is used once, and one reached from two classes is
//! left out of both, since its label is unknown and it could land on both sides of the split.
//! Every such item goes to [`Dataset::skipped`] with the reason. A class folder whose name is
//! not UTF-8 keeps its own class, named with the odd bytes written `\xE9`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Extensions taken as images (lower case).
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff", "pnm", "ppm", "tga", "ico",
];

/// How the folder was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One folder per class.
    ClassFolders,
    /// Oxford-IIIT Pet's flat `Breed_N.jpg` files.
    OxfordPets,
}

impl std::fmt::Display for Layout {
    /// "class folders", "Oxford-IIIT Pet": as a person reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ClassFolders => "class folders",
            Self::OxfordPets => "Oxford-IIIT Pet",
        })
    }
}

/// Options of [`scan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanOptions {
    /// Oxford-IIIT Pet only: group the breeds into `cat` and `dog`.
    pub cats_vs_dogs: bool,
}

/// One labelled photo. `size` and `mtime` identify its contents for the feature cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub path: PathBuf,
    pub class: usize,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 where unknown).
    pub mtime_ns: u128,
}

/// A file left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// The photos of a folder with their classes.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    /// Class names, sorted; `Item::class` indexes them.
    pub classes: Vec<String>,
    /// Sorted by class, then path.
    pub items: Vec<Item>,
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    /// Photos per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for item in &self.items {
            counts[item.class] += 1;
        }
        counts
    }
}

/// Reads the labelled photos of `dir`; refuses a folder with fewer than two classes or with a
/// class that has no usable photo.
pub fn scan(dir: &Path, options: ScanOptions) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(Error::Invalid(format!("{} is not a folder", dir.display())));
    }
    let pet_images = dir.join("PetImages");
    let root = if pet_images.is_dir() {
        pet_images
    } else {
        dir.to_path_buf()
    };
    let oxford_images = root.join("images");
    let mut skipped = Vec::new();
    let mut by_class: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();

    let entries = sorted_entries(&root)?;
    let subdirs: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.is_dir() && !is_hidden(p))
        .collect();
    let flat_images = entries.iter().any(|p| p.is_file() && is_image_name(p));
    let layout = if oxford_images.is_dir() || (subdirs.is_empty() && flat_images) {
        let folder = if oxford_images.is_dir() {
            oxford_images
        } else {
            root.clone()
        };
        for path in sorted_entries(&folder)? {
            if !path.is_file() || is_hidden(&path) {
                continue;
            }
            let Some(breed) = oxford_class(&path) else {
                skipped.push(Skipped {
                    path,
                    reason: "no class in the name (expected Breed_123.jpg)".into(),
                });
                continue;
            };
            let class = if options.cats_vs_dogs {
                if breed.starts_with(char::is_uppercase) {
                    "cat"
                } else {
                    "dog"
                }
                .to_string()
            } else {
                breed
            };
            by_class.entry(class).or_default().push(path);
        }
        Layout::OxfordPets
    } else {
        read_class_folders(&root, &subdirs, &mut by_class, &mut skipped)?;
        Layout::ClassFolders
    };

    let (classes, items) = label(by_class, &root, &mut skipped)?;
    if classes.len() < 2 {
        return Err(Error::Invalid(format!(
            "{} has {} class{}: training a classifier needs at least two (class sub-folders, \
             or Oxford-IIIT Pet's images/Breed_123.jpg)",
            root.display(),
            classes.len(),
            if classes.len() == 1 { "" } else { "es" }
        )));
    }
    Ok(Dataset {
        root,
        layout,
        classes,
        items,
        skipped,
    })
}

/// What a path leads to, links followed: (device, inode) on Unix, the canonical path
/// elsewhere. Two paths with the same id are the same folder or the same file.
#[cfg(unix)]
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(_path: &Path, meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
type FileId = PathBuf;

#[cfg(not(unix))]
fn file_id(path: &Path, _meta: &std::fs::Metadata) -> FileId {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A folder that no walk below a class folder may enter.
enum Fence {
    /// The dataset folder or one above it: entering it would take in every class again.
    Dataset,
    /// A class folder, walked as its own class.
    Class(String),
}

impl Fence {
    fn reason(&self) -> String {
        match self {
            Self::Dataset => {
                "a link back to the dataset folder or one above it (a loop): not followed".into()
            }
            Self::Class(name) => format!(
                "a link to the class folder '{name}': not followed (its photos stay in \
                 '{name}')"
            ),
        }
    }
}

/// The files of each class folder of `root` (sorted, any depth) into `by_class`. Links are
/// followed, but a walk never enters a folder twice (so two links to `.` cost two skips, not
/// an exponential walk), nor the dataset folder or one above it, nor another class folder.
fn read_class_folders(
    root: &Path,
    subdirs: &[&PathBuf],
    by_class: &mut BTreeMap<String, Vec<PathBuf>>,
    skipped: &mut Vec<Skipped>,
) -> Result<()> {
    let mut fences: HashMap<FileId, Fence> = HashMap::new();
    let canonical = std::fs::canonicalize(root)
        .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", root.display())))?;
    for folder in canonical.ancestors() {
        if let Ok(meta) = std::fs::metadata(folder) {
            fences.insert(file_id(folder, &meta), Fence::Dataset);
        }
    }
    // Real folders claim their identity before links to them do, whatever the names' order.
    let is_link = |dir: &Path| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_symlink());
    let (links, real): (Vec<&PathBuf>, Vec<&PathBuf>) =
        subdirs.iter().copied().partition(|d| is_link(d));
    let mut classes = Vec::new();
    for dir in real.into_iter().chain(links) {
        let name = dir.file_name().map(class_name).unwrap_or_default();
        let meta = std::fs::metadata(dir)
            .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", dir.display())))?;
        let id = file_id(dir, &meta);
        let reason = match fences.get(&id) {
            Some(Fence::Class(other)) => Some(format!(
                "the same folder as class '{other}' (a link): left out"
            )),
            Some(fence) => Some(fence.reason()),
            None if by_class.contains_key(&name) => Some(format!(
                "its name is not UTF-8 and reads '{name}', as another class folder's does: \
                 rename one of them"
            )),
            None => None,
        };
        if let Some(reason) = reason {
            skipped.push(Skipped {
                path: dir.clone(),
                reason,
            });
            continue;
        }
        if dir.file_name().is_some_and(|n| n.to_str().is_none()) {
            tracing::warn!(folder = %dir.display(), "a class name that is not UTF-8: '{name}'");
        }
        by_class.insert(name.clone(), Vec::new());
        classes.push((name.clone(), dir));
        fences.insert(id, Fence::Class(name));
    }
    for (name, dir) in classes {
        let mut visited = HashSet::new();
        let files = by_class.entry(name).or_default();
        let entries = sorted_entries(dir)?;
        walk(entries, &fences, &mut visited, files, skipped);
    }
    Ok(())
}

/// Every file among `entries` and below them (sorted, hidden ones left out); folders that
/// cannot be entered or must not be (see [`read_class_folders`]) go to `skipped`.
fn walk(
    entries: Vec<PathBuf>,
    fences: &HashMap<FileId, Fence>,
    visited: &mut HashSet<FileId>,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<Skipped>,
) {
    for path in entries {
        if is_hidden(&path) {
            continue;
        }
        // A dangling link or an unreadable entry is passed on: `usable` says why it is not.
        let Some(meta) = std::fs::metadata(&path).ok().filter(|m| m.is_dir()) else {
            out.push(path);
            continue;
        };
        let id = file_id(&path, &meta);
        let refusal = match fences.get(&id) {
            Some(fence) => Some(fence.reason()),
            None if visited.contains(&id) => {
                Some("a second way into a folder already read (a link): not followed".into())
            }
            None => None,
        };
        if let Some(reason) = refusal {
            skipped.push(Skipped { path, reason });
            continue;
        }
        visited.insert(id);
        match read_sorted(&path) {
            Ok(children) => walk(children, fences, visited, out, skipped),
            Err(e) => skipped.push(Skipped {
                path,
                reason: format!("cannot read the folder: {e}"),
            }),
        }
    }
}

/// The classes of `by_class` and their photos, each file once: a file reached twice in one
/// class (a link, a hard link) is counted once, and one reached from two classes is left out
/// of both, since its label is unknown (it would also land in training and validation).
fn label(
    by_class: BTreeMap<String, Vec<PathBuf>>,
    root: &Path,
    skipped: &mut Vec<Skipped>,
) -> Result<(Vec<String>, Vec<Item>)> {
    let classes: Vec<String> = by_class.keys().cloned().collect();
    let mut found = Vec::new();
    for (class, paths) in by_class.into_values().enumerate() {
        for path in paths {
            match usable(&path) {
                Ok(photo) => found.push((class, path, photo)),
                Err(reason) => skipped.push(Skipped { path, reason }),
            }
        }
    }
    // The first occurrence of each file, and the classes that reach it.
    let mut first: HashMap<&FileId, (usize, Vec<usize>)> = HashMap::new();
    for (i, (class, _, photo)) in found.iter().enumerate() {
        let (_, reached) = first.entry(&photo.id).or_insert((i, Vec::new()));
        if !reached.contains(class) {
            reached.push(*class);
        }
    }
    let mut keep = vec![false; found.len()];
    let mut refusals = Vec::new();
    for (i, (_, _, photo)) in found.iter().enumerate() {
        let (first_i, reached) = &first[&photo.id];
        if reached.len() > 1 {
            let names: Vec<String> = reached
                .iter()
                .map(|&c| format!("'{}'", classes[c]))
                .collect();
            refusals.push((
                i,
                format!(
                    "the same file is in classes {} (through a link): left out of all of them",
                    names.join(" and ")
                ),
            ));
        } else if *first_i != i {
            refusals.push((
                i,
                format!(
                    "the same file as {} (a link): counted once",
                    found[*first_i].1.display()
                ),
            ));
        } else {
            keep[i] = true;
        }
    }
    for (i, reason) in refusals {
        skipped.push(Skipped {
            path: found[i].1.clone(),
            reason,
        });
    }
    let items: Vec<Item> = found
        .into_iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|((class, path, photo), _)| Item {
            path,
            class,
            size: photo.size,
            mtime_ns: photo.mtime_ns,
        })
        .collect();
    let mut counts = vec![0usize; classes.len()];
    for item in &items {
        counts[item.class] += 1;
    }
    if let Some(empty) = counts.iter().position(|&n| n == 0) {
        return Err(Error::Invalid(format!(
            "class '{}' in {} has no usable photos",
            classes[empty],
            root.display()
        )));
    }
    Ok((classes, items))
}

/// A class folder's name as text. Bytes that are not UTF-8 are written `\xE9`, so that two
/// names differing only there stay two classes (a lossy conversion would merge them).
fn class_name(name: &OsStr) -> String {
    if let Some(text) = name.to_str() {
        return text.to_string();
    }
    let mut out = String::new();
    for chunk in name.as_encoded_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02X}"));
        }
    }
    out
}

/// Oxford-IIIT Pet's class of a file: the stem up to its last `_`, if that is followed by
/// digits.
fn oxford_class(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let (class, number) = stem.rsplit_once('_')?;
    (!class.is_empty() && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .then(|| class.to_string())
}

/// The entries of `dir`, sorted by name.
fn read_sorted(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect::<Vec<_>>();
    entries.sort();
    Ok(entries)
}

/// [`read_sorted`], its error naming the folder.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    read_sorted(dir).map_err(|e| Error::Invalid(format!("cannot read {}: {e}", dir.display())))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// What the scan keeps of a photo's metadata.
struct Photo {
    size: u64,
    mtime_ns: u128,
    id: FileId,
}

/// Size, modification time and identity of a file that may be a photo, or why it is not.
fn usable(path: &Path) -> std::result::Result<Photo, String> {
    if !is_image_name(path) {
        return Err("not an image file (by its extension)".into());
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("unreadable: {e}"))?;
    // A FIFO or device reports 0 bytes too; say what it is.
    if let Some(why) = crate::input::not_a_file(&meta) {
        return Err(why.into());
    }
    if meta.len() == 0 {
        return Err("empty file (0 bytes)".into());
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(Photo {
        size: meta.len(),
        mtime_ns,
        id: file_id(path, &meta),
    })
}

#[cfg(test)]
mod tests;
