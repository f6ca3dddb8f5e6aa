//! Fast CPU ops for frozen weights, as candle custom ops.
//!
//! candle's CPU convolution transposes the input to NHWC with scalar loops, splits a depthwise
//! convolution into one convolution per channel, and its backward runs a naive transposed
//! convolution that also computes kernel gradients nobody asked for; its matmul backward
//! likewise builds the (huge, for VGG's fc6) weight gradient. These ops compute what a
//! pretrained, frozen backbone needs, in f32 on the CPU:
//!
//! - [`conv2d_frozen`]: im2col + gemm (chunked over output rows, written straight into NCHW),
//!   with a backward that returns only the input gradient (gemm + col2im).
//! - [`depthwise_conv2d_frozen`]: a direct kernel over each channel plane, in parallel over
//!   channels: the padded plane is split into stride x stride phase planes so that each of the
//!   k x k taps is one long contiguous axpy (also for strided and 7x7 planes); its
//!   input-gradient backward runs the same taps transposed.
//! - Convolutions pad as they go, symmetric or TensorFlow's "same" (odd zero bottom/right), so
//!   no padded copy of the input is made.
//! - [`linear_frozen`]: `x @ w^T` whose backward returns only `grad @ w`.
//! - [`max_pool`]: max-pooling (VGG's 2x2/2, ResNet's overlapping 3x3/2 with padding) whose
//!   backward routes each gradient to the window's first maximum, as PyTorch does.
//!
//! Their weights get no gradient: use candle's own ops for layers being trained. The kernels
//! are also used by [`super::program`], which runs a whole frozen network as one op; the
//! element-wise loops are compiled for AVX-512/AVX2 too and picked at run time
//! (`multiversion!`).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::layers::Padding;

/// Defines a function whose body is compiled three times, for AVX-512F, for AVX2+FMA and for
/// the baseline, and picks at run time the best the CPU has: our element-wise loops then
/// vectorise 16 or 8 floats wide instead of SSE2's 4 (the crate is built for any x86-64).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above, for `avx2`.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(super) use multiversion;

/// Geometry of a square-kernel convolution. Zeros pad the input `pad_top` rows above and
/// `pad_left` columns left of it; the output size says how many more (TensorFlow's "same"
/// padding puts the odd one bottom/right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
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
    fn is_pointwise(&self) -> bool {
        self.k == 1
            && self.stride == 1
            && (self.pad_top, self.pad_left) == (0, 0)
            && (self.out_h, self.out_w) == (self.h, self.w)
    }
}

/// The contiguous f32 data of a storage/layout pair.
pub(super) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// Output rows per chunk so that one im2col chunk stays around 16 MB.
fn rows_per_chunk(k_size: usize, out_w: usize, out_h: usize) -> usize {
    let budget = (16 << 20) / 4;
    (budget / (k_size * out_w).max(1)).clamp(1, out_h)
}

/// gemm's threads: those of the rayon pool we run in. (Not candle's `get_num_threads`, which
/// parses `/proc/cpuinfo` on every call: over a thousand reads per EfficientNet dream step.)
pub(super) fn parallelism() -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
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

/// `dst[m, n] (row stride dst_rs) = lhs[m, k] @ rhs[k, n]`, every matrix given by strides.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    dims: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
) {
    matmul_with(
        parallelism(),
        dims,
        dst,
        dst_rs,
        lhs,
        lhs_strides,
        rhs,
        rhs_rs,
        rhs_cs,
    )
}

/// [`matmul`] on the given threads (`Parallelism::None` inside an already parallel loop).
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_with(
    parallelism: gemm::Parallelism,
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
) {
    debug_assert!(dst.len() >= (m - 1) * dst_rs + n);
    debug_assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above and the callers' shapes keep every access inside the slices;
    // dst does not alias lhs or rhs (distinct buffers).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

pub(super) fn conv_forward(g: &Geometry, input: &[f32], weight: &[f32]) -> Vec<f32> {
    let (out_h, out_w) = (g.out_h, g.out_w);
    let k_size = g.c_in * g.k * g.k;
    let plane = out_h * out_w;
    let mut out = vec![0f32; g.batch * g.c_out * plane];
    let chunk_rows = rows_per_chunk(k_size, out_w, out_h);
    let mut col = vec![0f32; k_size * chunk_rows * out_w];
    for b in 0..g.batch {
        let img = &input[b * g.c_in * g.h * g.w..(b + 1) * g.c_in * g.h * g.w];
        let out_img = &mut out[b * g.c_out * plane..(b + 1) * g.c_out * plane];
        if g.is_pointwise() {
            // The image is its own im2col matrix.
            matmul(
                (g.c_out, plane, g.c_in),
                out_img,
                plane,
                weight,
                (g.c_in, 1),
                img,
                plane,
                1,
            );
            continue;
        }
        for row0 in (0..out_h).step_by(chunk_rows) {
            let rows = chunk_rows.min(out_h - row0);
            let n = rows * out_w;
            let col = &mut col[..k_size * n];
            im2col(g, img, row0, rows, col);
            matmul(
                (g.c_out, n, k_size),
                &mut out_img[row0 * out_w..],
                plane,
                weight,
                (k_size, 1),
                col,
                n,
                1,
            );
        }
    }
    out
}

pub(super) fn conv_input_grad(g: &Geometry, grad_out: &[f32], weight: &[f32]) -> Vec<f32> {
    let (out_h, out_w) = (g.out_h, g.out_w);
    let k_size = g.c_in * g.k * g.k;
    let plane = out_h * out_w;
    let mut grad_in = vec![0f32; g.batch * g.c_in * g.h * g.w];
    let chunk_rows = rows_per_chunk(k_size, out_w, out_h);
    let mut col = vec![0f32; k_size * chunk_rows * out_w];
    for b in 0..g.batch {
        let go = &grad_out[b * g.c_out * plane..(b + 1) * g.c_out * plane];
        let gi = &mut grad_in[b * g.c_in * g.h * g.w..(b + 1) * g.c_in * g.h * g.w];
        if g.is_pointwise() {
            matmul(
                (g.c_in, plane, g.c_out),
                gi,
                plane,
                weight,
                (1, g.c_in),
                go,
                plane,
                1,
            );
            continue;
        }
        for row0 in (0..out_h).step_by(chunk_rows) {
            let rows = chunk_rows.min(out_h - row0);
            let n = rows * out_w;
            let col = &mut col[..k_size * n];
            // col[K, n] = W^T[K, c_out] @ grad_out[c_out, n]
            matmul(
                (k_size, n, g.c_out),
                col,
                n,
                weight,
                (1, k_size),
                &go[row0 * out_w..],
                plane,
                1,
            );
            col2im(g, col, row0, rows, gi);
        }
    }
    grad_in
}

/// The zero-padded input window of one depthwise plane, split into `stride x stride` phase
/// planes: phase `(q, r)` holds padded pixels `(q + stride * i, r + stride * j)` at `[i, j]`.
/// Kernel tap `(kh, kw)` then reads phase `(kh % stride, kw % stride)` from
/// `(kh / stride, kw / stride)` on, and the whole output, laid out `cols` wide, is one
/// contiguous run of it: each tap is a single long axpy even for 7x7 planes.
struct PhasePlanes {
    stride: usize,
    /// Rows and columns of each phase plane.
    rows: usize,
    cols: usize,
    /// Where input pixel (0, 0) sits in the padded window.
    pad_top: usize,
    pad_left: usize,
    /// Input rows/columns inside the window (the rest is cropped by the stride).
    in_rows: usize,
    in_cols: usize,
    out_h: usize,
    out_w: usize,
}

impl PhasePlanes {
    fn new(g: &Geometry) -> Self {
        let height = (g.out_h - 1) * g.stride + g.k;
        let width = (g.out_w - 1) * g.stride + g.k;
        Self {
            stride: g.stride,
            rows: height.div_ceil(g.stride),
            cols: width.div_ceil(g.stride),
            pad_top: g.pad_top,
            pad_left: g.pad_left,
            in_rows: g.h.min(height.saturating_sub(g.pad_top)),
            in_cols: g.w.min(width.saturating_sub(g.pad_left)),
            out_h: g.out_h,
            out_w: g.out_w,
        }
    }

    /// Values in all phase planes.
    fn len(&self) -> usize {
        self.stride * self.stride * self.rows * self.cols
    }

    /// The output laid out `cols` wide: the length of every tap's run.
    fn run_len(&self) -> usize {
        (self.out_h - 1) * self.cols + self.out_w
    }

    /// Where tap `(kh, kw)`'s run starts.
    fn tap_start(&self, kh: usize, kw: usize) -> usize {
        let s = self.stride;
        let plane = ((kh % s) * s + kw % s) * self.rows * self.cols;
        plane + (kh / s) * self.cols + kw / s
    }

    /// Where padded pixel `(py, px)` lives.
    fn index(&self, py: usize, px: usize) -> usize {
        let s = self.stride;
        (((py % s) * s + px % s) * self.rows + py / s) * self.cols + px / s
    }

    /// For padded row `py` of an input line of `len` pixels, per phase column: the first
    /// pixel `x0` in it, where it lands, and how many (every `stride`-th pixel from `x0`)
    /// follow contiguously there.
    fn phase_runs(
        &self,
        py: usize,
        len: usize,
    ) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let s = self.stride;
        (0..s).filter_map(move |r| {
            let x0 = (r + s - self.pad_left % s) % s;
            (x0 < len).then(|| {
                (
                    x0,
                    self.index(py, x0 + self.pad_left),
                    (len - x0).div_ceil(s),
                )
            })
        })
    }

    /// Copies the input plane `[h, w]` (row length `w`) into the (zeroed) phase planes.
    fn scatter(&self, planes: &mut [f32], plane: &[f32], w: usize) {
        for y in 0..self.in_rows {
            let line = &plane[y * w..y * w + self.in_cols];
            let py = y + self.pad_top;
            if self.stride == 1 {
                let at = self.index(py, self.pad_left);
                planes[at..at + line.len()].copy_from_slice(line);
            } else {
                for (x0, at, n) in self.phase_runs(py, line.len()) {
                    let run = planes[at..at + n].iter_mut();
                    for (d, &v) in run.zip(line[x0..].iter().step_by(self.stride)) {
                        *d = v;
                    }
                }
            }
        }
    }

    /// The transpose of [`PhasePlanes::scatter`]: reads the window back into `[h, w]`.
    fn gather(&self, planes: &[f32], plane: &mut [f32], w: usize) {
        for y in 0..self.in_rows {
            let line = &mut plane[y * w..y * w + self.in_cols];
            let py = y + self.pad_top;
            if self.stride == 1 {
                let at = self.index(py, self.pad_left);
                line.copy_from_slice(&planes[at..at + line.len()]);
            } else {
                for (x0, at, n) in self.phase_runs(py, line.len()) {
                    let run = planes[at..at + n].iter();
                    for (&v, d) in run.zip(line[x0..].iter_mut().step_by(self.stride)) {
                        *d = v;
                    }
                }
            }
        }
    }
}

multiversion! {
    /// `dst += a * src`, element-wise.
    fn axpy(dst: &mut [f32], a: f32, src: &[f32]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d += a * x;
        }
    }
}

multiversion! {
    /// `dst += src`, element-wise.
    fn add_assign(dst: &mut [f32], src: &[f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

/// Scratch buffers of one depthwise worker: the phase planes and the output laid out
/// `cols` wide.
fn depthwise_scratch(phases: &PhasePlanes) -> (Vec<f32>, Vec<f32>) {
    (
        vec![0f32; phases.len()],
        vec![0f32; phases.out_h * phases.cols],
    )
}

/// Depthwise convolution forward, one channel plane at a time (in parallel over planes).
pub(super) fn depthwise_forward(g: &Geometry, input: &[f32], weight: &[f32]) -> Vec<f32> {
    let (out_h, out_w) = (g.out_h, g.out_w);
    let phases = PhasePlanes::new(g);
    let n = phases.run_len();
    let mut out = vec![0f32; g.batch * g.c_in * out_h * out_w];
    out.par_chunks_mut(out_h * out_w).enumerate().for_each_init(
        || depthwise_scratch(&phases),
        |(planes, wide), (bc, dst)| {
            let c = bc % g.c_in;
            let kernel = &weight[c * g.k * g.k..(c + 1) * g.k * g.k];
            planes.fill(0.0);
            phases.scatter(planes, &input[bc * g.h * g.w..(bc + 1) * g.h * g.w], g.w);
            wide.fill(0.0);
            for kh in 0..g.k {
                for kw in 0..g.k {
                    let at = phases.tap_start(kh, kw);
                    axpy(&mut wide[..n], kernel[kh * g.k + kw], &planes[at..at + n]);
                }
            }
            for oy in 0..out_h {
                let row = &wide[oy * phases.cols..oy * phases.cols + out_w];
                dst[oy * out_w..(oy + 1) * out_w].copy_from_slice(row);
            }
        },
    );
    out
}

/// The input gradient of [`depthwise_forward`]: the transposed taps into the phase planes,
/// then the window read back into the input's shape.
pub(super) fn depthwise_input_grad(g: &Geometry, grad_out: &[f32], weight: &[f32]) -> Vec<f32> {
    let (out_h, out_w) = (g.out_h, g.out_w);
    let phases = PhasePlanes::new(g);
    let n = phases.run_len();
    let mut grad_in = vec![0f32; g.batch * g.c_in * g.h * g.w];
    grad_in.par_chunks_mut(g.h * g.w).enumerate().for_each_init(
        || depthwise_scratch(&phases),
        |(planes, wide), (bc, dst)| {
            let c = bc % g.c_in;
            let kernel = &weight[c * g.k * g.k..(c + 1) * g.k * g.k];
            let src = &grad_out[bc * out_h * out_w..(bc + 1) * out_h * out_w];
            // The gap columns stay zero, so they add nothing.
            wide.fill(0.0);
            for oy in 0..out_h {
                wide[oy * phases.cols..oy * phases.cols + out_w]
                    .copy_from_slice(&src[oy * out_w..(oy + 1) * out_w]);
            }
            planes.fill(0.0);
            for kh in 0..g.k {
                for kw in 0..g.k {
                    let at = phases.tap_start(kh, kw);
                    axpy(&mut planes[at..at + n], kernel[kh * g.k + kw], &wide[..n]);
                }
            }
            phases.gather(planes, dst, g.w);
        },
    );
    grad_in
}

/// The output columns `lo..hi` whose input column `ox * stride + kw - pad_left` is inside
/// the row.
fn valid_columns(g: &Geometry, kw: usize, out_w: usize) -> (usize, usize) {
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

/// Which computation an op runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Dense convolution, `(input, weight)` -> output.
    Forward,
    /// Its input gradient, `(grad_output, weight)` -> grad_input.
    InputGrad,
    DepthwiseForward,
    DepthwiseInputGrad,
}

/// One convolution custom op; `h`, `w` are the input's spatial size (needed by the gradient
/// ops, whose first argument is the output gradient).
#[derive(Debug, Clone, Copy)]
struct ConvOp {
    kind: Kind,
    stride: usize,
    padding: Padding,
    h: usize,
    w: usize,
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Forward => "conv2d-frozen",
            Kind::InputGrad => "conv2d-frozen-input-grad",
            Kind::DepthwiseForward => "depthwise-conv2d-frozen",
            Kind::DepthwiseInputGrad => "depthwise-conv2d-frozen-input-grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "conv input")?;
        let weight = f32_slice(s2, l2, "conv weight")?;
        let (n, c1, h1, w1) = l1.shape().dims4()?;
        let (c_out, c_in_k, k, _) = l2.shape().dims4()?;
        let depthwise = matches!(self.kind, Kind::DepthwiseForward | Kind::DepthwiseInputGrad);
        let forward = matches!(self.kind, Kind::Forward | Kind::DepthwiseForward);
        let (h, w) = if forward { (h1, w1) } else { (self.h, self.w) };
        let c_in = if depthwise { c_out } else { c_in_k };
        let g = Geometry::new((n, c_in, h, w), c_out, k, self.stride, self.padding)?;
        let expected_channels = if forward { g.c_in } else { g.c_out };
        if c1 != expected_channels || (depthwise && c_in_k != 1) {
            candle_core::bail!(
                "{}: {c1} channels for a {:?} kernel",
                self.name(),
                l2.dims()
            );
        }
        if !forward && (h1, w1) != (g.out_h, g.out_w) {
            candle_core::bail!("{}: gradient of shape {:?}", self.name(), l1.dims());
        }
        let (data, shape) = match self.kind {
            Kind::Forward => (conv_forward(&g, x, weight), (n, g.c_out, g.out_h, g.out_w)),
            Kind::DepthwiseForward => (
                depthwise_forward(&g, x, weight),
                (n, g.c_in, g.out_h, g.out_w),
            ),
            Kind::InputGrad => (conv_input_grad(&g, x, weight), (n, g.c_in, g.h, g.w)),
            Kind::DepthwiseInputGrad => {
                (depthwise_input_grad(&g, x, weight), (n, g.c_in, g.h, g.w))
            }
        };
        Ok((CpuStorage::F32(data), Shape::from(shape)))
    }

    fn bwd(
        &self,
        input: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let kind = match self.kind {
            Kind::Forward => Kind::InputGrad,
            Kind::DepthwiseForward => Kind::DepthwiseInputGrad,
            _ => return Err(candle_core::Error::BackwardNotSupported { op: self.name() }),
        };
        let (_, _, h, w) = input.dims4()?;
        let op = ConvOp {
            kind,
            h,
            w,
            ..*self
        };
        let grad_in = grad_res.contiguous()?.apply_op2_no_bwd(weight, &op)?;
        // Frozen weights: no kernel gradient.
        Ok((Some(grad_in), None))
    }
}

/// `x @ w^T` for frozen `w`: the input gradient only.
#[derive(Debug, Clone, Copy)]
struct LinearOp;

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "linear-frozen"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "linear input")?;
        let w = f32_slice(s2, l2, "linear weight")?;
        let (batch, d_in) = l1.shape().dims2()?;
        let (d_out, w_in) = l2.shape().dims2()?;
        if w_in != d_in {
            candle_core::bail!("linear-frozen: input {d_in} wide, weight {:?}", l2.dims());
        }
        let mut out = vec![0f32; batch * d_out];
        // w [out, in] read as w^T [in, out]: row stride 1, column stride in.
        matmul(
            (batch, d_out, d_in),
            &mut out,
            d_out,
            x,
            (d_in, 1),
            w,
            1,
            d_in,
        );
        Ok((CpuStorage::F32(out), Shape::from((batch, d_out))))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad_res.matmul(w)?), None))
    }
}

/// `x` `[B, in]` times frozen `w` `[out, in]` transposed: `[B, out]`. Gradients reach `x` only.
pub fn linear_frozen(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, LinearOp)
}

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
    fn span(&self, o: usize, n: usize) -> (usize, usize) {
        let start = (o * self.stride).saturating_sub(self.padding);
        let end = (o * self.stride + self.kernel)
            .saturating_sub(self.padding)
            .min(n);
        (start, end)
    }
}

/// Max-pooling over a [`PoolWindow`]; the gradient goes to each window's first maximum.
#[derive(Debug, Clone, Copy)]
struct MaxPoolOp(PoolWindow);

/// (channel planes over the batch, height, width) of a `[B, C, H, W]` layout.
fn pool_dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let (b, c, h, w) = l.shape().dims4()?;
    Ok((b * c, h, w))
}

impl candle_core::CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "max-pool input")?;
        let (planes, h, w) = pool_dims(l)?;
        let out = max_pool_forward(x, planes, h, w, self.0);
        let (b, c, _, _) = l.shape().dims4()?;
        let shape = Shape::from((b, c, self.0.out_size(h), self.0.out_size(w)));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &MaxPoolGradOp(self.0))?;
        Ok(Some(grad))
    }
}

/// The gradient of [`MaxPoolOp`]: `(input, grad_output)` -> grad_input.
#[derive(Debug, Clone, Copy)]
struct MaxPoolGradOp(PoolWindow);

impl CustomOp2 for MaxPoolGradOp {
    fn name(&self) -> &'static str {
        "max-pool-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "max-pool input")?;
        let g = f32_slice(s2, l2, "max-pool gradient")?;
        let (planes, h, w) = pool_dims(l1)?;
        let out = max_pool_grad(x, g, planes, h, w, self.0);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
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
pub(super) fn max_pool_forward(
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
                    let (a, b) = (
                        r0[2 * ox].max(r0[2 * ox + 1]),
                        r1[2 * ox].max(r1[2 * ox + 1]),
                    );
                    dst[oy * ow + ox] = a.max(b);
                }
            }
        });
    out
}

/// The input gradient of [`max_pool_forward`]: each output's gradient goes to its window's
/// first maximum in row-major order (PyTorch's rule; padding never wins).
pub(super) fn max_pool_grad(
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

/// 2x2/2 max-pooling of `x` `[B, C, H, W]` -> `[B, C, H/2, W/2]` on the CPU in f32; the
/// gradient goes to each window's first maximum (PyTorch's rule).
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    max_pool(x, PoolWindow::TWO_BY_TWO)
}

/// Max-pooling of `x` `[B, C, H, W]` over `window` on the CPU in f32 ->
/// `[B, C, window.out_size(H), window.out_size(W)]`; the gradient goes to each window's first
/// maximum (PyTorch's rule), also where windows overlap (candle has no backward for that).
pub fn max_pool(x: &Tensor, window: PoolWindow) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if window.out_size(h) == 0 || window.out_size(w) == 0 {
        candle_core::bail!("a {0}x{0} pool does not fit a {h}x{w} input", window.kernel);
    }
    x.contiguous()?.apply_op1(MaxPoolOp(window))
}

/// `min(max(x, 0), top)` (ReLU with `top` = infinity, ReLU6 with 6) in one pass; its
/// gradient is one pass too (candle's clamp builds two comparison masks per bound and a
/// gradient for each bound, its ReLU a mask and a product).
#[derive(Debug, Clone, Copy)]
struct BoundedReluOp {
    top: f32,
}

impl candle_core::CustomOp1 for BoundedReluOp {
    fn name(&self) -> &'static str {
        "bounded-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "relu input")?;
        let top = self.top;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(64 * 1024)
            .zip(x.par_chunks(64 * 1024))
            .for_each(|(dst, src)| {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = v.max(0.0).min(top);
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = arg.contiguous()?.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &BoundedReluGradOp { top: self.top },
        )?;
        Ok(Some(grad))
    }
}

/// The gradient of [`BoundedReluOp`]: `(input, grad_output)` -> grad_output where
/// 0 < x < top, else 0 (PyTorch's rule for ReLU and hardtanh: none at the bounds).
#[derive(Debug, Clone, Copy)]
struct BoundedReluGradOp {
    top: f32,
}

impl CustomOp2 for BoundedReluGradOp {
    fn name(&self) -> &'static str {
        "bounded-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "relu input")?;
        let g = f32_slice(s2, l2, "relu gradient")?;
        if x.len() != g.len() {
            candle_core::bail!("relu gradient: {} values for {} inputs", g.len(), x.len());
        }
        let mut out = g.to_vec();
        mask_outside_band(&mut out, x, self.top);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

multiversion! {
    /// Zeroes the gradients whose value (input or output of the activation: the same test)
    /// is not strictly inside `(0, top)`.
    fn mask_chunk(grad: &mut [f32], values: &[f32], top: f32) {
        for (g, &v) in grad.iter_mut().zip(values) {
            *g = if v > 0.0 && v < top { *g } else { 0.0 };
        }
    }
}

/// Below this many values an element-wise pass runs on the calling thread: waking the pool
/// costs more than it saves.
pub(super) const PARALLEL_MIN: usize = 1 << 15;

/// The gradient rule of ReLU (`top` infinite) and ReLU6 (`top` 6), PyTorch's: no gradient at
/// 0 or at the top. `values` are the activation's inputs or outputs.
pub(super) fn mask_outside_band(grad: &mut [f32], values: &[f32], top: f32) {
    if grad.len() < PARALLEL_MIN {
        mask_chunk(grad, values, top);
        return;
    }
    grad.par_chunks_mut(PARALLEL_MIN)
        .zip(values.par_chunks(PARALLEL_MIN))
        .for_each(|(g, v)| mask_chunk(g, v, top));
}

/// ReLU6 of `x` on the CPU in f32, with a one-pass gradient.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(BoundedReluOp { top: 6.0 })
}

/// ReLU of `x` on the CPU in f32, with a one-pass gradient.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op1(BoundedReluOp { top: f32::INFINITY })
}

/// Whether the fast ops can run on `x` (f32 on the CPU).
pub fn supported(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// Convolution of `x` `[B, C_in, H, W]` with frozen `weight` `[C_out, C_in, k, k]` (no
/// groups, no bias, zero padding): `[B, C_out, H', W']`. Gradients reach `x`, not
/// `weight`.
pub fn conv2d_frozen(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: Padding,
) -> Result<Tensor> {
    let op = ConvOp {
        kind: Kind::Forward,
        stride,
        padding,
        h: 0,
        w: 0,
    };
    x.contiguous()?.apply_op2(&weight.contiguous()?, op)
}

/// Depthwise convolution of `x` `[B, C, H, W]` with frozen `weight` `[C, 1, k, k]`:
/// `[B, C, H', W']`. Gradients reach `x`, not `weight`.
pub fn depthwise_conv2d_frozen(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: Padding,
) -> Result<Tensor> {
    let op = ConvOp {
        kind: Kind::DepthwiseForward,
        stride,
        padding,
        h: 0,
        w: 0,
    };
    x.contiguous()?.apply_op2(&weight.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// The fast ops agree with candle's reference convolution, forward and input gradient.
    fn check(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize, groups: usize) {
        let dev = Device::Cpu;
        // 13x11: candle's reference backward needs strided outputs that tile the input exactly.
        let x0 = Tensor::randn(0f32, 1.0, (2, c_in, 13, 11), &dev).unwrap();
        let weight = Tensor::randn(0f32, 1.0, (c_out, c_in / groups, k, k), &dev).unwrap();
        let upstream = {
            let y = x0.conv2d(&weight, pad, stride, 1, groups).unwrap();
            Tensor::randn(0f32, 1.0, y.shape(), &dev).unwrap()
        };
        let reference = Var::from_tensor(&x0).unwrap();
        let fast = Var::from_tensor(&x0).unwrap();
        let y_ref = reference
            .as_tensor()
            .conv2d(&weight, pad, stride, 1, groups)
            .unwrap();
        let y_fast = if groups == 1 {
            conv2d_frozen(fast.as_tensor(), &weight, stride, Padding::Symmetric(pad)).unwrap()
        } else {
            depthwise_conv2d_frozen(fast.as_tensor(), &weight, stride, Padding::Symmetric(pad))
                .unwrap()
        };
        assert!(
            max_diff(&y_ref, &y_fast) < 1e-4,
            "forward k{k} s{stride} p{pad} g{groups}"
        );
        let g_ref = (y_ref * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_fast = (y_fast * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (a, b) = (
            g_ref.get(reference.as_tensor()).unwrap(),
            g_fast.get(fast.as_tensor()).unwrap(),
        );
        assert!(
            max_diff(a, b) < 1e-4,
            "input gradient k{k} s{stride} p{pad} g{groups}"
        );
    }

    /// TensorFlow "same" padding (odd zero bottom/right) against candle on a padded input.
    #[test]
    fn tf_same_padding_matches_explicit_padding() {
        let dev = Device::Cpu;
        for (k, stride, groups) in [(3, 2, 1), (5, 2, 4), (3, 1, 4), (1, 1, 1), (3, 2, 4)] {
            for (h, w) in [(12, 9), (14, 14), (7, 7)] {
                let x0 = Tensor::randn(0f32, 1.0, (1, 4, h, w), &dev).unwrap();
                let weight = Tensor::randn(0f32, 1.0, (4, 4 / groups, k, k), &dev).unwrap();
                let reference = Var::from_tensor(&x0).unwrap();
                let fast = Var::from_tensor(&x0).unwrap();
                let padded =
                    crate::model::layers::pad_tf_same(reference.as_tensor(), k, stride).unwrap();
                let want = padded.conv2d(&weight, 0, stride, 1, groups).unwrap();
                let got = if groups == 1 {
                    conv2d_frozen(fast.as_tensor(), &weight, stride, Padding::TfSame).unwrap()
                } else {
                    depthwise_conv2d_frozen(fast.as_tensor(), &weight, stride, Padding::TfSame)
                        .unwrap()
                };
                let case = format!("k{k} s{stride} g{groups} {h}x{w}");
                assert_eq!(got.dims(), want.dims(), "{case}");
                assert!(max_diff(&got, &want) < 1e-4, "{case}");
                let up = Tensor::randn(0f32, 1.0, want.shape(), &dev).unwrap();
                let g_want = (want * &up).unwrap().sum_all().unwrap().backward().unwrap();
                let g_got = (got * &up).unwrap().sum_all().unwrap().backward().unwrap();
                let (a, b) = (
                    g_want.get(reference.as_tensor()).unwrap(),
                    g_got.get(fast.as_tensor()).unwrap(),
                );
                assert!(max_diff(a, b) < 1e-4, "gradient {case}");
            }
        }
    }

    #[test]
    fn dense_convolutions_match_candle() {
        check(3, 5, 3, 1, 1, 1);
        check(4, 6, 3, 2, 0, 1);
        check(4, 6, 1, 1, 0, 1);
        check(4, 6, 1, 2, 0, 1);
        check(3, 8, 5, 2, 2, 1);
    }

    #[test]
    fn linear_and_max_pool_match_candle() {
        let dev = Device::Cpu;
        let x0 = Tensor::randn(0f32, 1.0, (3, 7), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (5, 7), &dev).unwrap();
        let x = Var::from_tensor(&x0).unwrap();
        let y = linear_frozen(x.as_tensor(), &w).unwrap();
        assert!(max_diff(&y, &x0.matmul(&w.t().unwrap()).unwrap()) < 1e-5);
        let up = Tensor::randn(0f32, 1.0, (3, 5), &dev).unwrap();
        let g = (y * &up).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g.get(x.as_tensor()).unwrap(), &up.matmul(&w).unwrap()) < 1e-5);

        let p0 = Tensor::randn(0f32, 1.0, (2, 3, 6, 7), &dev).unwrap();
        let p = Var::from_tensor(&p0).unwrap();
        let y = max_pool2x2(p.as_tensor()).unwrap();
        assert!(max_diff(&y, &p0.max_pool2d(2).unwrap()) < 1e-6);
        let g = y.sum_all().unwrap().backward().unwrap();
        let g = g.get(p.as_tensor()).unwrap();
        // One unit of gradient per window, on its maximum; the dropped last column gets none.
        assert_eq!(
            g.sum_all().unwrap().to_scalar::<f32>().unwrap(),
            2.0 * 3.0 * 3.0 * 3.0
        );
        let last_col = g.narrow(3, 6, 1).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(last_col.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn relu_and_relu6_match_candle_and_their_gradients() {
        let dev = Device::Cpu;
        // Values spread over (-4, 10): below, inside and above the band, none exactly on a bound.
        let x0 =
            ((Tensor::rand(0f32, 1.0, (2, 3, 5, 7), &dev).unwrap() * 14.0).unwrap() - 4.0).unwrap();
        let up = Tensor::randn(0f32, 1.0, (2, 3, 5, 7), &dev).unwrap();
        let ours = Var::from_tensor(&x0).unwrap();
        let theirs = Var::from_tensor(&x0).unwrap();
        let y = relu6(ours.as_tensor()).unwrap();
        let y_ref = theirs.as_tensor().clamp(0f32, 6f32).unwrap();
        assert!(max_diff(&y, &y_ref) < 1e-7);
        let g = (y * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (y_ref * &up)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(
            max_diff(
                g.get(ours.as_tensor()).unwrap(),
                g_ref.get(theirs.as_tensor()).unwrap()
            ) < 1e-7
        );
    }

    #[test]
    fn depthwise_convolutions_match_candle() {
        check(6, 6, 3, 1, 1, 6);
        check(6, 6, 3, 2, 0, 6);
        check(4, 4, 5, 1, 2, 4);
        check(4, 4, 5, 2, 0, 4);
    }
}
