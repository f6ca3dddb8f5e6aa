//! What a head must be before it is built or used: a size that fits in memory, and — for a
//! head read from disk — weights that are exactly the ones its description calls for.
//!
//! A head file is user input like a photo. A description (`head.json`) and a weights file
//! (`head.safetensors`) that disagree must never load as something else: block weights with
//! `"block": null` would silently classify without the fine-tuned block, a NaN weight would
//! turn every probability into NaN, a declared size of 10^12 would abort allocating it, and a
//! convolution of the wrong shape would fail on every photo as if the photo were bad. Each is
//! refused here with the reason; [`super::Head::load`] adds the file's name.

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::HeadKind;
use crate::train::finetune::BlockInfo;

/// At most this many parameters in a head: 256 Mi, 1 GiB of f32. A linear head on ResNet-50's
/// 2048 features with 1000 classes has 2 M; an MLP of 65,536 hidden units on them, 134 M.
pub const MAX_HEAD_PARAMETERS: usize = 256 << 20;

/// At most this many values in one photo's input to a fine-tuned block (VGG-16's conv5 input
/// is 512 x 14 x 14, about 100 k).
const MAX_BLOCK_INPUT: usize = 1 << 24;

/// At most this many parameters in a fine-tuned block (VGG-16's conv5 block has 7 M).
const MAX_BLOCK_PARAMETERS: usize = 64 << 20;

/// Largest convolution kernel or padding a block may declare.
const MAX_KERNEL: usize = 15;

/// Largest head weights file read: the head's and the block's parameters as f32, plus room for
/// the header.
pub const MAX_HEAD_FILE_BYTES: u64 =
    ((MAX_HEAD_PARAMETERS + MAX_BLOCK_PARAMETERS) as u64) * 4 + (16 << 20);

/// How many parameters a head of `kind` on `dim` features with `classes` classes has (`None`
/// past `usize`).
pub fn head_parameters(kind: HeadKind, dim: usize, classes: usize) -> Option<usize> {
    let linear = |inputs: usize, outputs: usize| inputs.checked_add(1)?.checked_mul(outputs);
    match kind {
        HeadKind::Linear => linear(dim, classes),
        HeadKind::Mlp { hidden, .. } => linear(dim, hidden)?.checked_add(linear(hidden, classes)?),
    }
}

/// Refuses a head that would not fit in [`MAX_HEAD_PARAMETERS`], saying how large it may be.
pub fn check_size(kind: HeadKind, dim: usize, classes: usize) -> Result<(), String> {
    if dim == 0 || classes == 0 {
        return Err(format!(
            "a head needs features and classes (got {dim}-wide features, {classes} classes)"
        ));
    }
    let count = head_parameters(kind, dim, classes);
    if count.is_some_and(|n| n <= MAX_HEAD_PARAMETERS) {
        return Ok(());
    }
    let count = count.map_or("too many".to_string(), |n| n.to_string());
    let limit = format!("the limit is {MAX_HEAD_PARAMETERS} (1 GiB of f32)");
    Err(match kind {
        HeadKind::Linear => format!(
            "a linear head on {dim}-wide features with {classes} classes has {count} \
             parameters; {limit}"
        ),
        HeadKind::Mlp { hidden, .. } => {
            // hidden * (dim + 1 + classes) + classes parameters.
            let per_unit = dim.saturating_add(1).saturating_add(classes);
            let most = MAX_HEAD_PARAMETERS.saturating_sub(classes) / per_unit;
            format!(
                "an MLP head of {hidden} hidden units on {dim}-wide features with {classes} \
                 classes has {count} parameters; {limit}: hidden units 1 to {most} here"
            )
        }
    })
}

/// The weights a head of `kind` has, with their shapes.
fn head_shapes(kind: HeadKind, dim: usize, classes: usize) -> Vec<(String, Vec<usize>)> {
    let layer = |name: &str, inputs: usize, outputs: usize| {
        [
            (format!("{name}.weight"), vec![outputs, inputs]),
            (format!("{name}.bias"), vec![outputs]),
        ]
    };
    match kind {
        HeadKind::Linear => layer("fc", dim, classes).to_vec(),
        HeadKind::Mlp { hidden, .. } => {
            let mut shapes = layer("fc1", dim, hidden).to_vec();
            shapes.extend(layer("fc2", hidden, classes));
            shapes
        }
    }
}

/// A fine-tuned block's weights with their shapes, taken from the weights file where the
/// description leaves them open (each convolution's width and kernel), and checked to chain:
/// each convolution takes the previous one's channels, the spatial size stays positive, a
/// residual block keeps its input's shape, and the last width is the head's `dim`.
fn block_shapes(
    info: &BlockInfo,
    weights: &HashMap<String, Tensor>,
    dim: usize,
) -> Result<Vec<(String, Vec<usize>)>, String> {
    let [c, h, w] = info.input_shape;
    let values = c.checked_mul(h).and_then(|n| n.checked_mul(w));
    if !values.is_some_and(|n| n > 0 && n <= MAX_BLOCK_INPUT) {
        return Err(format!(
            "the fine-tuned block's input {:?} must have 1 to {MAX_BLOCK_INPUT} values",
            info.input_shape
        ));
    }
    if info.convs.is_empty() {
        return Err("the fine-tuned block has no convolutions".into());
    }
    let (mut channels, mut height, mut width) = (c, h, w);
    let mut shapes = Vec::new();
    let mut parameters = 0usize;
    for (i, &(padding, _)) in info.convs.iter().enumerate() {
        let name = format!("block.{i}.weight");
        let dims = weights
            .get(&name)
            .map(|t| t.dims().to_vec())
            .ok_or_else(|| format!("the description has a fine-tuned block but no {name}"))?;
        let &[out, inputs, kh, kw] = dims.as_slice() else {
            return Err(format!(
                "{name} is {dims:?}, not a convolution [out, in, kh, kw]"
            ));
        };
        if inputs != channels || out == 0 {
            return Err(format!(
                "{name} is {dims:?}: convolution {i} takes {channels} channels"
            ));
        }
        if kh == 0 || kw == 0 || kh > MAX_KERNEL || kw > MAX_KERNEL || padding > MAX_KERNEL {
            return Err(format!(
                "{name} is {dims:?} with padding {padding}: kernels and padding go up to \
                 {MAX_KERNEL}"
            ));
        }
        // Stride 1: each side grows by twice the padding and shrinks by the kernel less one.
        let next_h = (height + 2 * padding + 1).checked_sub(kh);
        let next_w = (width + 2 * padding + 1).checked_sub(kw);
        let (Some(next_h @ 1..), Some(next_w @ 1..)) = (next_h, next_w) else {
            return Err(format!(
                "{name} is {dims:?}: its kernel is larger than its {height}x{width} input"
            ));
        };
        parameters = parameters.saturating_add(out * inputs * kh * kw + out);
        shapes.push((name, dims.clone()));
        shapes.push((format!("block.{i}.bias"), vec![out]));
        (channels, height, width) = (out, next_h, next_w);
    }
    if parameters > MAX_BLOCK_PARAMETERS {
        return Err(format!(
            "the fine-tuned block has {parameters} parameters; the limit is \
             {MAX_BLOCK_PARAMETERS}"
        ));
    }
    if info.residual && (channels, height, width) != (c, h, w) {
        return Err(format!(
            "the fine-tuned block is residual but turns {:?} into [{channels}, {height}, \
             {width}]",
            info.input_shape
        ));
    }
    if info.max_pool && (height < 2 || width < 2) {
        return Err(format!(
            "the fine-tuned block max-pools a {height}x{width} map (2x2 at least)"
        ));
    }
    if channels != dim {
        return Err(format!(
            "the fine-tuned block gives {channels}-wide features but the head takes {dim}"
        ));
    }
    Ok(shapes)
}

/// A head's description (`kind`, `dim`, `classes`, `block`) against its `weights`: the size,
/// the names, the shapes and the values. Returns the weights as f32 (a script may have saved
/// f16), or what is wrong, without the file's name.
pub fn check_weights(
    kind: HeadKind,
    dim: usize,
    classes: usize,
    block: Option<&BlockInfo>,
    weights: HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>, String> {
    if let HeadKind::Mlp { hidden, dropout } = kind {
        if hidden == 0 || !(0.0..1.0).contains(&dropout) {
            return Err(format!(
                "an MLP head needs hidden units and a dropout from 0 up to 1 (got {hidden} \
                 units, dropout {dropout})"
            ));
        }
    }
    check_size(kind, dim, classes)?;
    let mut expected = head_shapes(kind, dim, classes);
    if let Some(info) = block {
        expected.extend(block_shapes(info, &weights, dim)?);
    }
    let mut unexpected: Vec<&String> = weights
        .keys()
        .filter(|name| !expected.iter().any(|(e, _)| e == *name))
        .collect();
    unexpected.sort();
    if block.is_none() && unexpected.iter().any(|n| n.starts_with("block.")) {
        return Err(
            "the weights hold a fine-tuned block (block.*) but the description has none \
             (\"block\": null): the head would classify without it"
                .into(),
        );
    }
    if let Some(name) = unexpected.first() {
        return Err(format!(
            "the weights hold {name}, which {} head does not have",
            kind_name(kind)
        ));
    }
    let mut checked = HashMap::new();
    for (name, shape) in expected {
        let tensor = weights
            .get(&name)
            .ok_or_else(|| format!("the weights lack {name}"))?;
        if tensor.dims() != shape.as_slice() {
            let fc = !name.starts_with("block.");
            let classes_row = fc && shape.len() == 2 && tensor.dims().len() == 2;
            let hint = if classes_row && name != "fc1.weight" && tensor.dims()[0] != shape[0] {
                format!(
                    " (the description lists {classes} classes, the weights classify {})",
                    tensor.dims()[0]
                )
            } else {
                String::new()
            };
            return Err(format!(
                "{name} is {:?}, expected {shape:?}{hint}",
                tensor.dims()
            ));
        }
        if !tensor.dtype().is_float() {
            return Err(format!(
                "{name} holds {:?} values, not floats",
                tensor.dtype()
            ));
        }
        let tensor = tensor
            .to_dtype(DType::F32)
            .map_err(|e| format!("{name}: {}", crate::error::without_backtrace(e)))?;
        let finite = tensor
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("{name}: {}", crate::error::without_backtrace(e)))?
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return Err(format!("{name} holds NaN or infinite values"));
        }
        checked.insert(name, tensor);
    }
    Ok(checked)
}

fn kind_name(kind: HeadKind) -> &'static str {
    match kind {
        HeadKind::Linear => "a linear",
        HeadKind::Mlp { .. } => "an MLP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_limit_says_how_many_hidden_units_fit() {
        let huge = HeadKind::Mlp {
            hidden: 100_000_000,
            dropout: 0.5,
        };
        let err = check_size(huge, 1280, 37).unwrap_err();
        assert!(err.contains("hidden units 1 to 203668 here"), "{err}");
        let fits = HeadKind::Mlp {
            hidden: 203_668,
            dropout: 0.5,
        };
        assert!(check_size(fits, 1280, 37).is_ok());
        assert!(check_size(HeadKind::Linear, usize::MAX, 2)
            .unwrap_err()
            .contains("too many"));
        assert!(check_size(HeadKind::Linear, 1280, 0).is_err());
    }
}
