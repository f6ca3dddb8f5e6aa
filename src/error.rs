//! The library's error type: every failure a user, a file or the network can cause, with a
//! message that names the thing that was wrong.

use std::path::PathBuf;

/// Errors of the cnn-explorer library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image file could not be used (unreadable, not an image, truncated, too large).
    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },

    /// A model name that the catalogue does not know.
    #[error("unknown model '{name}' (known models: {known})")]
    UnknownModel { name: String, known: String },

    /// A layer (tap) name that the model does not have.
    #[error("unknown layer '{name}' for {model} (layers: {known})")]
    UnknownLayer {
        name: String,
        model: String,
        known: String,
    },

    /// A weights file that is unreadable, truncated or of another model.
    #[error("weights file {path}: {reason}")]
    Weights { path: PathBuf, reason: String },

    /// No weights file where the model's weights should be.
    #[error(
        "no weights for {model} at {path}; run `cnn-explorer fetch {model}` to download them, \
         or pass --weights FILE"
    )]
    WeightsMissing { model: String, path: PathBuf },

    /// A download that failed (offline, server error, checksum mismatch).
    #[error("downloading {model} failed: {reason}")]
    Download { model: String, reason: String },

    /// A device that this build or this machine cannot provide.
    #[error("device: {0}")]
    Device(String),

    /// An invalid argument (class index out of range, bad option value, ...).
    #[error("{0}")]
    Invalid(String),

    /// An output that would overwrite an input or something other than a regular file, or
    /// that could not be written.
    #[error("output {path}: {reason}")]
    Output { path: PathBuf, reason: String },

    /// The user cancelled the job.
    #[error("cancelled")]
    Cancelled,

    /// A tensor operation failed (without the backtrace candle attaches under
    /// `RUST_BACKTRACE`: see [`without_backtrace`]).
    #[error(transparent)]
    Candle(candle_core::Error),

    /// A file-system operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(without_backtrace(e))
    }
}

/// The message a panic was raised with (`panic!`'s text), if it has one.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
}

/// `e` without the stack traces candle captures into its errors when `RUST_BACKTRACE` is set
/// (each would print some twenty frames inside the message a user reads); the context and
/// path candle adds are kept.
pub fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    use candle_core::Error as E;
    match e {
        E::WithBacktrace { inner, .. } => without_backtrace(*inner),
        E::WithPath { inner, path } => E::WithPath {
            inner: Box::new(without_backtrace(*inner)),
            path,
        },
        E::Context { inner, context } => E::Context {
            inner: Box::new(without_backtrace(*inner)),
            context,
        },
        other => other,
    }
}

impl Error {
    pub(crate) fn image(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Image {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn weights(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::Weights {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under `RUST_BACKTRACE=1` candle wraps its errors in a backtrace; ours never show it.
    #[test]
    fn candle_errors_lose_their_backtrace_and_keep_their_context() {
        let inner = candle_core::Error::Msg("shape mismatch for fc.weight".into());
        let traced = candle_core::Error::WithBacktrace {
            inner: Box::new(inner),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        }
        .context("loading the head");
        assert!(traced.to_string().lines().count() > 3, "{traced}");
        let ours = Error::from(traced).to_string();
        assert_eq!(ours, "loading the head\nshape mismatch for fc.weight");
    }
}
