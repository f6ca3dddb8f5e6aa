//! Where the app keeps its files on this computer: weights, trained heads, caches and the
//! window's settings, each in the operating system's conventional place.
//!
//! | | Linux | Windows | macOS |
//! |---|---|---|---|
//! | weights | `~/.local/share/cnn-explorer/weights` | `%LOCALAPPDATA%\cnn-explorer\data\weights` | `~/Library/Application Support/cnn-explorer/weights` |
//! | heads | `~/.local/share/cnn-explorer/heads` | `%APPDATA%\cnn-explorer\data\heads` | `~/Library/Application Support/cnn-explorer/heads` |
//! | caches | `~/.cache/cnn-explorer` | `%LOCALAPPDATA%\cnn-explorer\cache` | `~/Library/Caches/cnn-explorer` |
//! | settings | `~/.local/share/cnn-explorer/app.ron` | `%APPDATA%\cnn-explorer\data\app.ron` | `~/Library/Application Support/cnn-explorer/app.ron` |
//!
//! Weights (hundreds of MB, downloadable again) stay on this machine (`%LOCALAPPDATA%`, not
//! the roaming profile); heads and settings are the user's own work and roam. The settings are
//! where eframe kept them before this module existed, so nothing saved is lost. On Linux the
//! XDG variables (`XDG_DATA_HOME`, `XDG_CACHE_HOME`) move the folders as usual.
//!
//! Each place has an override, used when set and non-empty: `CNN_EXPLORER_WEIGHTS_DIR`,
//! `CNN_EXPLORER_HEADS_DIR`, `CNN_EXPLORER_CACHE_DIR` (features, galleries and dataset
//! examples in its `features`, `gallery` and `examples` folders) and `CNN_EXPLORER_STATE_DIR`
//! (`app.ron` inside). A binary run from its own source checkout (`cargo run`, `cargo test`)
//! uses the checkout's `weights/` folder when it exists, so a developer's downloads and the
//! tests share one copy; a copied or installed binary never does.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The folder names under the project's folders.
const APP: &str = "cnn-explorer";

/// Overrides, by environment variable.
pub const WEIGHTS_VAR: &str = "CNN_EXPLORER_WEIGHTS_DIR";
pub const HEADS_VAR: &str = "CNN_EXPLORER_HEADS_DIR";
pub const CACHE_VAR: &str = "CNN_EXPLORER_CACHE_DIR";
pub const STATE_VAR: &str = "CNN_EXPLORER_STATE_DIR";

/// Every place the app writes to, resolved once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Places {
    /// Downloaded weights files (`efficientnet-lite0.pth`, ...).
    pub weights: PathBuf,
    /// Where trained heads are saved unless the user picks another file.
    pub heads: PathBuf,
    /// The caches' root: `features`, `gallery` and `examples` below it.
    pub cache: PathBuf,
    /// The window's saved settings file (`app.ron`).
    pub settings: PathBuf,
}

/// The OS's folders for this app, before any override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conventional {
    /// Machine-local data (weights): `%LOCALAPPDATA%\cnn-explorer\data` on Windows.
    pub local_data: PathBuf,
    /// The user's roaming data (heads, settings): `%APPDATA%\cnn-explorer\data` on Windows.
    pub data: PathBuf,
    /// Caches: `~/Library/Caches/cnn-explorer` on macOS.
    pub cache: PathBuf,
}

impl Conventional {
    /// This OS's folders, from the user's profile (`None` without a home folder, as for a
    /// service account).
    pub fn of_this_os() -> Option<Self> {
        let dirs = directories::ProjectDirs::from("", "", APP)?;
        Some(Self {
            local_data: dirs.data_local_dir().to_path_buf(),
            data: dirs.data_dir().to_path_buf(),
            cache: dirs.cache_dir().to_path_buf(),
        })
    }

    /// This OS's folders, else (no home folder) ones relative to the current folder.
    fn or_here() -> Self {
        Self::of_this_os().unwrap_or_else(|| {
            tracing::warn!("no home folder: keeping files under ./{APP}-data");
            Self::here()
        })
    }

    /// Folders relative to the current one, when the OS names no home folder.
    fn here() -> Self {
        let base = PathBuf::from(format!("{APP}-data"));
        Self {
            local_data: base.clone(),
            data: base.clone(),
            cache: base.join("cache"),
        }
    }
}

impl Places {
    /// The places for this process: overrides from the environment, else the checkout's
    /// `weights/` (a binary of this checkout only), else the OS's conventions.
    pub fn current() -> Self {
        Self::resolve(
            |name| std::env::var_os(name),
            &Conventional::or_here(),
            checkout_weights().as_deref(),
        )
    }

    /// The places given how to read a variable, the OS's folders and the checkout's weights
    /// folder (when this binary was built from a checkout that has one).
    pub fn resolve(
        var: impl Fn(&str) -> Option<OsString>,
        conventional: &Conventional,
        checkout_weights: Option<&Path>,
    ) -> Self {
        let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Self {
            weights: set(WEIGHTS_VAR)
                .or_else(|| checkout_weights.map(Path::to_path_buf))
                .unwrap_or_else(|| conventional.local_data.join("weights")),
            heads: set(HEADS_VAR).unwrap_or_else(|| conventional.data.join("heads")),
            cache: set(CACHE_VAR).unwrap_or_else(|| conventional.cache.clone()),
            settings: set(STATE_VAR)
                .unwrap_or_else(|| conventional.data.clone())
                .join("app.ron"),
        }
    }

    /// The training feature caches.
    pub fn features_cache(&self) -> PathBuf {
        self.cache.join("features")
    }

    /// The layer galleries' dreams.
    pub fn gallery_cache(&self) -> PathBuf {
        self.cache.join("gallery")
    }

    /// The layers' dataset examples.
    pub fn examples_cache(&self) -> PathBuf {
        self.cache.join("examples")
    }
}

/// The weights folder when `CNN_EXPLORER_WEIGHTS_DIR` is unset.
pub fn default_weights_dir() -> PathBuf {
    Places::resolve(
        |_| None,
        &Conventional::or_here(),
        checkout_weights().as_deref(),
    )
    .weights
}

/// The checkout's `weights/` folder, when this executable lies inside the checkout it was
/// built from (`target/...`), on the OS it was built for, and the folder exists. Compared
/// after resolving links, so a checkout reached through a symbolic link still counts;
/// returned as cargo named it (a resolved Windows path would print as `\\?\C:\...`).
fn checkout_weights() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A cross-built binary carries the build machine's path: `/work/...` is not absolute on
    // Windows (no drive), and joined with `\weights` it would print with both separators.
    if !manifest.is_absolute() {
        return None;
    }
    let checkout = manifest.canonicalize().ok()?;
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let weights = manifest.join("weights");
    (exe.starts_with(checkout.join("target")) && weights.is_dir()).then_some(weights)
}

#[cfg(test)]
mod tests;
