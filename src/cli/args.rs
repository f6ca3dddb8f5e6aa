//! What the image commands share: the early check of an output path, the default output
//! name beside a photo, and a class named by the user.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::labels::find_class;
use crate::output::check_output;

/// Refuses `output` before any work: [`check_output`] against `inputs`, and a folder that does
/// not exist, which would otherwise fail only once every step has run.
pub(super) fn check_output_early(output: &Path, inputs: &[&Path]) -> anyhow::Result<()> {
    check_output(output, inputs)?;
    let folder = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!(
            "cannot write {}: the folder {} does not exist",
            output.display(),
            folder.display()
        );
    }
    Ok(())
}

/// `output` when given, else `STEM_SUFFIX.png` in the current folder for `image`.
pub(super) fn output_beside(output: &Option<PathBuf>, image: &Path, suffix: &str) -> PathBuf {
    output.clone().unwrap_or_else(|| {
        let stem = image
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("{stem}_{suffix}.png"))
    })
}

/// A class named by the user, by name or index.
pub(super) fn class_of(name: &str) -> anyhow::Result<usize> {
    find_class(name).with_context(|| {
        format!("no ImageNet class matches '{name}' (give a name or an index 0-999)")
    })
}
