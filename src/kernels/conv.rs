//! Dense convolutions by im2col + gemm, padding as they go (no padded copy of the input).
//!
//! The forward pass and the input gradient walk the output in the same chunks of rows (one
//! im2col matrix of about 16 MB each): forward fills the chunk's patches and multiplies by the
//! kernels, the gradient multiplies by the transposed kernels and adds the patches back
//! (col2im). A 1x1 convolution without stride or padding skips im2col: the image is its own
//! patch matrix.

use candle_core::Result;
use rayon::prelude::*;

use super::gemm::{matmul, Strides};
use super::geometry::{valid_columns, Geometry};
use super::simd::add_assign;

/// Output rows per chunk so that one im2col chunk stays around 16 MB.
fn rows_per_chunk(k_size: usize, out_w: usize, out_h: usize) -> usize {
    let budget = (16 << 20) / 4;
    (budget / (k_size * out_w).max(1)).clamp(1, out_h)
}

/// Fills `col` `[c_in * k * k, rows * out_w]` with the input patches of output rows
/// `row0 .. row0 + rows` of one image `img` `[c_in, h, w]`.
fn im2col(g: &Geometry, img: &[f32], row0: usize, rows: usize, col: &mut [f32]) {
    let (out_w, n) = (g.out_w, rows * g.out_w);
    col.par_chunks_mut(n).enumerate().for_each(|(r, dst)| {
        let (ci, kh, kw) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
        let plane = &img[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        let (lo, hi) = valid_columns(g, kw, out_w);
        for oy in 0..rows {
            let out_row = &mut dst[oy * out_w..(oy + 1) * out_w];
            let iy = ((row0 + oy) * g.stride + kh) as isize - g.pad_top as isize;
            if iy < 0 || iy >= g.h as isize {
                out_row.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
            out_row[..lo].fill(0.0);
            out_row[hi..].fill(0.0);
            // Input column of output column ox: ox * stride + kw - pad_left (>= 0 from lo).
            let first = lo * g.stride + kw - g.pad_left;
            if g.stride == 1 {
                out_row[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
            } else {
                for (i, v) in out_row[lo..hi].iter_mut().enumerate() {
                    *v = src[first + i * g.stride];
                }
            }
        }
    });
}

/// Adds `col` `[c_in * k * k, rows * out_w]` (patch gradients of output rows `row0 ..`) back
/// into the image gradient `img` `[c_in, h, w]`.
fn col2im(g: &Geometry, col: &[f32], row0: usize, rows: usize, img: &mut [f32]) {
    let (out_w, n, kk) = (g.out_w, rows * g.out_w, g.k * g.k);
    img.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(ci, plane)| {
            for r in 0..kk {
                let (kh, kw) = (r / g.k, r % g.k);
                let src = &col[(ci * kk + r) * n..(ci * kk + r + 1) * n];
                let (lo, hi) = valid_columns(g, kw, out_w);
                if lo >= hi {
                    continue;
                }
                let first = lo * g.stride + kw - g.pad_left;
                for oy in 0..rows {
                    let iy = ((row0 + oy) * g.stride + kh) as isize - g.pad_top as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let row = &src[oy * out_w + lo..oy * out_w + hi];
                    if g.stride == 1 {
                        add_assign(&mut dst[first..first + row.len()], row);
                    } else {
                        for (i, &v) in row.iter().enumerate() {
                            dst[first + i * g.stride] += v;
                        }
                    }
                }
            }
        });
}

/// Calls `f(image, row0, rows)` for each chunk of output rows of each image of the batch.
fn for_each_chunk(
    g: &Geometry,
    mut f: impl FnMut(usize, usize, usize) -> Result<()>,
) -> Result<()> {
    let chunk_rows = rows_per_chunk(g.c_in * g.k * g.k, g.out_w, g.out_h);
    for b in 0..g.batch {
        for row0 in (0..g.out_h).step_by(chunk_rows) {
            f(b, row0, chunk_rows.min(g.out_h - row0))?;
        }
    }
    Ok(())
}

/// A scratch im2col matrix for the largest chunk of `g`.
fn col_buffer(g: &Geometry) -> Vec<f32> {
    let k_size = g.c_in * g.k * g.k;
    vec![0f32; k_size * rows_per_chunk(k_size, g.out_w, g.out_h) * g.out_w]
}

/// The convolution of `input` `[B, C_in, H, W]` with `weight` `[C_out, C_in, k, k]`:
/// `[B, C_out, H', W']` (no bias).
pub fn conv_forward(g: &Geometry, input: &[f32], weight: &[f32]) -> Result<Vec<f32>> {
    let (k_size, plane, image) = (g.c_in * g.k * g.k, g.out_h * g.out_w, g.c_in * g.h * g.w);
    let mut out = vec![0f32; g.batch * g.c_out * plane];
    let kernels = (weight, Strides::rows(k_size));
    if g.is_pointwise() {
        for (img, dst) in input.chunks(image).zip(out.chunks_mut(g.c_out * plane)) {
            matmul(
                (g.c_out, plane, g.c_in),
                (dst, Strides::rows(plane)),
                kernels,
                (img, Strides::rows(plane)),
            )?;
        }
        return Ok(out);
    }
    let mut col = col_buffer(g);
    for_each_chunk(g, |b, row0, rows| {
        let n = rows * g.out_w;
        let col = &mut col[..k_size * n];
        im2col(g, &input[b * image..(b + 1) * image], row0, rows, col);
        let dst = &mut out[b * g.c_out * plane + row0 * g.out_w..];
        matmul(
            (g.c_out, n, k_size),
            (dst, Strides::rows(plane)),
            kernels,
            (col, Strides::rows(n)),
        )
    })?;
    Ok(out)
}

/// The input gradient `[B, C_in, H, W]` of [`conv_forward`] for the output gradient
/// `grad_out` `[B, C_out, H', W']`.
pub fn conv_input_grad(g: &Geometry, grad_out: &[f32], weight: &[f32]) -> Result<Vec<f32>> {
    let (k_size, plane, image) = (g.c_in * g.k * g.k, g.out_h * g.out_w, g.c_in * g.h * g.w);
    let mut grad_in = vec![0f32; g.batch * image];
    // W^T [K, C_out]: the kernels read column-major.
    let kernels_t = (weight, Strides::cols(k_size));
    if g.is_pointwise() {
        let per_image = grad_out
            .chunks(g.c_out * plane)
            .zip(grad_in.chunks_mut(image));
        for (go, gi) in per_image {
            matmul(
                (g.c_in, plane, g.c_out),
                (gi, Strides::rows(plane)),
                kernels_t,
                (go, Strides::rows(plane)),
            )?;
        }
        return Ok(grad_in);
    }
    let mut col = col_buffer(g);
    for_each_chunk(g, |b, row0, rows| {
        let n = rows * g.out_w;
        let col = &mut col[..k_size * n];
        let go = &grad_out[b * g.c_out * plane + row0 * g.out_w..];
        // col [K, n] = W^T [K, C_out] @ grad_out [C_out, n]
        matmul(
            (k_size, n, g.c_out),
            (col, Strides::rows(n)),
            kernels_t,
            (go, Strides::rows(plane)),
        )?;
        col2im(g, col, row0, rows, &mut grad_in[b * image..(b + 1) * image]);
        Ok(())
    })?;
    Ok(grad_in)
}
