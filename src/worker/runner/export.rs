//! The worker's export job: the head in use with the loaded backbone, as ONNX or safetensors.

use std::path::Path;

use super::Runner;
use crate::error::{Error, Result};
use crate::export::{export_head, ExportReport};

impl Runner {
    /// Writes the head in use with the loaded backbone to `path` (see [`crate::export`]),
    /// never over the head's own files or the model's weights.
    pub(super) fn export(&self, path: &Path) -> Result<ExportReport> {
        let model = self.loaded()?;
        let active = self.head.as_ref().ok_or_else(|| {
            Error::Invalid("no head to export: train or load one in the Train tab".into())
        })?;
        export_head(
            model,
            &active.head,
            &active.info,
            &active.summary.path,
            path,
        )
    }
}
