//! Receptive fields: which pixels of the network's input one cell of a tap can see.
//!
//! Computed from the network's one description ([`Network`]), layer by layer, for a given
//! input side: a window of `k` cells at stride `s` widens the field by `(k - 1)` times the
//! distance between the cells it reads (the *jump*) and multiplies the jump by `s`; padding
//! moves the first cell's window before the image (TensorFlow's "same" padding depends on the
//! side, hence the input size). A residual block sees the union of its branch's and its
//! shortcut's windows. The same rule holds along rows and columns (square kernels, square
//! inputs). Squeeze-and-excitation scales each channel by a mean over the whole image, so
//! after one every cell also depends, weakly, on everything ([`ReceptiveField::global`]).

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use super::network::{Layer, Network};
use crate::kernels::PoolWindow;

/// The window of input pixels one cell of a tap sees, along a side (rows and columns alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceptiveField {
    /// Side of the window in input pixels (before clipping to the image).
    pub size: usize,
    /// Input pixels between the windows of neighbouring cells.
    pub stride: usize,
    /// Input coordinate of the first pixel of cell 0's window (negative where it starts in the
    /// padding).
    pub offset: i64,
    /// Cells along a side of the tap for this input (1 for vectors).
    pub cells: usize,
    /// A squeeze-and-excitation before the tap also makes every cell depend on the whole image
    /// (through per-channel weights from its mean).
    pub global: bool,
}

impl ReceptiveField {
    /// The input pixels of a side: every pixel sees itself.
    fn input(side: usize) -> Self {
        Self {
            size: 1,
            stride: 1,
            offset: 0,
            cells: side,
            global: false,
        }
    }

    /// The input pixels `start..end` that cell `i` sees along a side of `side` pixels (its
    /// window clipped to the image; empty when it lies wholly outside).
    pub fn span(&self, i: usize, side: usize) -> (usize, usize) {
        let first = self.offset + (i * self.stride) as i64;
        let last = first + self.size as i64;
        let clip = |v: i64| v.clamp(0, side as i64) as usize;
        (clip(first), clip(last))
    }

    /// After a window of `k` cells at `stride` with `before` padding cells, giving `cells`.
    fn window(self, k: usize, stride: usize, before: usize, cells: usize) -> Self {
        Self {
            size: self.size + (k.max(1) - 1) * self.stride,
            stride: self.stride * stride,
            offset: self.offset - (before * self.stride) as i64,
            cells,
            global: self.global,
        }
    }

    /// The smallest window holding both `self`'s and `other`'s (a residual's sum).
    fn union(self, other: Self) -> Self {
        let first = self.offset.min(other.offset);
        let end = (self.offset + self.size as i64).max(other.offset + other.size as i64);
        Self {
            size: (end - first) as usize,
            stride: self.stride.max(other.stride),
            offset: first,
            cells: self.cells.min(other.cells),
            global: self.global || other.global,
        }
    }
}

/// Tap `tap`'s field in a list of [`receptive_fields`].
pub fn field_of(fields: &[(String, ReceptiveField)], tap: &str) -> Option<ReceptiveField> {
    fields.iter().find(|(name, _)| name == tap).map(|(_, f)| *f)
}

/// The receptive field of every tap of `network` for a `side x side` input, in network order
/// (the logits last); `None` when the input is too small for a layer.
pub fn receptive_fields(network: &Network, side: usize) -> Option<Vec<(String, ReceptiveField)>> {
    let mut field = ReceptiveField::input(side);
    let mut open = Vec::new();
    let mut out = Vec::new();
    for step in network.steps() {
        field = match &step.layer {
            Layer::Conv(c) => conv(field, c)?,
            Layer::MaxPool(w) => pool(field, w)?,
            Layer::AdaptiveAvgPool(n) => adaptive(field, *n)?,
            // A mean of every cell: a window as wide as the map.
            Layer::GlobalAvgPool => field.window(field.cells, 1, 0, 1),
            Layer::Linear(_) => field.window(field.cells, 1, 0, 1),
            Layer::HardSwish => field,
            Layer::SqueezeExcite(_) => ReceptiveField {
                global: true,
                ..field
            },
            Layer::ResidualStart => {
                open.push(field);
                field
            }
            Layer::ResidualAdd { shortcut, .. } => {
                let start = open.pop()?;
                let short = match shortcut {
                    Some(c) => conv(start, c)?,
                    None => start,
                };
                field.union(short)
            }
        };
        if let Some(tap) = &step.tap {
            out.push((tap.name.clone(), field));
        }
    }
    Some(out)
}

/// After convolution `c`.
fn conv(field: ReceptiveField, c: &super::network::ConvLayer) -> Option<ReceptiveField> {
    let (k, stride) = (c.kernel(), c.stride);
    let (before, after) = c.padding.sides(field.cells, k, stride)?;
    let padded = field.cells + before + after;
    let cells = padded.checked_sub(k)? / stride + 1;
    Some(field.window(k, stride, before, cells))
}

/// After max-pooling window `w`.
fn pool(field: ReceptiveField, w: &PoolWindow) -> Option<ReceptiveField> {
    let cells = w.out_size(field.cells);
    (cells > 0).then(|| field.window(w.kernel, w.stride, w.padding, cells))
}

/// After PyTorch's adaptive average pooling to `n x n`: exact when `n` divides the side (a
/// window of `side / n`); otherwise its bins differ by a cell, and the widest, at the mean
/// stride rounded down, is taken (the window then errs on the large side).
fn adaptive(field: ReceptiveField, n: usize) -> Option<ReceptiveField> {
    let side = field.cells;
    if n == 0 || side == 0 {
        return None;
    }
    if side.is_multiple_of(n) {
        return Some(field.window(side / n, side / n, 0, n));
    }
    let widest = (0..n)
        .map(|i| ((i + 1) * side).div_ceil(n) - i * side / n)
        .max()
        .unwrap_or(1);
    Some(field.window(widest, (side / n).max(1), 0, n))
}
