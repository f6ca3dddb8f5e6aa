//! Pooling: max-pooling over a window (VGG's 2x2/2, ResNet's overlapping 3x3/2 with padding)
//! whose gradient goes to each window's first maximum as PyTorch's does, PyTorch's adaptive
//! average pooling, and the global mean.

use rayon::prelude::*;

/// A max-pooling window: `kernel x kernel` at `stride`, `padding` cells of -infinity on every
/// side (PyTorch's `MaxPool2d(kernel, stride, padding)`, floor mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolWindow {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl PoolWindow {
    /// VGG's 2x2/2 pool (an odd last row/column dropped).
    pub const TWO_BY_TWO: Self = Self {
        kernel: 2,
        stride: 2,
        padding: 0,
    };
    /// ResNet's stem pool: 3x3, stride 2, padding 1 (overlapping windows).
    pub const THREE_BY_THREE_STRIDE_TWO: Self = Self {
        kernel: 3,
        stride: 2,
        padding: 1,
    };

    /// The pooled size of a side of `n` cells (0 when the window does not fit).
    pub fn out_size(&self, n: usize) -> usize {
        if n + 2 * self.padding < self.kernel || self.stride == 0 {
            return 0;
        }
        (n + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// The input cells `start..end` of output cell `o` along a side of `n` cells.
    pub fn span(&self, o: usize, n: usize) -> (usize, usize) {
        let start = (o * self.stride).saturating_sub(self.padding);
        let end = (o * self.stride + self.kernel)
            .saturating_sub(self.padding)
            .min(n);
        (start, end)
    }
}

/// The first maximum of rows `y0..y1`, columns `x0..x1` of a plane `w` wide, by PyTorch's test
/// (`v > best || isnan(v)`: the first of tied maxima; a NaN wins and propagates): its index in
/// the plane and its value.
fn window_max(
    plane: &[f32],
    w: usize,
    (y0, y1): (usize, usize),
    (x0, x1): (usize, usize),
) -> (usize, f32) {
    let mut best = (y0 * w + x0, f32::NEG_INFINITY);
    for y in y0..y1 {
        let row0 = y * w + x0;
        for (k, &v) in plane[row0..y * w + x1].iter().enumerate() {
            if v > best.1 || v.is_nan() {
                best = (row0 + k, v);
            }
        }
    }
    best
}

/// Max-pooling of `planes` planes `[h, w]` over `window`.
pub fn max_pool_forward(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    window: PoolWindow,
) -> Vec<f32> {
    if window == PoolWindow::TWO_BY_TWO {
        return max_pool_2x2_forward(x, planes, h, w);
    }
    let (oh, ow) = (window.out_size(h), window.out_size(w));
    let mut out = vec![0f32; planes * oh * ow];
    out.par_chunks_mut((oh * ow).max(1))
        .enumerate()
        .for_each(|(p, dst)| {
            let src = &x[p * h * w..(p + 1) * h * w];
            for oy in 0..oh {
                let (y0, y1) = window.span(oy, h);
                for ox in 0..ow {
                    let (x0, x1) = window.span(ox, w);
                    dst[oy * ow + ox] = window_max(src, w, (y0, y1), (x0, x1)).1;
                }
            }
        });
    out
}

/// The running maximum `best` after seeing `v`, by PyTorch's test (`v > best || isnan(v)`):
/// a NaN wins and stays, so the forward value agrees with the gradient's choice.
fn first_max(best: f32, v: f32) -> f32 {
    if v > best || v.is_nan() {
        v
    } else {
        best
    }
}

/// [`max_pool_forward`] for the 2x2/2 window, without the window arithmetic.
fn max_pool_2x2_forward(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0f32; planes * oh * ow];
    out.par_chunks_mut((oh * ow).max(1))
        .enumerate()
        .for_each(|(p, dst)| {
            let src = &x[p * h * w..(p + 1) * h * w];
            for oy in 0..oh {
                let (r0, r1) = (&src[2 * oy * w..], &src[(2 * oy + 1) * w..]);
                for ox in 0..ow {
                    let first = first_max(r0[2 * ox], r0[2 * ox + 1]);
                    dst[oy * ow + ox] = first_max(first_max(first, r1[2 * ox]), r1[2 * ox + 1]);
                }
            }
        });
    out
}

/// The input gradient of [`max_pool_forward`]: each output's gradient goes to its window's
/// first maximum in row-major order (PyTorch's rule; padding never wins).
pub fn max_pool_grad(
    x: &[f32],
    g: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    window: PoolWindow,
) -> Vec<f32> {
    let (oh, ow) = (window.out_size(h), window.out_size(w));
    let mut out = vec![0f32; planes * h * w];
    out.par_chunks_mut((h * w).max(1))
        .enumerate()
        .for_each(|(p, dst)| {
            let src = &x[p * h * w..(p + 1) * h * w];
            let grad = &g[p * oh * ow..(p + 1) * oh * ow];
            for oy in 0..oh {
                let (y0, y1) = window.span(oy, h);
                for ox in 0..ow {
                    let (x0, x1) = window.span(ox, w);
                    let best = window_max(src, w, (y0, y1), (x0, x1)).0;
                    dst[best] += grad[oy * ow + ox];
                }
            }
        });
    out
}

/// Row `i`'s bin of PyTorch's adaptive pooling from `size` to `out`.
fn bin(i: usize, size: usize, out: usize) -> (usize, usize) {
    (i * size / out, ((i + 1) * size).div_ceil(out))
}

/// Adaptive average pooling of `planes` planes `[h, w]` to `[n, n]`; with `grad`, its
/// transpose (output gradient `[n, n]` spread back over `[h, w]`).
pub fn adaptive_pool(x: &[f32], planes: usize, (h, w): (usize, usize), n: usize) -> Vec<f32> {
    let mut out = vec![0f32; planes * n * n];
    out.par_chunks_mut(n * n).enumerate().for_each(|(p, dst)| {
        let src = &x[p * h * w..(p + 1) * h * w];
        for i in 0..n {
            let (y0, y1) = bin(i, h, n);
            for j in 0..n {
                let (x0, x1) = bin(j, w, n);
                let mut sum = 0.0;
                for y in y0..y1 {
                    sum += src[y * w + x0..y * w + x1].iter().sum::<f32>();
                }
                dst[i * n + j] = sum / ((y1 - y0) * (x1 - x0)) as f32;
            }
        }
    });
    out
}

pub fn adaptive_pool_grad(g: &[f32], planes: usize, (h, w): (usize, usize), n: usize) -> Vec<f32> {
    let mut out = vec![0f32; planes * h * w];
    out.par_chunks_mut(h * w).enumerate().for_each(|(p, dst)| {
        let src = &g[p * n * n..(p + 1) * n * n];
        for i in 0..n {
            let (y0, y1) = bin(i, h, n);
            for j in 0..n {
                let (x0, x1) = bin(j, w, n);
                let share = src[i * n + j] / ((y1 - y0) * (x1 - x0)) as f32;
                for y in y0..y1 {
                    dst[y * w + x0..y * w + x1]
                        .iter_mut()
                        .for_each(|v| *v += share);
                }
            }
        }
    });
    out
}

/// The mean of each of `planes` planes of `plane` values: `[planes, plane]` -> `[planes]`.
pub fn global_avg_pool(x: &[f32], plane: usize) -> Vec<f32> {
    x.chunks(plane.max(1))
        .map(|p| p.iter().sum::<f32>() / plane as f32)
        .collect()
}

/// The input gradient of [`global_avg_pool`]: each plane's gradient spread evenly over it.
pub fn global_avg_pool_grad(grad: &[f32], plane: usize) -> Vec<f32> {
    let mut g = vec![0f32; grad.len() * plane];
    g.par_chunks_mut(plane.max(1))
        .zip(grad.par_iter())
        .for_each(|(dst, &v)| dst.fill(v / plane as f32));
    g
}
