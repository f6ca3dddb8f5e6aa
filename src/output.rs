//! Writing what the user asked for without losing what they have.
//!
//! An output is refused when it is one of the job's inputs (the same file by any path: a
//! second name, a symlink) or exists as something other than a regular file (a folder, a
//! FIFO, a device). It is written to a hidden temp file beside the target, flushed to disk and
//! renamed over it only once complete, so a full disk or a crash leaves the previous file as
//! it was, and no temp file behind.
//!
//! Windows refuses to replace a file another program holds open (an image viewer, Excel):
//! then the target is left as it was, the new file is kept beside it (`NAME.new.png`) and the
//! error says both, so neither the old file nor the job's result is lost.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn refuse(path: &Path, reason: impl Into<String>) -> Error {
    Error::Output {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
    }
}

/// Whether `path` ends in a separator (`out/`): it names a folder, whatever exists there.
fn ends_in_separator(path: &Path) -> bool {
    let text = path.as_os_str().to_string_lossy();
    text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR)
}

/// Refuses `output` when it is one of `inputs`, exists and is not a regular file, names a
/// folder (`out/`, `..`), or lies in a "folder" that is a file. A missing folder is left to
/// the caller: some create it (a head's folder), others refuse it.
pub fn check_output(output: &Path, inputs: &[&Path]) -> Result<()> {
    if output.as_os_str().is_empty() {
        return Err(refuse(output, "an empty output path"));
    }
    if ends_in_separator(output) {
        return Err(refuse(
            output,
            "ends in a path separator, so it names a folder; choose a file path",
        ));
    }
    if output.file_name().is_none() {
        return Err(refuse(output, "names a folder; choose a file path"));
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if fs::metadata(parent).is_ok_and(|m| !m.is_dir()) {
            return Err(refuse(
                output,
                format!("{} is not a folder", parent.display()),
            ));
        }
    }
    if let Some(input) = inputs.iter().find(|input| same_file(output, input)) {
        return Err(refuse(
            output,
            format!(
                "is an input of this job ({}); choose another output",
                input.display()
            ),
        ));
    }
    match fs::metadata(output) {
        Ok(meta) if !meta.is_file() => Err(refuse(
            output,
            "exists and is not a regular file (a folder, FIFO or device); choose a file path",
        )),
        _ => Ok(()),
    }
}

/// The hidden temp file `.NAME.PID.tmp` beside `output`.
fn temp_beside(output: &Path) -> Result<PathBuf> {
    let name = output
        .file_name()
        .ok_or_else(|| refuse(output, "has no file name"))?;
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".{}.tmp", std::process::id()));
    Ok(output.with_file_name(temp))
}

/// Why `output` cannot be replaced now, if so. On Windows: another program holds it open
/// without sharing delete access, which a rename over it needs; opening it for delete with
/// every sharing flag fails exactly then. Elsewhere an open file never stops a rename.
pub(crate) fn held_open(output: &Path) -> Option<String> {
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const DELETE: u32 = 0x0001_0000;
        const SHARE_ALL: u32 = 0x1 | 0x2 | 0x4;
        const ERROR_SHARING_VIOLATION: i32 = 32;
        const ERROR_LOCK_VIOLATION: i32 = 33;
        if !output.is_file() {
            return None;
        }
        let probe = fs::OpenOptions::new()
            .access_mode(DELETE)
            .share_mode(SHARE_ALL)
            .open(output);
        if let Err(e) = probe {
            if matches!(
                e.raw_os_error(),
                Some(ERROR_SHARING_VIOLATION | ERROR_LOCK_VIOLATION)
            ) {
                return Some(
                    "is open in another program, and Windows does not replace a file in use".into(),
                );
            }
        }
        None
    }
    #[cfg(not(windows))]
    {
        let _ = output;
        None
    }
}

/// Free names beside `outputs` for finished files that could not replace them, one tag for
/// all (so a head and its description stay a pair): `NAME.new.EXT`, else `NAME.new-2.EXT`, ...
fn kept_names(outputs: &[&Path]) -> Vec<PathBuf> {
    let named = |n: usize| -> Vec<PathBuf> {
        let tag = if n == 1 {
            "new".to_string()
        } else {
            format!("new-{n}")
        };
        outputs
            .iter()
            .map(|output| {
                let stem = output
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ext = output
                    .extension()
                    .map(|e| format!(".{}", e.to_string_lossy()))
                    .unwrap_or_default();
                output.with_file_name(format!("{stem}.{tag}{ext}"))
            })
            .collect()
    };
    (1..1000)
        .map(named)
        .find(|names| names.iter().all(|p| fs::symlink_metadata(p).is_err()))
        .unwrap_or_else(|| named(1))
}

/// Refuses to replace outputs some program holds open: each finished temp file is moved to
/// its [`kept_names`] instead, and the error names the held file and where the new one went.
fn keep_if_held(pairs: &[(&Path, &Path)]) -> Result<()> {
    let Some((output, why)) = pairs
        .iter()
        .find_map(|(output, _)| held_open(output).map(|why| (*output, why)))
    else {
        return Ok(());
    };
    let targets: Vec<&Path> = pairs.iter().map(|(target, _)| *target).collect();
    let mut kept = Vec::new();
    for ((_, temp), keep) in pairs.iter().zip(kept_names(&targets)) {
        if fs::rename(temp, &keep).is_ok() {
            kept.push(keep.display().to_string());
        }
    }
    let saved = if kept.is_empty() {
        "the new file could not be kept either".to_string()
    } else {
        format!("the new file is saved beside it as {}", kept.join(" and "))
    };
    Err(refuse(
        output,
        format!("{why}: it is unchanged, and {saved}; close it there and save again"),
    ))
}

/// Writes `output` through `write` into a temp file beside it, renamed over it once complete;
/// `output` is first checked with [`check_output`] against `inputs`. On any failure the temp
/// file is removed and an existing `output` is left untouched.
pub fn write_atomic(
    output: &Path,
    inputs: &[&Path],
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    check_output(output, inputs)?;
    let temp = temp_beside(output)?;
    let io = |e: std::io::Error| refuse(output, e.to_string());
    let result = (|| {
        let mut file = BufWriter::new(File::create(&temp).map_err(io)?);
        // A bare I/O error (a full disk) says nothing of the file: it gets the output's name.
        write(&mut file).map_err(|e| match e {
            Error::Io(e) => io(e),
            other => other,
        })?;
        let file = file.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        keep_if_held(&[(output, &temp)])?;
        fs::rename(&temp, output).map_err(io)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Writes several outputs that belong together (a head's weights and its description): each
/// `outputs[i]` is written by `write(i, temp)` into its own temp file beside it, and only when
/// every one is complete and flushed to disk are they renamed over their targets, in order.
/// Each is first checked with [`check_output`] against `inputs`; on any failure every temp
/// file is removed, and the error names the output it concerns.
pub fn write_atomic_files(
    outputs: &[&Path],
    inputs: &[&Path],
    mut write: impl FnMut(usize, &Path) -> Result<()>,
) -> Result<()> {
    for output in outputs {
        check_output(output, inputs)?;
    }
    let temps = outputs
        .iter()
        .map(|output| temp_beside(output))
        .collect::<Result<Vec<_>>>()?;
    let named = |output: &Path, e: Error| match e {
        e @ Error::Output { .. } => e,
        e => refuse(output, e.to_string()),
    };
    let result = (|| {
        for (i, (output, temp)) in outputs.iter().zip(&temps).enumerate() {
            write(i, temp).map_err(|e| named(output, e))?;
            // Opened for writing: Windows flushes (FlushFileBuffers) only a handle that may
            // write, and refuses a read-only one with "Access denied".
            fs::OpenOptions::new()
                .write(true)
                .open(temp)
                .and_then(|f| f.sync_all())
                .map_err(|e| refuse(output, e.to_string()))?;
        }
        // All or none: one held file keeps every new file beside its target.
        let pairs: Vec<(&Path, &Path)> = outputs
            .iter()
            .zip(&temps)
            .map(|(o, t)| (*o, t.as_path()))
            .collect();
        keep_if_held(&pairs)?;
        for (output, temp) in outputs.iter().zip(&temps) {
            fs::rename(temp, output).map_err(|e| refuse(output, e.to_string()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for temp in &temps {
            let _ = fs::remove_file(temp);
        }
    }
    result
}

/// Saves `image` as a PNG at `output` (see [`write_atomic`]).
pub fn save_png(output: &Path, inputs: &[&Path], image: &image::DynamicImage) -> Result<()> {
    write_atomic(output, inputs, |w| {
        image
            .write_to(&mut *w, image::ImageFormat::Png)
            .map_err(|e| refuse(output, e.to_string()))?;
        w.flush().map_err(|e| refuse(output, e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> image::DynamicImage {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4, 3, image::Rgb([9, 8, 7])))
    }

    #[test]
    fn an_input_is_never_an_output_by_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("v.png");
        fs::write(&photo, b"the user's photo").unwrap();
        let err = save_png(&photo, &[&photo], &png()).unwrap_err();
        assert!(err.to_string().contains("is an input"), "{err}");
        // Through another path to the same file, and through a symlink.
        let other = dir.path().join(".").join("v.png");
        assert!(save_png(&other, &[&photo], &png()).is_err());
        #[cfg(unix)]
        {
            let link = dir.path().join("link.png");
            std::os::unix::fs::symlink(&photo, &link).unwrap();
            assert!(save_png(&link, &[&photo], &png()).is_err());
        }
        assert_eq!(fs::read(&photo).unwrap(), b"the user's photo");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            if cfg!(unix) { 2 } else { 1 }
        );
    }

    #[test]
    fn folders_and_fifos_are_refused_and_files_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let err = save_png(dir.path(), &[], &png()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        #[cfg(unix)]
        {
            let fifo = dir.path().join("fifo.png");
            let status = std::process::Command::new("mkfifo").arg(&fifo).status();
            if status.is_ok_and(|s| s.success()) {
                assert!(save_png(&fifo, &[], &png()).is_err());
            }
        }
        let out = dir.path().join("out.png");
        fs::write(&out, b"old").unwrap();
        save_png(&out, &[], &png()).unwrap();
        assert_eq!(image::open(&out).unwrap().width(), 4);
        // A failing writer leaves the old file and no temp file.
        let err = write_atomic(&out, &[], |_| Err(Error::Invalid("disk full".into())));
        assert!(err.is_err());
        assert_eq!(image::open(&out).unwrap().width(), 4);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert!(names
            .iter()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
    }

    /// Every way a write can fail names the output once, and leaves no temp file behind.
    #[test]
    fn write_failures_name_the_output_once_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let count = |text: &str, needle: &str| text.matches(needle).count();
        // The "folder" is a file: refused before anything is written.
        let file = dir.path().join("notes.txt");
        fs::write(&file, b"notes").unwrap();
        let inside = file.join("out.png");
        let err = save_png(&inside, &[], &png()).unwrap_err().to_string();
        assert!(err.contains("notes.txt is not a folder"), "{err}");
        // A path ending in a separator names a folder, even one that does not exist yet.
        let folder = format!("{}/new/", dir.path().display());
        let err = save_png(Path::new(&folder), &[], &png())
            .unwrap_err()
            .to_string();
        assert!(err.contains("names a folder"), "{err}");
        let err = save_png(Path::new(".."), &[], &png())
            .unwrap_err()
            .to_string();
        assert!(err.contains("names a folder"), "{err}");
        // A full disk while writing: a bare I/O error from the writer gets the path.
        let out = dir.path().join("split.json");
        let full = || std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left");
        let err = write_atomic(&out, &[], |_| Err(full().into()))
            .unwrap_err()
            .to_string();
        assert_eq!(count(&err, "split.json"), 1, "{err}");
        assert_eq!(count(&err, "No space left"), 1, "{err}");
        // Several files as one: the second failing leaves neither, and names the second.
        let (a, b) = (dir.path().join("h.safetensors"), dir.path().join("h.json"));
        let err = write_atomic_files(&[&a, &b], &[], |i, temp| {
            if i == 1 {
                return Err(full().into());
            }
            Ok(fs::write(temp, b"weights")?)
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with(&format!("output {}", b.display())), "{err}");
        assert!(!a.exists() && !b.exists());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only notes.txt is left: {left:?}");
        write_atomic_files(&[&a, &b], &[], |i, temp| Ok(fs::write(temp, [i as u8])?)).unwrap();
        assert_eq!(
            (fs::read(&a).unwrap(), fs::read(&b).unwrap()),
            (vec![0], vec![1])
        );
    }

    #[test]
    fn kept_files_take_the_first_free_names_beside_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dream.png");
        assert_eq!(kept_names(&[&out]), [dir.path().join("dream.new.png")]);
        fs::write(dir.path().join("dream.new.png"), b"earlier").unwrap();
        assert_eq!(kept_names(&[&out]), [dir.path().join("dream.new-2.png")]);
        assert_eq!(
            kept_names(&[&dir.path().join("notes")]),
            [dir.path().join("notes.new")]
        );
        // A head and its description keep one tag, though only one name was taken.
        let (a, b) = (dir.path().join("h.safetensors"), dir.path().join("h.json"));
        fs::write(dir.path().join("h.new.json"), b"earlier").unwrap();
        assert_eq!(
            kept_names(&[&a, &b]),
            [
                dir.path().join("h.new-2.safetensors"),
                dir.path().join("h.new-2.json")
            ]
        );
        assert_eq!(held_open(&out), None, "nothing holds a missing file");
    }

    /// Windows refuses to replace a file another handle holds without delete sharing (how an
    /// image viewer or Excel holds it): the old file stays, the new one is kept beside it.
    #[cfg(windows)]
    #[test]
    fn a_file_held_open_is_left_as_it_was_and_the_new_one_kept_beside_it() {
        use std::os::windows::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("h.safetensors"), dir.path().join("h.json"));
        fs::write(&a, b"old weights").unwrap();
        fs::write(&b, b"old description").unwrap();
        let holder = fs::OpenOptions::new()
            .read(true)
            .share_mode(0x1 | 0x2) // read and write, not delete
            .open(&b)
            .unwrap();
        let err = write_atomic_files(&[&a, &b], &[], |i, temp| Ok(fs::write(temp, [i as u8])?))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is open in another program"), "{err}");
        assert!(
            err.contains("h.new.safetensors") && err.contains("h.new.json"),
            "{err}"
        );
        // All or none: neither target changed, both new files kept as a pair.
        assert_eq!(fs::read(&a).unwrap(), b"old weights");
        assert_eq!(fs::read(&b).unwrap(), b"old description");
        assert_eq!(fs::read(dir.path().join("h.new.safetensors")).unwrap(), [0]);
        assert_eq!(fs::read(dir.path().join("h.new.json")).unwrap(), [1]);
        drop(holder);
        let shown = dir.path().join("p.png");
        save_png(&shown, &[], &png()).unwrap();
        let _viewer = fs::OpenOptions::new()
            .read(true)
            .share_mode(0x1)
            .open(&shown)
            .unwrap();
        let err = save_png(&shown, &[], &png()).unwrap_err().to_string();
        assert!(err.contains("p.new.png"), "{err}");
    }
}
