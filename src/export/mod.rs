//! Taking a trained classifier elsewhere: the backbone, its fine-tuned block when there is
//! one, and the head, as one ONNX graph or as one safetensors file with timm's names.
//!
//! Both start from the same list of layers ([`classifier_steps`]): the network's steps up to
//! the embedding, the fine-tuned block's weights in place of the pretrained ones, the spatial
//! mean, then the head. The ONNX graph takes `input` `[N, 3, H, W]` (float32, already
//! normalised with the model's mean and std) and gives `logits` `[N, classes]` in the head's
//! class order. The safetensors file holds timm's parameter names with batch norm folded into
//! the convolutions (each batch norm is then the identity: weight 1, running mean 0, running
//! variance `1 - eps`, its bias the folded bias), so `load_state_dict` into
//! `timm.create_model(name, num_classes=N)` (after the report's `timm_setup` lines, for VGG
//! and MLP heads) gives the same logits.

pub mod onnx;
pub mod proto;
mod timm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::kernels::Activation;
use crate::model::network::{ConvLayer, Layer, LinearLayer, Step};
use crate::model::{Backbone, TimmLayout};
use crate::train::head::{Head, HeadInfo, HeadKind};
use crate::vision::preprocess::Preprocess;

/// What an export writes, from the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// `.onnx`: the whole classifier as an ONNX graph.
    Onnx,
    /// `.safetensors`: the weights with timm's names.
    Safetensors,
}

impl ExportFormat {
    /// The format `path`'s extension names (`.onnx` or `.safetensors`).
    pub fn of_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("onnx") => Ok(Self::Onnx),
            Some(e) if e.eq_ignore_ascii_case("safetensors") => Ok(Self::Safetensors),
            _ => Err(Error::Invalid(format!(
                "{}: export writes a .onnx or a .safetensors file (named by its extension)",
                path.display()
            ))),
        }
    }
}

/// What was exported, for the CLI's `--json` and the window.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub path: PathBuf,
    pub format: ExportFormat,
    pub bytes: u64,
    /// The logits' classes, in order.
    pub classes: Vec<String>,
    /// `[N, 3, H, W]` with `N` free (written as 0 here).
    pub input_shape: [usize; 4],
    /// The normalisation the input must already have: `(x / 255 - mean) / std` per channel.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// For safetensors, the `timm.create_model` name the weights load into.
    pub timm_model: Option<String>,
    /// For safetensors, the Python lines to run on that model before `load_state_dict` (none
    /// for a linear head on most models).
    pub timm_setup: Vec<String>,
}

fn head_weight<'a>(head: &'a Head, name: &str) -> Result<&'a Tensor> {
    head.weights
        .get(name)
        .ok_or_else(|| Error::Invalid(format!("the head lacks its weight {name}")))
}

/// The head as layers: `Linear(D, classes)`, or `Linear -> ReLU -> Linear` (dropout is the
/// identity outside training).
fn head_layers(head: &Head) -> Result<Vec<Layer>> {
    let linear = |name: &str, activation| -> Result<Layer> {
        let w = head_weight(head, &format!("{name}.weight"))?.clone();
        let b = head_weight(head, &format!("{name}.bias"))?.clone();
        Ok(Layer::Linear(LinearLayer::new(w, b, activation)?))
    };
    Ok(match head.kind {
        HeadKind::Linear => vec![linear("fc", Activation::Identity)?],
        HeadKind::Mlp { .. } => vec![
            linear("fc1", Activation::Relu)?,
            linear("fc2", Activation::Identity)?,
        ],
    })
}

/// The classifier's layers, `[N, 3, H, W]` -> logits `[N, classes]`: [`backbone_steps`], then
/// `head`.
pub fn classifier_steps(backbone: &dyn Backbone, head: &Head) -> Result<Vec<Step>> {
    let mut steps = backbone_steps(backbone, head)?;
    steps.extend(
        head_layers(head)?
            .into_iter()
            .map(|layer| Step { layer, tap: None }),
    );
    Ok(steps)
}

/// The layers under the head, `[N, 3, H, W]` -> features `[N, D]`: `backbone`'s steps up to
/// its embedding (the fine-tuned block's convolutions replacing the pretrained ones), then the
/// spatial mean where the embedding pools.
pub fn backbone_steps(backbone: &dyn Backbone, head: &Head) -> Result<Vec<Step>> {
    if backbone.embedding_dim() != head.dim {
        return Err(Error::Invalid(format!(
            "the head takes {}-wide features but {} gives {}",
            head.dim,
            backbone.arch(),
            backbone.embedding_dim()
        )));
    }
    let network = backbone.network();
    let tap = backbone.embedding_tap();
    let end = network
        .tap_index(tap.name)
        .ok_or_else(|| Error::Invalid(format!("{} has no layer {}", backbone.arch(), tap.name)))?;
    let mut steps = network.steps()[..=end].to_vec();
    if let Some(block) = &head.block {
        let start = network.tap_index(&block.input_tap).ok_or_else(|| {
            Error::Invalid(format!(
                "the head's fine-tuned block starts at {}, which {} does not have",
                block.input_tap,
                backbone.arch()
            ))
        })?;
        let convs: Vec<&mut ConvLayer> = steps
            .get_mut(start + 1..)
            .unwrap_or_default()
            .iter_mut()
            .filter_map(|s| match &mut s.layer {
                Layer::Conv(c) => Some(c),
                _ => None,
            })
            .collect();
        if convs.len() != block.convs.len() {
            return Err(Error::Invalid(format!(
                "the head's fine-tuned block has {} convolutions where {} has {}",
                block.convs.len(),
                backbone.arch(),
                convs.len()
            )));
        }
        for (i, conv) in convs.into_iter().enumerate() {
            let weight = head_weight(head, &format!("block.{i}.weight"))?;
            let bias = head_weight(head, &format!("block.{i}.bias"))?.flatten_all()?;
            if weight.dims() != conv.weight.dims() || bias.dims() != conv.bias.dims() {
                return Err(Error::Invalid(format!(
                    "the head's fine-tuned convolution {i} is {:?} where {} has {:?}",
                    weight.dims(),
                    backbone.arch(),
                    conv.weight.dims()
                )));
            }
            conv.weight = weight.contiguous()?;
            conv.bias = bias.contiguous()?;
        }
    }
    if tap.pooled {
        steps.push(Step {
            layer: Layer::GlobalAvgPool,
            tap: None,
        });
    }
    Ok(steps)
}

/// The Python lines that make `timm.create_model(layout.model, num_classes=N)` take the
/// state dict: replace what timm has where ours differs (VGG's `pre_logits`), and the
/// classifier where the head is not timm's `Linear(D, N)` (an MLP head; VGG's 512 features).
fn timm_setup_lines(layout: &TimmLayout, head: &Head) -> Vec<String> {
    let (d, n, c) = (head.dim, head.classes.len(), layout.classifier);
    let mut lines: Vec<String> = layout.setup.iter().map(|s| s.to_string()).collect();
    match head.kind {
        HeadKind::Mlp { hidden, dropout } => lines.push(format!(
            "model.{c} = torch.nn.Sequential(torch.nn.Linear({d}, {hidden}), torch.nn.ReLU(), \
             torch.nn.Dropout({dropout}), torch.nn.Linear({hidden}, {n}))"
        )),
        HeadKind::Linear if layout.setup.is_some() => {
            lines.push(format!("model.{c} = torch.nn.Linear({d}, {n})"));
        }
        HeadKind::Linear => {}
    }
    lines
}

/// What [`export`] needs besides the output path.
pub struct ExportRequest<'a> {
    pub backbone: &'a dyn Backbone,
    /// The model's name (`efficientnet-lite0`), saved in the file's metadata.
    pub model_name: &'a str,
    pub head: &'a Head,
    /// The preprocessing the head was trained with (its input size, mean and std).
    pub preprocess: &'a Preprocess,
    /// Files the output must not replace (the head, the weights).
    pub inputs: &'a [&'a Path],
}

fn json<T: Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(e.to_string()))
}

/// The model's metadata: what it was made from and what its input must be.
fn metadata(req: &ExportRequest) -> Result<Vec<(String, String)>> {
    let p = req.preprocess;
    Ok(vec![
        ("model".into(), req.model_name.to_string()),
        ("classes".into(), json(&req.head.classes)?),
        ("mean".into(), json(&p.mean)?),
        ("std".into(), json(&p.std)?),
        ("input_size".into(), p.size.to_string()),
        (
            "input".into(),
            "float32 [N, 3, H, W], RGB scaled to [0, 1] then (x - mean) / std per channel".into(),
        ),
    ])
}

/// Writes the classifier to `path` (`.onnx` or `.safetensors`, atomically: a failed export
/// leaves any earlier file as it was), refusing to replace any of `req.inputs`.
pub fn export(req: &ExportRequest, path: &Path) -> Result<ExportReport> {
    let format = ExportFormat::of_path(path)?;
    crate::output::check_output(path, req.inputs)?;
    let meta = metadata(req)?;
    let size = req.preprocess.size as usize;
    let mut timm_setup = Vec::new();
    let (bytes, timm_model) = match format {
        ExportFormat::Onnx => {
            let steps = classifier_steps(req.backbone, req.head)?;
            let model = onnx::OnnxModel {
                steps: &steps,
                size,
                metadata: meta,
                name: format!("{} + head", req.model_name),
            };
            (onnx::to_onnx(&model)?, None)
        }
        ExportFormat::Safetensors => {
            let layout = req.backbone.timm_layout().ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: timm has no model of {}'s layout; export it as .onnx instead",
                    path.display(),
                    req.backbone.arch()
                ))
            })?;
            let steps = backbone_steps(req.backbone, req.head)?;
            let tensors = timm::state_dict(&steps, &layout, req.head)?;
            timm_setup = timm_setup_lines(&layout, req.head);
            let mut meta: HashMap<String, String> = meta.into_iter().collect();
            meta.insert("timm_model".into(), layout.model.to_string());
            meta.insert("timm_setup".into(), timm_setup.join("\n"));
            let bytes =
                safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(meta))
                    .map_err(|e| Error::Invalid(format!("cannot write safetensors: {e}")))?;
            (bytes, Some(layout.model.to_string()))
        }
    };
    crate::output::write_atomic(path, req.inputs, |w| {
        use std::io::Write;
        Ok(w.write_all(&bytes)?)
    })?;
    Ok(ExportReport {
        path: path.to_path_buf(),
        format,
        bytes: bytes.len() as u64,
        classes: req.head.classes.clone(),
        input_shape: [0, 3, size, size],
        mean: req.preprocess.mean,
        std: req.preprocess.std,
        timm_model,
        timm_setup,
    })
}

/// Exports `head` (saved at `head_path`, described by `info`) on `model` to `path`: at the
/// input size, mean and std the head was trained with (the model's for older heads), never
/// over the head, its JSON or the model's weights.
pub fn export_head(
    model: &LoadedModel,
    head: &Head,
    info: &HeadInfo,
    head_path: &Path,
    path: &Path,
) -> Result<ExportReport> {
    let preprocess = info
        .preprocess
        .settings()
        .copied()
        .unwrap_or(model.preprocess);
    let head_json = head_path.with_extension("json");
    let inputs = [head_path, head_json.as_path(), model.weights_path.as_path()];
    export(
        &ExportRequest {
            backbone: model.backbone.as_ref(),
            model_name: model.spec.name,
            head,
            preprocess: &preprocess,
            inputs: &inputs,
        },
        path,
    )
}

#[cfg(test)]
mod tests;
