//! The worker's export job: the head in use with the loaded backbone, as ONNX or safetensors.

use std::path::Path;

use super::Runner;
use crate::error::{Error, Result};
use crate::export::{export, ExportReport, ExportRequest};

impl Runner {
    /// Writes the head in use with the loaded backbone to `path` (see [`crate::export`]),
    /// never over the head's own files or the model's weights.
    pub(super) fn export(&self, path: &Path) -> Result<ExportReport> {
        let model = self.loaded()?;
        let active = self.head.as_ref().ok_or_else(|| {
            Error::Invalid("no head to export: train or load one in the Train tab".into())
        })?;
        let preprocess = active
            .info
            .preprocess
            .settings()
            .copied()
            .unwrap_or(model.preprocess);
        let head_json = active.summary.path.with_extension("json");
        let inputs = [
            active.summary.path.as_path(),
            head_json.as_path(),
            model.weights_path.as_path(),
        ];
        export(
            &ExportRequest {
                backbone: model.backbone.as_ref(),
                model_name: model.spec.name,
                head: &active.head,
                preprocess: &preprocess,
                inputs: &inputs,
            },
            path,
        )
    }
}
