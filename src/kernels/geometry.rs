//! Where a convolution's kernel lands: padding, output size, the valid columns of a row.

use candle_core::Result;

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// The same number of zeros on every side (PyTorch's `padding=p`).
    Symmetric(usize),
    /// TensorFlow's "SAME": output size `ceil(in / stride)`, the odd zero on the bottom/right.
    TfSame,
}

impl Padding {
    /// Zeros `(before, after)` along a side of `size` cells for a `k`-wide kernel at `stride`
    /// (`None` when the kernel does not fit or the stride is 0).
    pub fn sides(self, size: usize, k: usize, stride: usize) -> Option<(usize, usize)> {
        if stride == 0 || size == 0 {
            return None;
        }
        match self {
            Self::Symmetric(p) => (size + 2 * p >= k).then_some((p, p)),
            Self::TfSame => {
                let out = size.div_ceil(stride);
                let total = ((out - 1) * stride + k).saturating_sub(size);
                Some((total / 2, total - total / 2))
            }
        }
    }
}

/// Geometry of a square-kernel convolution. Zeros pad the input `pad_top` rows above and
/// `pad_left` columns left of it; the output size says how many more (TensorFlow's "same"
/// padding puts the odd one bottom/right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Geometry {
    /// The geometry of a convolution of `[batch, c_in, h, w]` with `c_out` `k x k` kernels.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        (batch, c_in, h, w): (usize, usize, usize, usize),
        c_out: usize,
        k: usize,
        stride: usize,
        padding: Padding,
    ) -> Result<Self> {
        let (pad_top, pad_left, out_h, out_w) = match padding {
            Padding::Symmetric(p) => {
                if h + 2 * p < k || w + 2 * p < k || stride == 0 {
                    candle_core::bail!("a {k}x{k} kernel does not fit a {h}x{w} input");
                }
                (
                    p,
                    p,
                    (h + 2 * p - k) / stride + 1,
                    (w + 2 * p - k) / stride + 1,
                )
            }
            Padding::TfSame => {
                if stride == 0 || h == 0 || w == 0 {
                    candle_core::bail!("empty {h}x{w} input");
                }
                let total = |size: usize| {
                    let out = size.div_ceil(stride);
                    ((out - 1) * stride + k).saturating_sub(size)
                };
                let (out_h, out_w) = (h.div_ceil(stride), w.div_ceil(stride));
                (total(h) / 2, total(w) / 2, out_h, out_w)
            }
        };
        Ok(Self {
            batch,
            c_in,
            c_out,
            h,
            w,
            k,
            stride,
            pad_top,
            pad_left,
            out_h,
            out_w,
        })
    }

    /// A 1x1 convolution without stride or padding: a plain matrix product.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.k == 1
            && self.stride == 1
            && (self.pad_top, self.pad_left) == (0, 0)
            && (self.out_h, self.out_w) == (self.h, self.w)
    }
}

/// The output columns `lo..hi` whose input column `ox * stride + kw - pad_left` is inside
/// the row.
pub(crate) fn valid_columns(g: &Geometry, kw: usize, out_w: usize) -> (usize, usize) {
    let first = (g.pad_left.saturating_sub(kw)).div_ceil(g.stride);
    // Last ox with ox * stride + kw - pad_left <= w - 1.
    let limit = g.w + g.pad_left - 1;
    let hi = if kw > limit {
        0
    } else {
        ((limit - kw) / g.stride + 1).min(out_w)
    };
    (first.min(hi), hi)
}
