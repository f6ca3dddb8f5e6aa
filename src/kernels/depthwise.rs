//! Depthwise convolutions (one kernel per channel), a direct kernel over each channel plane,
//! in parallel over planes.
//!
//! The padded plane is split into stride x stride phase planes so that each of the k x k taps
//! is one long contiguous axpy (also for strided and 7x7 planes); the input gradient runs the
//! same taps transposed.

use rayon::prelude::*;

use super::geometry::Geometry;
use super::simd::axpy;

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

/// Scratch buffers of one depthwise worker: the phase planes and the output laid out
/// `cols` wide.
fn depthwise_scratch(phases: &PhasePlanes) -> (Vec<f32>, Vec<f32>) {
    (
        vec![0f32; phases.len()],
        vec![0f32; phases.out_h * phases.cols],
    )
}

/// Depthwise convolution forward, one channel plane at a time (in parallel over planes).
pub fn depthwise_forward(g: &Geometry, input: &[f32], weight: &[f32]) -> Vec<f32> {
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
pub fn depthwise_input_grad(g: &Geometry, grad_out: &[f32], weight: &[f32]) -> Vec<f32> {
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
