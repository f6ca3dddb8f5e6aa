//! A frozen backbone flattened into a list of CPU steps and run as **one** candle op.
//!
//! Dreams and attacks differentiate the whole network with respect to its input many times a
//! second. Through candle's autograd every layer is several graph nodes (convolution, bias,
//! activation, padding), each of which allocates its output, and whose backward allocates a
//! zero gradient and adds into it; candle's element-wise ops also spin on a thread barrier.
//! A [`FrozenProgram`] runs the same layers with our kernels, bias and activation fused into
//! the convolution's output pass, keeps what the backward needs (each step's output), and its
//! backward walks the steps in reverse computing only input gradients. Candle sees one node.
//!
//! The models' own `forward_with` (candle ops, every tap reported) stays the reference: tests
//! check that both agree, values and input gradients.

use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::cpu_ops::{self, multiversion, Geometry, PoolWindow};
use super::layers::Padding;
use super::winograd;

/// The element-wise function after a convolution or linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

impl Activation {
    /// The clamp `[0, top]` this activation applies, if any.
    fn top(self) -> Option<f32> {
        match self {
            Self::Identity => None,
            Self::Relu => Some(f32::INFINITY),
            Self::Relu6 => Some(6.0),
        }
    }
}

/// One step of a [`FrozenProgram`].
#[derive(Debug, Clone)]
pub enum ProgramOp {
    /// A convolution (dense, or depthwise when `depthwise`), bias, activation:
    /// `weight` `[C_out, C_in or 1, k, k]`, `bias` `[C_out]`.
    Conv {
        weight: Tensor,
        bias: Tensor,
        stride: usize,
        padding: Padding,
        depthwise: bool,
        activation: Activation,
    },
    /// Max-pooling over a window (VGG's 2x2/2, ResNet's 3x3/2 with padding 1).
    MaxPool(PoolWindow),
    /// PyTorch's `AdaptiveAvgPool2d((n, n))`.
    AdaptiveAvgPool(usize),
    /// Mean over space: `[C, H, W]` -> `[C]`.
    GlobalAvgPool,
    /// `x @ weight^T + bias` on the flattened activation, then the activation:
    /// `weight` `[out, in]`, `bias` `[out]`.
    Linear {
        weight: Tensor,
        bias: Tensor,
        activation: Activation,
    },
    /// Remembers the current activation for a later [`ProgramOp::ResidualAdd`].
    ResidualStart,
    /// Adds the activation remembered by the matching [`ProgramOp::ResidualStart`] (through
    /// `shortcut` when given: ResNet's downsampling), then the activation.
    ResidualAdd {
        shortcut: Option<Shortcut>,
        activation: Activation,
    },
    /// `x * relu6(x + 3) / 6` (MobileNetV3's hard-swish), element-wise.
    HardSwish,
    /// Squeeze-and-excitation (MobileNetV3's): each channel scaled by
    /// `hard_sigmoid(expand(relu(reduce(mean over space))))`: `reduce_weight` `[R, C]`,
    /// `reduce_bias` `[R]`, `expand_weight` `[C, R]`, `expand_bias` `[C]`.
    SqueezeExcite {
        reduce_weight: Tensor,
        reduce_bias: Tensor,
        expand_weight: Tensor,
        expand_bias: Tensor,
    },
}

impl ProgramOp {
    /// A residual's plain end: the remembered activation added as is, nothing after.
    pub fn identity_add() -> Self {
        Self::ResidualAdd {
            shortcut: None,
            activation: Activation::Identity,
        }
    }
}

/// The 1x1 convolution (batch norm folded) on a residual's skip path: `weight`
/// `[C_out, C_in, 1, 1]`, `bias` `[C_out]`.
#[derive(Debug, Clone)]
pub struct Shortcut {
    pub weight: Tensor,
    pub bias: Tensor,
    pub stride: usize,
}

/// A step and the name of the tap its output is, if any.
#[derive(Debug, Clone)]
struct Step {
    op: ProgramOp,
    tap: Option<String>,
    /// A 3x3 convolution's Winograd kernels, forward and input-gradient, made on first use.
    winograd: [OnceLock<Vec<f32>>; 2],
    /// A squeeze-excite step's weights as plain vectors, made on first use.
    squeeze_excite: OnceLock<SqueezeExcite>,
}

impl Step {
    /// This squeeze-excite step's weights (copied out of the tensors once).
    fn squeeze_excite(&self) -> Result<&SqueezeExcite> {
        if let Some(se) = self.squeeze_excite.get() {
            return Ok(se);
        }
        let ProgramOp::SqueezeExcite {
            reduce_weight,
            reduce_bias,
            expand_weight,
            expand_bias,
        } = &self.op
        else {
            candle_core::bail!("not a squeeze-excite step");
        };
        let se = SqueezeExcite::new(reduce_weight, reduce_bias, expand_weight, expand_bias)?;
        Ok(self.squeeze_excite.get_or_init(|| se))
    }

    /// The Winograd kernels of this step's convolution `weight`, for the forward pass or the
    /// input gradient.
    fn winograd_kernels(&self, weight: &Tensor, for_input_grad: bool) -> Result<&[f32]> {
        let cell = &self.winograd[usize::from(for_input_grad)];
        if let Some(kernels) = cell.get() {
            return Ok(kernels);
        }
        let (k, c, _, _) = weight.dims4()?;
        let kernels = with_data(weight, |w| {
            Ok(winograd::transform_kernels(w, k, c, for_input_grad))
        })?;
        Ok(cell.get_or_init(|| kernels))
    }
}

/// A frozen network as a flat list of steps, `[B, 3, H, W]` -> logits `[B, classes]` (or any
/// tap's activation), differentiable with respect to the input only.
#[derive(Debug, Clone, Default)]
pub struct FrozenProgram {
    steps: Arc<Vec<Step>>,
}

/// The shape of one image's activation: `(c, h, w)`, or a vector of `c` when `flat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    c: usize,
    h: usize,
    w: usize,
    flat: bool,
}

impl Dims {
    fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    fn vector(c: usize) -> Self {
        Self {
            c,
            h: 1,
            w: 1,
            flat: true,
        }
    }
}

/// Builds a [`FrozenProgram`] step by step.
#[derive(Debug, Default)]
pub struct ProgramBuilder {
    steps: Vec<Step>,
}

impl ProgramBuilder {
    /// Appends `op`; its output is tap `tap` when given.
    pub fn push(&mut self, op: ProgramOp, tap: Option<&str>) {
        self.steps.push(Step {
            op,
            tap: tap.map(str::to_string),
            winograd: Default::default(),
            squeeze_excite: OnceLock::new(),
        });
    }

    pub fn build(self) -> FrozenProgram {
        FrozenProgram {
            steps: Arc::new(self.steps),
        }
    }
}

impl FrozenProgram {
    /// Whether the program can run on `x` (f32 on the CPU, and a non-empty program).
    pub fn supports(&self, x: &Tensor) -> bool {
        !self.steps.is_empty() && cpu_ops::supported(x)
    }

    /// Runs `x` `[B, C, H, W]` up to tap `until` (the whole program when `None`): the tap's
    /// activation, `[B, C', H', W']` or `[B, F]`. Gradients flow to `x` when it tracks them.
    pub fn run(&self, x: &Tensor, until: Option<&str>) -> Result<Tensor> {
        let last = match until {
            None => self.steps.len().checked_sub(1),
            Some(name) => self
                .steps
                .iter()
                .position(|s| s.tap.as_deref() == Some(name)),
        };
        let Some(last) = last else {
            candle_core::bail!("no layer named {}", until.unwrap_or("(empty program)"));
        };
        let op = RunOp {
            program: self.clone(),
            last,
            keep: x.track_op(),
            saved: Mutex::new(None),
        };
        let x = x.contiguous()?;
        if op.keep {
            x.apply_op1(op)
        } else {
            x.apply_op1_no_bwd(&op)
        }
    }

    /// The output dimensions of every step `0..=last` for one image of `input`.
    fn shapes(&self, input: Dims, last: usize) -> Result<Vec<Dims>> {
        let mut dims = Vec::with_capacity(last + 1);
        let mut cur = input;
        let mut residuals = Vec::new();
        for step in &self.steps[..=last] {
            cur = match &step.op {
                ProgramOp::Conv {
                    weight,
                    stride,
                    padding,
                    depthwise,
                    ..
                } => {
                    let (c_out, c_in_k, _, _) = weight.dims4()?;
                    let c_in = if *depthwise { c_out } else { c_in_k };
                    if cur.flat || cur.c != c_in || (*depthwise && c_in_k != 1) {
                        candle_core::bail!("a {:?} kernel cannot take {cur:?}", weight.dims());
                    }
                    let g = conv_geometry(weight, *stride, *padding, 1, cur)?;
                    Dims {
                        c: c_out,
                        h: g.out_h,
                        w: g.out_w,
                        flat: false,
                    }
                }
                ProgramOp::MaxPool(window) => {
                    let (h, w) = (window.out_size(cur.h), window.out_size(cur.w));
                    if cur.flat || h == 0 || w == 0 {
                        candle_core::bail!("a {0}x{0} pool cannot take {cur:?}", window.kernel);
                    }
                    Dims { h, w, ..cur }
                }
                ProgramOp::AdaptiveAvgPool(n) => Dims {
                    h: *n,
                    w: *n,
                    ..cur
                },
                ProgramOp::GlobalAvgPool => Dims::vector(cur.c),
                ProgramOp::Linear { weight, .. } => {
                    let (d_out, d_in) = weight.dims2()?;
                    if d_in != cur.len() {
                        candle_core::bail!("a linear layer of {d_in} inputs cannot take {cur:?}");
                    }
                    Dims::vector(d_out)
                }
                ProgramOp::ResidualStart => {
                    residuals.push(cur);
                    cur
                }
                ProgramOp::ResidualAdd { shortcut, .. } => {
                    let skip = match (residuals.pop(), shortcut) {
                        (Some(r), None) => r,
                        (Some(r), Some(s)) => {
                            let g =
                                conv_geometry(&s.weight, s.stride, Padding::Symmetric(0), 1, r)?;
                            Dims {
                                c: s.weight.dim(0)?,
                                h: g.out_h,
                                w: g.out_w,
                                flat: false,
                            }
                        }
                        (None, _) => candle_core::bail!("residual add without a start"),
                    };
                    if skip != cur {
                        candle_core::bail!("residual {skip:?} does not match {cur:?}");
                    }
                    cur
                }
                ProgramOp::HardSwish => cur,
                ProgramOp::SqueezeExcite { reduce_weight, .. } => {
                    if cur.flat || reduce_weight.dim(1)? != cur.c {
                        candle_core::bail!(
                            "squeeze-excite of {:?} cannot take {cur:?}",
                            reduce_weight.dims()
                        );
                    }
                    cur
                }
            };
            dims.push(cur);
        }
        Ok(dims)
    }
}

impl FrozenProgram {
    /// For each residual add among steps `0..=last`, the index of its matching start.
    fn residual_starts(&self, last: usize) -> std::collections::HashMap<usize, usize> {
        let mut open = Vec::new();
        let mut pairs = std::collections::HashMap::new();
        for (i, step) in self.steps[..=last].iter().enumerate() {
            match step.op {
                ProgramOp::ResidualStart => open.push(i),
                ProgramOp::ResidualAdd { .. } => {
                    if let Some(start) = open.pop() {
                        pairs.insert(i, start);
                    }
                }
                _ => {}
            }
        }
        pairs
    }
}

/// `x * relu6(x + 3) / 6`.
fn hard_swish(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// The derivative of [`hard_swish`] (PyTorch's: 0 below -3, `x / 3 + 1/2` up to 3, then 1).
fn hard_swish_slope(x: f32) -> f32 {
    if x < -3.0 {
        0.0
    } else if x <= 3.0 {
        x / 3.0 + 0.5
    } else {
        1.0
    }
}

/// A squeeze-and-excitation step's weights as plain vectors.
#[derive(Debug, Clone)]
struct SqueezeExcite {
    /// `[R, C]`, `[R]`, `[C, R]`, `[C]`.
    reduce_w: Vec<f32>,
    reduce_b: Vec<f32>,
    expand_w: Vec<f32>,
    expand_b: Vec<f32>,
    c: usize,
    r: usize,
}

/// One image's squeeze-and-excitation intermediates.
struct Excitation {
    /// Hidden activations after ReLU `[R]`, gate inputs `[C]`.
    hidden: Vec<f32>,
    gate_in: Vec<f32>,
}

impl SqueezeExcite {
    fn new(rw: &Tensor, rb: &Tensor, ew: &Tensor, eb: &Tensor) -> Result<Self> {
        let (r, c) = rw.dims2()?;
        let vec = |t: &Tensor| with_data(t, |d| Ok(d.to_vec()));
        Ok(Self {
            reduce_w: vec(rw)?,
            reduce_b: vec(rb)?,
            expand_w: vec(ew)?,
            expand_b: vec(eb)?,
            c,
            r,
        })
    }

    fn excite(&self, image: &[f32], plane: usize) -> Excitation {
        let mean: Vec<f32> = image
            .chunks(plane)
            .map(|p| p.iter().sum::<f32>() / plane as f32)
            .collect();
        let hidden: Vec<f32> = (0..self.r)
            .map(|j| {
                let row = &self.reduce_w[j * self.c..(j + 1) * self.c];
                let z: f32 = row.iter().zip(&mean).map(|(w, m)| w * m).sum();
                (z + self.reduce_b[j]).max(0.0)
            })
            .collect();
        let gate_in: Vec<f32> = (0..self.c)
            .map(|k| {
                let row = &self.expand_w[k * self.r..(k + 1) * self.r];
                let z: f32 = row.iter().zip(&hidden).map(|(w, h)| w * h).sum();
                z + self.expand_b[k]
            })
            .collect();
        Excitation { hidden, gate_in }
    }

    /// `[B, C, plane]` -> the same, each channel scaled by its gate.
    fn forward(&self, x: &[f32], batch: usize, plane: usize) -> Vec<f32> {
        let mut out = x.to_vec();
        let image_len = self.c * plane;
        out.par_chunks_mut(image_len.max(1))
            .take(batch)
            .for_each(|image| {
                let e = self.excite(image, plane);
                for (p, z) in image.chunks_mut(plane).zip(&e.gate_in) {
                    let s = hard_sigmoid(*z);
                    p.iter_mut().for_each(|v| *v *= s);
                }
            });
        out
    }

    /// The input gradient for the output gradient `grad`, both `[B, C, plane]`.
    fn backward(&self, x: &[f32], grad: &[f32], batch: usize, plane: usize) -> Vec<f32> {
        let image_len = self.c * plane;
        let mut out = vec![0f32; batch * image_len];
        out.par_chunks_mut(image_len.max(1))
            .enumerate()
            .for_each(|(b, dst)| {
                let image = &x[b * image_len..(b + 1) * image_len];
                let g = &grad[b * image_len..(b + 1) * image_len];
                let e = self.excite(image, plane);
                // Through the gate: d(gate input) per channel.
                let d_gate: Vec<f32> = (0..self.c)
                    .map(|k| {
                        let z = e.gate_in[k];
                        if z > -3.0 && z < 3.0 {
                            let gx = &g[k * plane..(k + 1) * plane];
                            let xs = &image[k * plane..(k + 1) * plane];
                            gx.iter().zip(xs).map(|(a, b)| a * b).sum::<f32>() / 6.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mut d_hidden = vec![0f32; self.r];
                for (k, dz) in d_gate.iter().enumerate() {
                    if *dz != 0.0 {
                        let row = &self.expand_w[k * self.r..(k + 1) * self.r];
                        d_hidden.iter_mut().zip(row).for_each(|(d, w)| *d += dz * w);
                    }
                }
                let mut d_mean = vec![0f32; self.c];
                for (j, dh) in d_hidden.iter().enumerate() {
                    if e.hidden[j] > 0.0 {
                        let row = &self.reduce_w[j * self.c..(j + 1) * self.c];
                        d_mean.iter_mut().zip(row).for_each(|(d, w)| *d += dh * w);
                    }
                }
                for k in 0..self.c {
                    let s = hard_sigmoid(e.gate_in[k]);
                    let spread = d_mean[k] / plane as f32;
                    let (dp, gp) = (
                        &mut dst[k * plane..(k + 1) * plane],
                        &g[k * plane..(k + 1) * plane],
                    );
                    dp.iter_mut()
                        .zip(gp)
                        .for_each(|(d, gv)| *d = gv * s + spread);
                }
            });
        out
    }
}

/// `relu6(x + 3) / 6`.
fn hard_sigmoid(x: f32) -> f32 {
    (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// The geometry of a program convolution with kernels `weight` `[C_out, _, k, k]` over a
/// batch of `batch` activations of `input` dims.
fn conv_geometry(
    weight: &Tensor,
    stride: usize,
    padding: Padding,
    batch: usize,
    input: Dims,
) -> Result<Geometry> {
    let (c_out, _, k, _) = weight.dims4()?;
    Geometry::new(
        (batch, input.c, input.h, input.w),
        c_out,
        k,
        stride,
        padding,
    )
}

/// The f32 data of a contiguous CPU tensor, to `f`.
fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(cpu_ops::f32_slice(cpu, layout, "frozen weight")?),
        _ => candle_core::bail!("frozen program weights must be on the CPU"),
    }
}

multiversion! {
    /// `act(v + b)` over one plane.
    fn bias_activation_plane(dst: &mut [f32], b: f32, top: f32) {
        for v in dst.iter_mut() {
            *v = (*v + b).max(0.0).min(top);
        }
    }
}

multiversion! {
    /// `v + b` over one plane.
    fn bias_plane(dst: &mut [f32], b: f32) {
        for v in dst.iter_mut() {
            *v += b;
        }
    }
}

/// `out[b, c, p] = act(out[b, c, p] + bias[c])` over planes of `plane` values.
fn bias_activation(out: &mut [f32], bias: &[f32], plane: usize, activation: Activation) {
    let channels = bias.len();
    let top = activation.top();
    let one = |(i, dst): (usize, &mut [f32])| {
        let b = bias[i % channels];
        match top {
            None => bias_plane(dst, b),
            Some(top) => bias_activation_plane(dst, b, top),
        }
    };
    if plane == 1 {
        // A vector: one "plane" per value.
        for (i, v) in out.iter_mut().enumerate() {
            let b = bias[i % channels];
            *v = match top {
                None => *v + b,
                Some(top) => (*v + b).max(0.0).min(top),
            };
        }
    } else if out.len() < cpu_ops::PARALLEL_MIN {
        out.chunks_mut(plane).enumerate().for_each(one);
    } else {
        out.par_chunks_mut(plane).enumerate().for_each(one);
    }
}

/// Zeroes `grad` where the activation's output `out` is at a bound (PyTorch's rule: no
/// gradient at 0 or at the top).
fn mask_gradient(grad: &mut [f32], out: &[f32], activation: Activation) {
    if let Some(top) = activation.top() {
        cpu_ops::mask_outside_band(grad, out, top);
    }
}

/// Row `i`'s bin of PyTorch's adaptive pooling from `size` to `out`.
fn bin(i: usize, size: usize, out: usize) -> (usize, usize) {
    (i * size / out, ((i + 1) * size).div_ceil(out))
}

/// Adaptive average pooling of `planes` planes `[h, w]` to `[n, n]`; with `grad`, its
/// transpose (output gradient `[n, n]` spread back over `[h, w]`).
fn adaptive_pool(x: &[f32], planes: usize, (h, w): (usize, usize), n: usize) -> Vec<f32> {
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

fn adaptive_pool_grad(g: &[f32], planes: usize, (h, w): (usize, usize), n: usize) -> Vec<f32> {
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

/// What the forward pass keeps for the backward one.
struct Saved {
    batch: usize,
    input_dims: Dims,
    input: Vec<f32>,
    /// Every step's output (batch-major), up to the last one run.
    outputs: Vec<Vec<f32>>,
    dims: Vec<Dims>,
}

/// The candle op of one [`FrozenProgram::run`].
struct RunOp {
    program: FrozenProgram,
    /// Index of the last step to run.
    last: usize,
    /// Whether to keep the activations for a backward pass.
    keep: bool,
    saved: Mutex<Option<Saved>>,
}

impl RunOp {
    fn forward(&self, x: &[f32], batch: usize, input_dims: Dims) -> Result<Saved> {
        let dims = self.program.shapes(input_dims, self.last)?;
        let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(self.last + 1);
        let mut residuals: Vec<usize> = Vec::new();
        for (i, step) in self.program.steps[..=self.last].iter().enumerate() {
            let (in_dims, out_dims) = (if i == 0 { input_dims } else { dims[i - 1] }, dims[i]);
            let input: &[f32] = if i == 0 { x } else { &outputs[i - 1] };
            let out = match &step.op {
                ProgramOp::Conv {
                    weight,
                    bias,
                    stride,
                    padding,
                    depthwise,
                    activation,
                    ..
                } => {
                    let g = conv_geometry(weight, *stride, *padding, batch, in_dims)?;
                    if !*depthwise && winograd::applies(&g) {
                        let kernels = step.winograd_kernels(weight, false)?;
                        with_data(bias, |b| {
                            let epilogue = winograd::Epilogue {
                                bias: Some(b),
                                low: activation.top().map_or(f32::NEG_INFINITY, |_| 0.0),
                                high: activation.top().unwrap_or(f32::INFINITY),
                            };
                            Ok(winograd::conv3x3(&g, input, kernels, epilogue))
                        })?
                    } else {
                        let mut out = with_data(weight, |w| {
                            Ok(if *depthwise {
                                cpu_ops::depthwise_forward(&g, input, w)
                            } else {
                                cpu_ops::conv_forward(&g, input, w)
                            })
                        })?;
                        with_data(bias, |b| {
                            bias_activation(&mut out, b, out_dims.h * out_dims.w, *activation);
                            Ok(())
                        })?;
                        out
                    }
                }
                ProgramOp::MaxPool(window) => cpu_ops::max_pool_forward(
                    input,
                    batch * in_dims.c,
                    in_dims.h,
                    in_dims.w,
                    *window,
                ),
                ProgramOp::AdaptiveAvgPool(n) => {
                    if (in_dims.h, in_dims.w) == (*n, *n) {
                        input.to_vec()
                    } else {
                        adaptive_pool(input, batch * in_dims.c, (in_dims.h, in_dims.w), *n)
                    }
                }
                ProgramOp::GlobalAvgPool => {
                    let plane = in_dims.h * in_dims.w;
                    input
                        .chunks(plane.max(1))
                        .map(|p| p.iter().sum::<f32>() / plane as f32)
                        .collect()
                }
                ProgramOp::Linear {
                    weight,
                    bias,
                    activation,
                } => {
                    let (d_out, d_in) = weight.dims2()?;
                    let mut out = vec![0f32; batch * d_out];
                    with_data(weight, |w| {
                        // w [out, in] read as w^T [in, out]: row stride 1, column stride in.
                        cpu_ops::matmul(
                            (batch, d_out, d_in),
                            &mut out,
                            d_out,
                            input,
                            (d_in, 1),
                            w,
                            1,
                            d_in,
                        );
                        Ok(())
                    })?;
                    with_data(bias, |b| {
                        bias_activation(&mut out, b, 1, *activation);
                        Ok(())
                    })?;
                    out
                }
                ProgramOp::ResidualStart => {
                    residuals.push(i);
                    input.to_vec()
                }
                ProgramOp::ResidualAdd {
                    shortcut,
                    activation,
                } => {
                    let Some(start) = residuals.pop() else {
                        candle_core::bail!("residual add without a start");
                    };
                    let mut out = input.to_vec();
                    let projected;
                    let skip: &[f32] = match shortcut {
                        None => &outputs[start],
                        Some(s) => {
                            let g = conv_geometry(
                                &s.weight,
                                s.stride,
                                Padding::Symmetric(0),
                                batch,
                                dims[start],
                            )?;
                            projected = with_data(&s.weight, |w| {
                                Ok(cpu_ops::conv_forward(&g, &outputs[start], w))
                            })?;
                            &projected
                        }
                    };
                    out.par_iter_mut()
                        .zip(skip.par_iter())
                        .for_each(|(o, r)| *o += r);
                    let bias = match shortcut {
                        Some(s) => with_data(&s.bias, |b| Ok(b.to_vec()))?,
                        None => vec![0.0; out_dims.c],
                    };
                    bias_activation(&mut out, &bias, out_dims.h * out_dims.w, *activation);
                    out
                }
                ProgramOp::HardSwish => input.par_iter().map(|&v| hard_swish(v)).collect(),
                ProgramOp::SqueezeExcite { .. } => {
                    step.squeeze_excite()?
                        .forward(input, batch, in_dims.h * in_dims.w)
                }
            };
            debug_assert_eq!(out.len(), batch * out_dims.len());
            outputs.push(out);
        }
        Ok(Saved {
            batch,
            input_dims,
            input: if self.keep { x.to_vec() } else { Vec::new() },
            outputs,
            dims,
        })
    }

    /// The input gradient `[B, C, H, W]` for the last step's output gradient `grad`.
    fn backward(&self, saved: &Saved, mut grad: Vec<f32>) -> Result<Vec<f32>> {
        let batch = saved.batch;
        let mut pending: Vec<Vec<f32>> = Vec::new();
        let starts = self.program.residual_starts(self.last);
        for (i, step) in self.program.steps[..=self.last].iter().enumerate().rev() {
            let in_dims = if i == 0 {
                saved.input_dims
            } else {
                saved.dims[i - 1]
            };
            let input: &[f32] = if i == 0 {
                &saved.input
            } else {
                &saved.outputs[i - 1]
            };
            let output = &saved.outputs[i];
            grad = match &step.op {
                ProgramOp::Conv {
                    weight,
                    stride,
                    padding,
                    depthwise,
                    activation,
                    ..
                } => {
                    mask_gradient(&mut grad, output, *activation);
                    let g = conv_geometry(weight, *stride, *padding, batch, in_dims)?;
                    if !*depthwise && winograd::applies(&g) {
                        // Stride 1, pad 1: the input gradient is a 3x3 convolution too.
                        let back = Geometry::new(
                            (batch, g.c_out, g.out_h, g.out_w),
                            g.c_in,
                            3,
                            1,
                            Padding::Symmetric(1),
                        )?;
                        let kernels = step.winograd_kernels(weight, true)?;
                        winograd::conv3x3(&back, &grad, kernels, winograd::Epilogue::NONE)
                    } else {
                        with_data(weight, |w| {
                            Ok(if *depthwise {
                                cpu_ops::depthwise_input_grad(&g, &grad, w)
                            } else {
                                cpu_ops::conv_input_grad(&g, &grad, w)
                            })
                        })?
                    }
                }
                ProgramOp::MaxPool(window) => cpu_ops::max_pool_grad(
                    input,
                    &grad,
                    batch * in_dims.c,
                    in_dims.h,
                    in_dims.w,
                    *window,
                ),
                ProgramOp::AdaptiveAvgPool(n) => {
                    if (in_dims.h, in_dims.w) == (*n, *n) {
                        grad
                    } else {
                        adaptive_pool_grad(&grad, batch * in_dims.c, (in_dims.h, in_dims.w), *n)
                    }
                }
                ProgramOp::GlobalAvgPool => {
                    let plane = in_dims.h * in_dims.w;
                    let mut g = vec![0f32; batch * in_dims.len()];
                    g.par_chunks_mut(plane.max(1))
                        .zip(grad.par_iter())
                        .for_each(|(dst, &v)| dst.fill(v / plane as f32));
                    g
                }
                ProgramOp::Linear {
                    weight, activation, ..
                } => {
                    mask_gradient(&mut grad, output, *activation);
                    let (d_out, d_in) = weight.dims2()?;
                    let mut g = vec![0f32; batch * d_in];
                    with_data(weight, |w| {
                        cpu_ops::matmul(
                            (batch, d_in, d_out),
                            &mut g,
                            d_in,
                            &grad,
                            (d_out, 1),
                            w,
                            d_in,
                            1,
                        );
                        Ok(())
                    })?;
                    g
                }
                ProgramOp::ResidualAdd {
                    shortcut,
                    activation,
                } => {
                    mask_gradient(&mut grad, output, *activation);
                    let skip = match shortcut {
                        None => grad.clone(),
                        Some(s) => {
                            let start = starts.get(&i).copied().ok_or_else(|| {
                                candle_core::Error::Msg("residual add without a start".into())
                            })?;
                            let g = conv_geometry(
                                &s.weight,
                                s.stride,
                                Padding::Symmetric(0),
                                batch,
                                saved.dims[start],
                            )?;
                            with_data(&s.weight, |w| Ok(cpu_ops::conv_input_grad(&g, &grad, w)))?
                        }
                    };
                    pending.push(skip);
                    grad
                }
                ProgramOp::HardSwish => {
                    grad.par_iter_mut()
                        .zip(input.par_iter())
                        .for_each(|(g, &x)| *g *= hard_swish_slope(x));
                    grad
                }
                ProgramOp::SqueezeExcite { .. } => {
                    step.squeeze_excite()?
                        .backward(input, &grad, batch, in_dims.h * in_dims.w)
                }
                ProgramOp::ResidualStart => {
                    let Some(skip) = pending.pop() else {
                        candle_core::bail!("residual start without an add");
                    };
                    grad.par_iter_mut()
                        .zip(skip.par_iter())
                        .for_each(|(g, s)| *g += s);
                    grad
                }
            };
        }
        Ok(grad)
    }
}

impl CustomOp1 for RunOp {
    fn name(&self) -> &'static str {
        "frozen-program"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_ops::f32_slice(s, l, "program input")?;
        let (batch, c, h, w) = l.shape().dims4()?;
        let input_dims = Dims {
            c,
            h,
            w,
            flat: false,
        };
        let mut saved = self.forward(x, batch, input_dims)?;
        let out_dims = saved.dims[self.last];
        let shape = if out_dims.flat {
            Shape::from((batch, out_dims.c))
        } else {
            Shape::from((batch, out_dims.c, out_dims.h, out_dims.w))
        };
        let out =
            if self.keep {
                let out = saved.outputs[self.last].clone();
                *self.saved.lock().map_err(|_| {
                    candle_core::Error::Msg("frozen program state poisoned".into())
                })? = Some(saved);
                out
            } else {
                saved.outputs.pop().unwrap_or_default()
            };
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let guard = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("frozen program state poisoned".into()))?;
        let Some(saved) = guard.as_ref() else {
            return Err(candle_core::Error::BackwardNotSupported { op: self.name() });
        };
        let grad: Vec<f32> = grad_res.flatten_all()?.to_vec1()?;
        let grad_in = self.backward(saved, grad)?;
        Ok(Some(Tensor::from_vec(grad_in, arg.shape(), arg.device())?))
    }
}
