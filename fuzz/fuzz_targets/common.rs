//! What the fuzz targets share: a scratch folder for the APIs that take a path, and the
//! switches that relax the targets' checks.

// Each target uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This process's scratch folder: in `/dev/shm` where there is one (no disk writes per
/// run), else the temporary folder. One per process, so parallel jobs (`-jobs`, `-fork`)
/// never share files; it is left behind when libFuzzer exits (a few kB).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("cnn-explorer-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the fuzz scratch folder");
        dir
    })
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, bytes).expect("cannot write the fuzz scratch file");
    path
}

/// Whether a non-finite value (NaN, infinity) coming out of a file that loaded counts as a
/// crash. `CNN_FUZZ_ALLOW_NONFINITE=1` turns the check off, to look for other defects while
/// the known one is unfixed.
pub fn check_finite() -> bool {
    static CHECK: OnceLock<bool> = OnceLock::new();
    *CHECK.get_or_init(|| std::env::var_os("CNN_FUZZ_ALLOW_NONFINITE").is_none())
}

/// `CNN_FUZZ_VERBOSE=1` prints what each input did (to check that the seeds reach deep).
pub fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("CNN_FUZZ_VERBOSE").is_some())
}
