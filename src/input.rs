//! Reading the user's files as regular files only: a FIFO would block forever, a device such
//! as `/dev/zero` never ends, and a huge (or sparse) file would be read whole before its
//! format is even looked at. So the file's type and size are checked from its metadata first,
//! and no more than the limit is ever read (a file that grows meanwhile is cut off too).

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

/// Largest image file read: 1 GiB (a 100-megapixel PNG of noise is about 300 MB).
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// Opens the regular file at `path` for reading if it holds at most `max_bytes`: its file and
/// length. The error is a reason without the file name.
///
/// The type is checked from the metadata before opening (opening a FIFO blocks until a writer
/// comes), and again on the opened file, which on Linux and macOS is opened non-blocking, so a
/// FIFO put in its place in between is refused too instead of waited on.
pub fn open_regular(path: &Path, max_bytes: u64) -> Result<(File, u64), String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    check_regular(&meta, max_bytes)?;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // No effect on a regular file's reads.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    check_regular(&meta, max_bytes)?;
    Ok((file, meta.len()))
}

/// Why what `meta` describes cannot be read as a file (a folder, a FIFO, a device), if so.
pub(crate) fn not_a_file(meta: &fs::Metadata) -> Option<&'static str> {
    match meta {
        m if m.is_file() => None,
        m if m.is_dir() => Some("is a folder, not a file"),
        _ => Some("is not a regular file (a FIFO, socket or device)"),
    }
}

fn check_regular(meta: &fs::Metadata, max_bytes: u64) -> Result<(), String> {
    if let Some(why) = not_a_file(meta) {
        return Err(why.into());
    }
    if meta.len() > max_bytes {
        return Err(format!(
            "the file is {:.1} MB, above the limit of {:.0} MB",
            meta.len() as f64 / 1e6,
            max_bytes as f64 / 1e6
        ));
    }
    Ok(())
}

/// The bytes of the regular file at `path`, at most `max_bytes` of them; the error is a reason
/// without the file name.
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    let (file, len) = open_regular(path, max_bytes)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "the file grew above the limit of {:.0} MB while it was read",
            max_bytes as f64 / 1e6
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.png");
        fs::write(&file, [1u8; 100]).unwrap();
        assert_eq!(read_regular(&file, 100).unwrap().len(), 100);
        assert!(read_regular(&file, 99)
            .unwrap_err()
            .contains("above the limit"));
        assert!(read_regular(dir.path(), 100)
            .unwrap_err()
            .contains("folder"));
        #[cfg(unix)]
        {
            let err = read_regular(Path::new("/dev/zero"), 100).unwrap_err();
            assert!(err.contains("not a regular file"), "{err}");
            let fifo = dir.path().join("fifo.png");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                // Would block forever if it were opened.
                assert!(read_regular(&fifo, 100)
                    .unwrap_err()
                    .contains("not a regular file"));
            }
        }
    }
}
