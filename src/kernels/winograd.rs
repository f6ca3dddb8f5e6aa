//! Winograd F(2x2, 3x3) convolution for 3x3, stride-1, pad-1 dense layers on the CPU.
//!
//! VGG's and ResNet's bodies are almost all such layers, and a dream step runs each of them
//! twice (forward, then the input gradient, which for stride 1 and pad 1 is the same kind of
//! convolution with the kernel flipped and its channels swapped). Winograd's minimal
//! filtering computes each 2x2 output tile from a 4x4 input tile with 16 multiplications per
//! channel pair instead of 36, as 16 independent `[K, C] @ [C, tiles]` matrix products
//! between transformed kernels and transformed input tiles (Lavin & Gray, "Fast Algorithms
//! for Convolutional Neural Networks", 2015): 2.25x fewer flops than im2col + gemm. F(2x2)
//! keeps f32 rounding at the level of the direct method (its transforms only add, subtract
//! and halve), unlike the larger tiles.
//!
//! The image is cut into chunks of whole tile rows processed in parallel; the bias and the
//! activation are applied as the tiles are turned back into pixels.

use rayon::prelude::*;

use candle_core::Result;

use super::gemm::{matmul_with, Strides};
use super::geometry::Geometry;
use super::simd::multiversion;

/// Transformed inputs per tile: a 4x4 tile gives 16 values.
const TILE: usize = 16;

/// Tiles per chunk at least: each of the 16 matrix products re-reads (and packs) a whole
/// `[K, C]` kernel matrix, which only pays off over this many tiles.
const MIN_CHUNK_TILES: usize = 128;

/// Whether a convolution is one this module computes: 3x3 kernel, stride 1, one pixel of
/// zero padding on every side, and enough channels that the matrix products pay off.
pub fn applies(g: &Geometry) -> bool {
    g.k == 3
        && g.stride == 1
        && (g.pad_top, g.pad_left) == (1, 1)
        && (g.out_h, g.out_w) == (g.h, g.w)
        && g.c_in >= 16
        && g.c_out >= 16
}

/// The kernels `weight` `[K, C, 3, 3]` transformed for [`conv3x3`]: `[16, K, C]`, or, when
/// `for_input_grad`, those of the input-gradient convolution (kernel flipped, channels
/// swapped): `[16, C, K]`.
pub fn transform_kernels(weight: &[f32], k: usize, c: usize, for_input_grad: bool) -> Vec<f32> {
    let (rows, cols) = if for_input_grad { (c, k) } else { (k, c) };
    let mut out = vec![0f32; TILE * rows * cols];
    for ko in 0..k {
        for ci in 0..c {
            let g = &weight[(ko * c + ci) * 9..(ko * c + ci + 1) * 9];
            let tap = |i: usize, j: usize| {
                if for_input_grad {
                    g[(2 - i) * 3 + (2 - j)]
                } else {
                    g[i * 3 + j]
                }
            };
            // G g, column by column: G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
            let g_cols: [[f32; 4]; 3] = std::array::from_fn(|j| {
                let (a, b, d) = (tap(0, j), tap(1, j), tap(2, j));
                [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d]
            });
            // (G g) G^T, row by row.
            let (row, col) = if for_input_grad { (ci, ko) } else { (ko, ci) };
            for r in 0..4 {
                let (a, b, d) = (g_cols[0][r], g_cols[1][r], g_cols[2][r]);
                let u = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
                for (s, v) in u.into_iter().enumerate() {
                    out[((r * 4 + s) * rows + row) * cols + col] = v;
                }
            }
        }
    }
    out
}

/// What follows the convolution on each output value: `clamp(v + bias[k], low, high)`.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub low: f32,
    pub high: f32,
}

impl Epilogue<'_> {
    /// The plain convolution.
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        low: f32::NEG_INFINITY,
        high: f32::INFINITY,
    };
}

/// The `[B, K, H, W]` convolution of `input` `[B, C, H, W]` with kernels transformed by
/// [`transform_kernels`] (`[16, K, C]`), 3x3, stride 1, pad 1, then `epilogue`; `g` must
/// satisfy [`applies`] (for an input gradient, `g`'s channels are those of the gradient
/// convolution).
pub fn conv3x3(
    g: &Geometry,
    input: &[f32],
    kernels: &[f32],
    epilogue: Epilogue,
) -> Result<Vec<f32>> {
    let (c, k, h, w) = (g.c_in, g.c_out, g.h, g.w);
    let bias_fits = epilogue.bias.is_none_or(|b| b.len() == k);
    if !applies(g)
        || kernels.len() != TILE * k * c
        || input.len() != g.batch * c * h * w
        || !bias_fits
    {
        candle_core::bail!("a Winograd 3x3 convolution cannot take {g:?}");
    }
    let (tiles_h, tiles_w) = (h.div_ceil(2), w.div_ceil(2));
    // Chunks of whole tile rows, of at least MIN_CHUNK_TILES tiles, evened out, and as
    // many per image as a multiple of the threads so that none waits for a last one.
    let threads = rayon::current_num_threads().max(1);
    let mut chunks_per_image = tiles_h / MIN_CHUNK_TILES.div_ceil(tiles_w).min(tiles_h);
    if chunks_per_image >= threads {
        chunks_per_image -= chunks_per_image % threads;
    }
    let rows_per_chunk = tiles_h.div_ceil(chunks_per_image);
    let chunks: Vec<(usize, usize)> = (0..g.batch)
        .flat_map(|b| (0..tiles_h).step_by(rows_per_chunk).map(move |i0| (b, i0)))
        .collect();
    // Fewer chunks than threads (small late layers): the threads share each chunk's 16
    // matrix products instead.
    let share_products = chunks.len() < threads;

    let plane = h * w;
    let mut out = vec![0f32; g.batch * k * plane];
    let dst = SharedOut(out.as_mut_ptr(), out.len());
    let run_chunk = |(b, i0): (usize, usize)| -> Result<()> {
        let mut scratch = Scratch::take(
            TILE * c * rows_per_chunk * tiles_w,
            TILE * k * rows_per_chunk * tiles_w,
            8 * (tiles_w + 1),
        );
        let Scratch { v, m, rows: work } = &mut *scratch;
        let i1 = (i0 + rows_per_chunk).min(tiles_h);
        let image = &input[b * c * plane..(b + 1) * c * plane];
        let n = (i1 - i0) * tiles_w;
        // Transformed input tiles: [16, C, n].
        let v = &mut v[..TILE * c * n];
        for ci in 0..c {
            let channel = &image[ci * plane..(ci + 1) * plane];
            for i in i0..i1 {
                input_tile_row(
                    channel,
                    (h, w),
                    i,
                    work,
                    v,
                    ci * n + (i - i0) * tiles_w,
                    c * n,
                );
            }
        }
        // Products per transformed position: m[xi] [K, n] = U[xi] [K, C] @ V[xi] [C, n].
        let m = &mut m[..TILE * k * n];
        let product = |(xi, m): (usize, &mut [f32])| {
            matmul_with(
                gemm::Parallelism::None,
                (k, n, c),
                (m, Strides::rows(n)),
                (&kernels[xi * k * c..(xi + 1) * k * c], Strides::rows(c)),
                (&v[xi * c * n..(xi + 1) * c * n], Strides::rows(n)),
            )
        };
        if share_products {
            m.par_chunks_mut(k * n).enumerate().try_for_each(product)?;
        } else {
            m.chunks_mut(k * n).enumerate().try_for_each(product)?;
        }
        // Back to pixels, straight into this chunk's output rows.
        let (y0, y1) = (2 * i0, (2 * i1).min(h));
        for ko in 0..k {
            let start = (b * k + ko) * plane + y0 * w;
            // SAFETY: chunks cover disjoint row ranges of each output plane, so no two
            // threads write the same element, and `start .. start + (y1 - y0) * w` lies
            // inside plane `ko` of image `b` of `out`, which outlives the parallel loop.
            let out_rows = unsafe { dst.slice(start, (y1 - y0) * w) };
            let bias = epilogue.bias.map_or(0.0, |b| b[ko]);
            for i in i0..i1 {
                let y = 2 * (i - i0);
                let take = (h - 2 * i).min(2);
                output_tile_row(
                    m,
                    ko * n + (i - i0) * tiles_w,
                    k * n,
                    work,
                    &mut out_rows[y * w..(y + take) * w],
                    w,
                    (bias, epilogue.low, epilogue.high),
                );
            }
        }
        Ok(())
    };
    if share_products {
        chunks.into_iter().try_for_each(run_chunk)?;
    } else {
        chunks.into_par_iter().try_for_each(run_chunk)?;
    }
    Ok(out)
}

/// A raw view of the output that chunks write disjoint parts of in parallel.
struct SharedOut(*mut f32, usize);

// SAFETY: only used to hand disjoint row ranges to parallel chunks (see `conv3x3`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `start + len` must be within the buffer and no other live slice may overlap it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.1);
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// One worker's buffers, kept by each thread between calls (the transformed tiles of a chunk
/// are megabytes: fresh zeroed ones cost page faults and a memset every chunk).
#[derive(Default)]
struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
    /// Row buffers for the transforms.
    rows: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

impl Scratch {
    /// This thread's buffers, at least this long; given back when dropped. (Taken, not
    /// borrowed: a thread waiting inside a chunk may run another chunk meanwhile.)
    fn take(v: usize, m: usize, rows: usize) -> ScratchGuard {
        let mut s = SCRATCH.take();
        for (buf, len) in [(&mut s.v, v), (&mut s.m, m), (&mut s.rows, rows)] {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        }
        ScratchGuard(s)
    }
}

/// A thread's [`Scratch`], put back when dropped.
struct ScratchGuard(Scratch);

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        SCRATCH.set(std::mem::take(&mut self.0));
    }
}

impl std::ops::Deref for ScratchGuard {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl std::ops::DerefMut for ScratchGuard {
    fn deref_mut(&mut self) -> &mut Scratch {
        &mut self.0
    }
}

multiversion! {
    /// Transforms tile row `i` of one channel `[h, w]`: `B^T d B` of each 4x4 input tile
    /// `d` (rows `2i-1 ..= 2i+2`, columns `2j-1 ..= 2j+2`, zeros outside), with
    /// `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`. Value `xi` of
    /// tile `j` goes to `v[at + xi * stride + j]`.
    fn input_tile_row(
        channel: &[f32],
        hw: (usize, usize),
        i: usize,
        rows: &mut [f32],
        v: &mut [f32],
        at: usize,
        stride: usize,
    ) {
        let (h, w) = hw;
        let tiles_w = w.div_ceil(2);
        let len = tiles_w + 1;
        let (even, odd) = rows[..8 * len].split_at_mut(4 * len);
        // even[r][j] = d(r, 2j - 1), odd[r][j] = d(r, 2j): the padded columns 2j and 2j + 1.
        for r in 0..4 {
            let (e, o) = (&mut even[r * len..(r + 1) * len], &mut odd[r * len..(r + 1) * len]);
            let y = (2 * i + r).wrapping_sub(1);
            if y >= h {
                e.fill(0.0);
                o.fill(0.0);
                continue;
            }
            let line = &channel[y * w..(y + 1) * w];
            let half = w / 2;
            for ((pair, oo), ee) in line.chunks_exact(2).zip(&mut o[..half]).zip(&mut e[1..=half]) {
                *oo = pair[0];
                *ee = pair[1];
            }
            e[0] = 0.0;
            o[tiles_w] = 0.0;
            if w % 2 == 1 {
                o[half] = line[w - 1];
                e[tiles_w] = 0.0;
            }
        }
        // Rows: B^T d, done on the even and odd columns alike, in place.
        for part in [&mut *even, &mut *odd] {
            let (r0, rest) = part.split_at_mut(len);
            let (r1, rest) = rest.split_at_mut(len);
            let (r2, r3) = rest.split_at_mut(len);
            for j in 0..len {
                let (d0, d1, d2, d3) = (r0[j], r1[j], r2[j], r3[j]);
                r0[j] = d0 - d2;
                r1[j] = d1 + d2;
                r2[j] = d2 - d1;
                r3[j] = d1 - d3;
            }
        }
        // Columns: (B^T d) B, tile j reading padded columns 2j .. 2j + 3.
        for r in 0..4 {
            let e = &even[r * len..(r + 1) * len];
            let o = &odd[r * len..(r + 1) * len];
            let base = at + 4 * r * stride;
            let (v0, rest) = v[base..].split_at_mut(stride);
            let (v1, rest) = rest.split_at_mut(stride);
            let (v2, v3) = rest.split_at_mut(stride);
            for j in 0..tiles_w {
                let (e0, o0, e1, o1) = (e[j], o[j], e[j + 1], o[j + 1]);
                v0[j] = e0 - e1;
                v1[j] = o0 + e1;
                v2[j] = e1 - o0;
                v3[j] = o0 - o1;
            }
        }
    }
}

multiversion! {
    /// Turns the products of one tile row back into pixels: `A^T m A` of each tile with
    /// `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`, value `xi` of tile `j` read from
    /// `m[at + xi * stride + j]`, then `clamp(v + bias, low, high)`, written to the first
    /// one or two rows of `out` (`w` wide).
    fn output_tile_row(
        m: &[f32],
        at: usize,
        stride: usize,
        rows: &mut [f32],
        out: &mut [f32],
        w: usize,
        epilogue: (f32, f32, f32),
    ) {
        let (bias, low, high) = epilogue;
        let tiles_w = w.div_ceil(2);
        // p[a][s][j] = (A^T m)[a][s] of tile j.
        let (p0, p1) = rows[..8 * tiles_w].split_at_mut(4 * tiles_w);
        for s in 0..4 {
            let row = |r: usize| &m[at + (4 * r + s) * stride..][..tiles_w];
            let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3));
            let a = &mut p0[s * tiles_w..(s + 1) * tiles_w];
            let b = &mut p1[s * tiles_w..(s + 1) * tiles_w];
            for j in 0..tiles_w {
                a[j] = m0[j] + m1[j] + m2[j];
                b[j] = m1[j] - m2[j] - m3[j];
            }
        }
        for (a, p) in [&*p0, &*p1].into_iter().enumerate() {
            if (a + 1) * w > out.len() {
                break;
            }
            let line = &mut out[a * w..(a + 1) * w];
            let (q0, q1, q2, q3) = (
                &p[..tiles_w],
                &p[tiles_w..2 * tiles_w],
                &p[2 * tiles_w..3 * tiles_w],
                &p[3 * tiles_w..],
            );
            let finish = |v: f32| (v + bias).max(low).min(high);
            let mut pairs = line.chunks_exact_mut(2);
            for (j, pair) in (&mut pairs).enumerate() {
                pair[0] = finish(q0[j] + q1[j] + q2[j]);
                pair[1] = finish(q1[j] - q2[j] - q3[j]);
            }
            if let [last] = pairs.into_remainder() {
                let j = tiles_w - 1;
                *last = finish(q0[j] + q1[j] + q2[j]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::geometry::Padding;

    /// Calls `f(output, input, weight)` with the flat indices of every multiply-add of a
    /// direct 3x3/1/1 convolution `[b, c, h, w]` -> `[b, k, h, w]`.
    fn each_tap(
        (b, c, h, w): (usize, usize, usize, usize),
        k: usize,
        mut f: impl FnMut(usize, usize, usize),
    ) {
        for bi in 0..b {
            for ko in 0..k {
                for y in 0..h {
                    for xx in 0..w {
                        for ci in 0..c {
                            for i in 0..3 {
                                for j in 0..3 {
                                    let (yy, xi) =
                                        ((y + i).wrapping_sub(1), (xx + j).wrapping_sub(1));
                                    if yy < h && xi < w {
                                        f(
                                            ((bi * k + ko) * h + y) * w + xx,
                                            ((bi * c + ci) * h + yy) * w + xi,
                                            ((ko * c + ci) * 3 + i) * 3 + j,
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Direct 3x3/1/1 convolution in f64, the reference.
    fn direct(
        x: &[f32],
        wt: &[f32],
        (b, c, h, w): (usize, usize, usize, usize),
        k: usize,
    ) -> Vec<f64> {
        let mut out = vec![0f64; b * k * h * w];
        each_tap((b, c, h, w), k, |o, i, t| {
            out[o] += x[i] as f64 * wt[t] as f64
        });
        out
    }

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn relative_error(a: &[f32], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(b)
            .fold(0f64, |m, (x, y)| m.max((*x as f64 - y).abs()));
        diff / scale
    }

    #[test]
    fn matches_direct_convolution_and_its_input_gradient() {
        // Odd and even sizes, one tile row and many, several chunks per image, batch 2.
        for (b, c, k, h, w) in [
            (2, 16, 24, 7, 9),
            (1, 32, 16, 14, 14),
            (1, 16, 16, 1, 5),
            (2, 17, 19, 12, 3),
            (1, 16, 16, 41, 40),
        ] {
            let x = noise(b * c * h * w, 1);
            let wt = noise(k * c * 9, 2);
            let g = Geometry::new((b, c, h, w), k, 3, 1, Padding::Symmetric(1)).unwrap();
            assert!(applies(&g));
            let got =
                conv3x3(&g, &x, &transform_kernels(&wt, k, c, false), Epilogue::NONE).unwrap();
            let want = direct(&x, &wt, (b, c, h, w), k);
            assert!(
                relative_error(&got, &want) < 1e-6,
                "forward {b}x{c}x{h}x{w} -> {k}"
            );

            // Bias and ReLU6 as the tiles are written.
            let bias = noise(k, 4);
            let epilogue = Epilogue {
                bias: Some(&bias),
                low: 0.0,
                high: 2.0,
            };
            let got = conv3x3(&g, &x, &transform_kernels(&wt, k, c, false), epilogue).unwrap();
            let plane = h * w;
            let want: Vec<f64> = want
                .iter()
                .enumerate()
                .map(|(i, v)| (v + bias[(i / plane) % k] as f64).clamp(0.0, 2.0))
                .collect();
            assert!(
                relative_error(&got, &want) < 1e-5,
                "epilogue {b}x{c}x{h}x{w} -> {k}: {}",
                relative_error(&got, &want)
            );

            // Input gradient of sum(out * dy) is the flipped, channel-swapped convolution.
            let dy = noise(b * k * h * w, 3);
            let gg = Geometry::new((b, k, h, w), c, 3, 1, Padding::Symmetric(1)).unwrap();
            let got = conv3x3(
                &gg,
                &dy,
                &transform_kernels(&wt, k, c, true),
                Epilogue::NONE,
            )
            .unwrap();
            let mut want = vec![0f64; b * c * h * w];
            each_tap((b, c, h, w), k, |o, i, t| {
                want[i] += dy[o] as f64 * wt[t] as f64
            });
            assert!(
                relative_error(&got, &want) < 1e-6,
                "input grad {b}x{c}x{h}x{w} -> {k}"
            );
        }
    }
}
