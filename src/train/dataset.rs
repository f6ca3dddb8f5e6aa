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

use std::collections::BTreeMap;
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
        for class_dir in subdirs {
            let name = class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let files = by_class.entry(name).or_default();
            collect_files(class_dir, files)?;
        }
        Layout::ClassFolders
    };

    let classes: Vec<String> = by_class.keys().cloned().collect();
    let mut items = Vec::new();
    for (class, (name, paths)) in by_class.into_iter().enumerate() {
        let before = items.len();
        for path in paths {
            match usable(&path) {
                Ok((size, mtime_ns)) => items.push(Item {
                    path,
                    class,
                    size,
                    mtime_ns,
                }),
                Err(reason) => skipped.push(Skipped { path, reason }),
            }
        }
        if items.len() == before {
            return Err(Error::Invalid(format!(
                "class '{name}' in {} has no usable photos",
                root.display()
            )));
        }
    }
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

/// Oxford-IIIT Pet's class of a file: the stem up to its last `_`, if that is followed by
/// digits.
fn oxford_class(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let (class, number) = stem.rsplit_once('_')?;
    (!class.is_empty() && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .then(|| class.to_string())
}

/// The entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect::<Vec<_>>();
    entries.sort();
    Ok(entries)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Every file below `dir` (sorted, hidden ones left out).
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for path in sorted_entries(dir)? {
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Size and modification time of a file that may be a photo, or why it is not.
fn usable(path: &Path) -> std::result::Result<(u64, u128), String> {
    if !is_image_name(path) {
        return Err("not an image file (by its extension)".into());
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("unreadable: {e}"))?;
    if meta.len() == 0 {
        return Err("empty file (0 bytes)".into());
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok((meta.len(), mtime_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn class_folders_with_bad_files_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let pets = dir.path().join("PetImages");
        touch(&pets.join("Cat/1.jpg"), b"x");
        touch(&pets.join("Cat/2.jpg"), b"");
        touch(&pets.join("Cat/Thumbs.db"), b"x");
        touch(&pets.join("Dog/a/3.png"), b"x");
        touch(&pets.join("Dog/.hidden.jpg"), b"x");
        let d = scan(dir.path(), ScanOptions::default()).unwrap();
        assert_eq!(d.layout, Layout::ClassFolders);
        assert_eq!(d.classes, ["Cat", "Dog"]);
        assert_eq!(d.class_counts(), [1, 1]);
        assert_eq!(d.skipped.len(), 2, "{:?}", d.skipped);
    }

    #[test]
    fn oxford_names_and_cat_dog_grouping() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "Abyssinian_1.jpg",
            "Abyssinian_2.jpg",
            "great_pyrenees_10.jpg",
            "README",
        ] {
            touch(&dir.path().join("images").join(name), b"x");
        }
        let d = scan(dir.path(), ScanOptions::default()).unwrap();
        assert_eq!(d.layout, Layout::OxfordPets);
        assert_eq!(d.classes, ["Abyssinian", "great_pyrenees"]);
        assert_eq!(d.class_counts(), [2, 1]);
        assert_eq!(d.skipped.len(), 1);
        let d = scan(dir.path(), ScanOptions { cats_vs_dogs: true }).unwrap();
        assert_eq!(d.classes, ["cat", "dog"]);
    }

    #[test]
    fn refuses_one_class_an_empty_class_and_an_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        let err = scan(dir.path(), ScanOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("0 classes"), "{err}");
        touch(&dir.path().join("cat/1.jpg"), b"x");
        let err = scan(dir.path(), ScanOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 class:"), "{err}");
        touch(&dir.path().join("dog/1.jpg"), b"");
        let err = scan(dir.path(), ScanOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("class 'dog'") && err.contains("no usable"),
            "{err}"
        );
        let err = scan(&dir.path().join("nope"), ScanOptions::default()).unwrap_err();
        assert!(err.to_string().contains("not a folder"));
    }
}
