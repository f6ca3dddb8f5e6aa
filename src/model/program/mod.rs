//! A frozen [`Network`](super::network::Network) run on the CPU as **one** candle op.
//!
//! Dreams and attacks differentiate the whole network with respect to its input many times a
//! second. Through candle's autograd every layer is several graph nodes (convolution, bias,
//! activation, padding), each of which allocates its output, and whose backward allocates a
//! zero gradient and adds into it; candle's element-wise ops also spin on a thread barrier.
//! A [`FrozenProgram`] runs the same steps with our kernels ([`crate::kernels`]), bias and
//! activation fused into the convolution's output pass; when the input tracks gradients it
//! keeps each step's output for the backward pass, which walks the steps in reverse computing
//! only input gradients. Without gradients it keeps only what later steps still read (the
//! current activation and the open residuals' starts). Candle sees one node.
//!
//! Each kind of step, with its forward and backward, is in [`steps`]; this file is the loop.

mod steps;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::network::{Layer, Step, TapPoint, TapSink};
use crate::kernels::activation::mask_gradient;
use crate::kernels::Activation;
use steps::{
    residual_add, skip_dims, AdaptiveAvgPoolStep, ConvStep, Dims, Frame, GlobalAvgPoolStep,
    HardSwishStep, LinearStep, MaxPoolStep, SqueezeExciteStep, StepKernel,
};

/// What a program step does.
#[derive(Debug)]
enum StepKind {
    Kernel(Box<dyn StepKernel>),
    ResidualStart,
    ResidualAdd {
        shortcut: Option<ConvStep>,
        activation: Activation,
    },
}

#[derive(Debug)]
struct ProgramStep {
    kind: StepKind,
    tap: Option<TapPoint>,
}

/// A frozen network as a flat list of CPU steps, `[B, 3, H, W]` -> logits `[B, classes]` (or
/// any tap's activation), differentiable with respect to the input only.
#[derive(Debug, Clone)]
pub struct FrozenProgram {
    steps: Arc<Vec<ProgramStep>>,
}

/// The contiguous f32 data of a storage/layout pair.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

impl FrozenProgram {
    /// The program of `steps` (whose weights must be f32 on the CPU).
    pub(super) fn new(steps: &[Step]) -> Self {
        let steps = steps
            .iter()
            .map(|step| {
                let kernel = |k: Box<dyn StepKernel>| StepKind::Kernel(k);
                let kind = match &step.layer {
                    Layer::Conv(c) => kernel(Box::new(ConvStep::new(c.clone()))),
                    Layer::MaxPool(w) => kernel(Box::new(MaxPoolStep(*w))),
                    Layer::AdaptiveAvgPool(n) => kernel(Box::new(AdaptiveAvgPoolStep(*n))),
                    Layer::GlobalAvgPool => kernel(Box::new(GlobalAvgPoolStep)),
                    Layer::Linear(l) => kernel(Box::new(LinearStep(l.clone()))),
                    Layer::HardSwish => kernel(Box::new(HardSwishStep)),
                    Layer::SqueezeExcite(se) => {
                        kernel(Box::new(SqueezeExciteStep::new(se.clone())))
                    }
                    Layer::ResidualStart => StepKind::ResidualStart,
                    Layer::ResidualAdd {
                        shortcut,
                        activation,
                    } => StepKind::ResidualAdd {
                        shortcut: shortcut.clone().map(ConvStep::new),
                        activation: *activation,
                    },
                };
                ProgramStep {
                    kind,
                    tap: step.tap.clone(),
                }
            })
            .collect();
        Self {
            steps: Arc::new(steps),
        }
    }

    /// Whether the program can run on `x` (f32 on the CPU).
    pub fn supports(&self, x: &Tensor) -> bool {
        x.device().is_cpu() && x.dtype() == DType::F32
    }

    fn last_step(&self, until: Option<&str>) -> Result<usize> {
        let last = match until {
            None => self.steps.len().checked_sub(1),
            Some(name) => self
                .steps
                .iter()
                .position(|s| s.tap.as_ref().is_some_and(|t| t.name == name)),
        };
        last.ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "no layer named {}",
                until.unwrap_or("(empty program)")
            ))
        })
    }

    /// Runs `x` `[B, C, H, W]` up to tap `until` (the whole program when `None`): the tap's
    /// activation, `[B, C', H', W']` or `[B, F]`. Gradients flow to `x` when it tracks them.
    pub fn run(&self, x: &Tensor, until: Option<&str>) -> Result<Tensor> {
        let op = RunOp {
            program: self.clone(),
            last: self.last_step(until)?,
            extras: Vec::new(),
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

    /// The activations of several taps of `x` `[B, C, H, W]` (by name; the logits for `None`),
    /// in the order asked, from **one** pass up to the deepest of them. Gradients flow to `x`
    /// from all of them (a dream's class and diversity terms share the pass).
    pub fn run_at(&self, x: &Tensor, untils: &[Option<&str>]) -> Result<Vec<Tensor>> {
        let wanted: Vec<usize> = untils
            .iter()
            .map(|u| self.last_step(*u))
            .collect::<Result<_>>()?;
        let Some(&last) = wanted.iter().max() else {
            return Ok(Vec::new());
        };
        let mut extras: Vec<usize> = wanted.iter().copied().filter(|&i| i != last).collect();
        extras.sort_unstable();
        extras.dedup();
        if extras.is_empty() {
            let out = self.run(x, untils[0])?;
            return Ok(vec![out; wanted.len()]);
        }
        let (batch, c, h, w) = x.dims4()?;
        let dims = self.shapes(Dims::map(c, h, w), last)?;
        // Each image's row of the op's output: the extras' outputs, then the last step's.
        let mut offsets = HashMap::new();
        let mut offset = 0;
        for &i in extras.iter().chain([&last]) {
            offsets.insert(i, offset);
            offset += dims[i].len();
        }
        let op = RunOp {
            program: self.clone(),
            last,
            extras,
            keep: x.track_op(),
            saved: Mutex::new(None),
        };
        let x = x.contiguous()?;
        let joined = if op.keep {
            x.apply_op1(op)?
        } else {
            x.apply_op1_no_bwd(&op)?
        };
        wanted
            .iter()
            .map(|&i| {
                joined
                    .narrow(1, offsets[&i], dims[i].len())?
                    .reshape(dims[i].batch_shape(batch))
            })
            .collect()
    }

    /// The logits of `x` `[B, C, H, W]`, every tap reported to `sink` as it is computed (no
    /// gradients).
    pub fn run_with_taps(&self, x: &Tensor, sink: TapSink) -> Result<Tensor> {
        let (batch, c, h, w) = x.dims4()?;
        let x = x.contiguous()?.to_dtype(DType::F32)?;
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("the frozen program runs on the CPU");
        };
        let data = f32_slice(cpu, layout, "program input")?;
        let last = self.steps.len() - 1;
        let mut logits = None;
        let mut hook = |i: usize, out: &[f32], dims: Dims| -> Result<()> {
            let step = &self.steps[i];
            if step.tap.is_none() && i != last {
                return Ok(());
            }
            let t = Tensor::from_slice(out, dims.batch_shape(batch), &Device::Cpu)?;
            if let Some(tap) = &step.tap {
                sink(&tap.name, tap.kind, &t);
            }
            if i == last {
                logits = Some(t);
            }
            Ok(())
        };
        run_forward(
            self,
            data,
            (batch, Dims::map(c, h, w)),
            last,
            false,
            &mut hook,
        )?;
        logits.ok_or_else(|| candle_core::Error::Msg("empty program".into()))
    }

    /// Step `last`'s output `[B, ...]` for `x` `[B, C, H, W]` and, for the gradient
    /// `objective` gives of it (same shape), the gradient with respect to step `layer`'s output
    /// (the input `x` when `None`), with that activation: `(output, activation, gradient)`.
    /// One forward pass keeping every output, then the backward walk down to `layer` only.
    pub(super) fn layer_gradient(
        &self,
        x: &Tensor,
        layer: Option<usize>,
        last: usize,
        objective: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        if layer.is_some_and(|l| l > last) {
            candle_core::bail!("the layer lies after the output it is explained by");
        }
        let (batch, c, h, w) = x.dims4()?;
        let x = x.detach().contiguous()?.to_dtype(DType::F32)?;
        let input: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let saved = run_forward(
            self,
            &input,
            (batch, Dims::map(c, h, w)),
            last,
            true,
            &mut |_, _, _| Ok(()),
        )?;
        let shape_of = |i: usize| saved.dims[i].batch_shape(batch);
        let output = Tensor::from_slice(saved.output(last)?, shape_of(last), &Device::Cpu)?;
        let grad_out = objective(&output)?;
        if grad_out.dims() != output.dims() {
            candle_core::bail!(
                "a gradient of shape {:?} for an output of shape {:?}",
                grad_out.dims(),
                output.dims()
            );
        }
        let grad_out: Vec<f32> = grad_out.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let first = layer.map_or(0, |l| l + 1);
        let grad = run_backward(self, &saved, (first, last), grad_out, &HashMap::new())?;
        let (activation, gradient) = match layer {
            None => (x, Tensor::from_vec(grad, (batch, c, h, w), &Device::Cpu)?),
            Some(l) => (
                Tensor::from_slice(saved.output(l)?, shape_of(l), &Device::Cpu)?,
                Tensor::from_vec(grad, shape_of(l), &Device::Cpu)?,
            ),
        };
        Ok((output, activation, gradient))
    }

    /// The output dimensions of every step `0..=last` for one image of `input`.
    fn shapes(&self, input: Dims, last: usize) -> Result<Vec<Dims>> {
        let mut dims: Vec<Dims> = Vec::with_capacity(last + 1);
        let mut open = Vec::new();
        for (i, step) in self.steps[..=last].iter().enumerate() {
            let cur = if i == 0 { input } else { dims[i - 1] };
            let out = match &step.kind {
                StepKind::Kernel(k) => k.out_dims(cur)?,
                StepKind::ResidualStart => {
                    open.push(cur);
                    cur
                }
                StepKind::ResidualAdd { shortcut, .. } => {
                    let Some(start) = open.pop() else {
                        candle_core::bail!("residual add without a start");
                    };
                    let skip = skip_dims(shortcut.as_ref(), start)?;
                    if skip != cur {
                        candle_core::bail!("residual {skip:?} does not match {cur:?}");
                    }
                    cur
                }
            };
            dims.push(out);
        }
        Ok(dims)
    }

    /// For each residual add among steps `0..=last`, the index of its matching start.
    fn residual_starts(&self, last: usize) -> HashMap<usize, usize> {
        let mut open = Vec::new();
        let mut pairs = HashMap::new();
        for (i, step) in self.steps[..=last].iter().enumerate() {
            match step.kind {
                StepKind::ResidualStart => open.push(i),
                StepKind::ResidualAdd { .. } => {
                    if let Some(start) = open.pop() {
                        pairs.insert(i, start);
                    }
                }
                StepKind::Kernel(_) => {}
            }
        }
        pairs
    }
}

impl Dims {
    /// `[batch, c, h, w]`, or `[batch, c]` for a vector.
    fn batch_shape(&self, batch: usize) -> Shape {
        if self.flat {
            Shape::from((batch, self.c))
        } else {
            Shape::from((batch, self.c, self.h, self.w))
        }
    }
}

/// What the forward pass keeps for the backward one.
struct Saved {
    batch: usize,
    input_dims: Dims,
    input: Vec<f32>,
    /// Every step's output (batch-major), up to the last one run; only those still needed
    /// when the pass keeps nothing for a backward.
    outputs: Vec<Option<Vec<f32>>>,
    dims: Vec<Dims>,
}

impl Saved {
    fn output(&self, i: usize) -> Result<&[f32]> {
        self.outputs[i]
            .as_deref()
            .ok_or_else(|| candle_core::Error::Msg(format!("step {i}'s output was dropped")))
    }
}

/// Called with each step's index, output and its shape, as the forward pass makes them.
type OutputHook<'a> = &'a mut dyn FnMut(usize, &[f32], Dims) -> Result<()>;

/// Runs steps `0..=last` on `x` (`batch` images of `input_dims`), calling `hook` with each
/// step's output; keeps every output when `keep` (for a backward pass).
fn run_forward(
    program: &FrozenProgram,
    x: &[f32],
    (batch, input_dims): (usize, Dims),
    last: usize,
    keep: bool,
    hook: OutputHook,
) -> Result<Saved> {
    let dims = program.shapes(input_dims, last)?;
    if x.len() != batch * input_dims.len() {
        candle_core::bail!("{} input values for {batch} x {input_dims:?}", x.len());
    }
    let mut saved = Saved {
        batch,
        input_dims,
        input: if keep { x.to_vec() } else { Vec::new() },
        outputs: Vec::with_capacity(last + 1),
        dims,
    };
    let mut open: Vec<usize> = Vec::new();
    for (i, step) in program.steps[..=last].iter().enumerate() {
        let in_dims = if i == 0 {
            input_dims
        } else {
            saved.dims[i - 1]
        };
        let frame = Frame {
            batch,
            input: in_dims,
            output: saved.dims[i],
        };
        let input: &[f32] = if i == 0 { x } else { saved.output(i - 1)? };
        let mut finished = None;
        let out = match &step.kind {
            StepKind::Kernel(k) => k.forward(&frame, input)?,
            StepKind::ResidualStart => {
                open.push(i);
                input.to_vec()
            }
            StepKind::ResidualAdd {
                shortcut,
                activation,
            } => {
                let Some(start) = open.pop() else {
                    candle_core::bail!("residual add without a start");
                };
                let remembered = saved.output(start)?;
                let projected;
                let skip = match shortcut {
                    None => remembered,
                    Some(conv) => {
                        let f = Frame {
                            batch,
                            input: saved.dims[start],
                            output: saved.dims[i],
                        };
                        projected = conv.forward(&f, remembered)?;
                        &projected
                    }
                };
                finished = Some(start);
                residual_add(input, skip, *activation, saved.dims[i])
            }
        };
        debug_assert_eq!(out.len(), batch * saved.dims[i].len());
        hook(i, &out, saved.dims[i])?;
        saved.outputs.push(Some(out));
        if !keep {
            // Free what no later step reads: the previous activation (unless a residual
            // still needs it) and a residual's start once it has been added back.
            if i > 0 && !open.contains(&(i - 1)) {
                saved.outputs[i - 1] = None;
            }
            if let Some(start) = finished {
                saved.outputs[start] = None;
            }
        }
    }
    Ok(saved)
}

/// The gradient of step `first`'s input (the program's input `[B, C, H, W]` when `first` is
/// 0) for the last step's output gradient `grad`, plus the gradients `extra` of earlier steps'
/// outputs (by step index) where those were outputs too. Skips of residuals that start before
/// `first` are left out: they reach activations before step `first`'s input, not it.
fn run_backward(
    program: &FrozenProgram,
    saved: &Saved,
    (first, last): (usize, usize),
    mut grad: Vec<f32>,
    extra: &HashMap<usize, Vec<f32>>,
) -> Result<Vec<f32>> {
    let batch = saved.batch;
    let mut pending: Vec<Vec<f32>> = Vec::new();
    let starts = program.residual_starts(last);
    for (i, step) in program.steps[..=last].iter().enumerate().skip(first).rev() {
        // `grad` is the gradient of step i's output here: add what reached it directly.
        if let Some(g) = extra.get(&i) {
            grad.par_iter_mut()
                .zip(g.par_iter())
                .for_each(|(a, b)| *a += b);
        }
        let in_dims = if i == 0 {
            saved.input_dims
        } else {
            saved.dims[i - 1]
        };
        let input: &[f32] = if i == 0 {
            &saved.input
        } else {
            saved.output(i - 1)?
        };
        let output = saved.output(i)?;
        let frame = Frame {
            batch,
            input: in_dims,
            output: saved.dims[i],
        };
        grad = match &step.kind {
            StepKind::Kernel(k) => k.backward(&frame, input, output, grad)?,
            StepKind::ResidualAdd {
                shortcut,
                activation,
            } => {
                mask_gradient(&mut grad, output, *activation);
                let skip = match shortcut {
                    None => grad.clone(),
                    Some(conv) => {
                        let start = starts.get(&i).copied().ok_or_else(|| {
                            candle_core::Error::Msg("residual add without a start".into())
                        })?;
                        let f = Frame {
                            batch,
                            input: saved.dims[start],
                            output: saved.dims[i],
                        };
                        // The projection has no activation: its output is not read.
                        conv.backward(&f, saved.output(start)?, &[], grad.clone())?
                    }
                };
                pending.push(skip);
                grad
            }
            StepKind::ResidualStart => {
                // No pending skip: the residual's add lies beyond `last` (a tap inside the
                // block), so only the main path carries gradient.
                if let Some(skip) = pending.pop() {
                    grad.par_iter_mut()
                        .zip(skip.par_iter())
                        .for_each(|(g, s)| *g += s);
                }
                grad
            }
        };
    }
    Ok(grad)
}

/// The candle op of one [`FrozenProgram::run`].
struct RunOp {
    program: FrozenProgram,
    /// Index of the last step to run.
    last: usize,
    /// Earlier steps whose outputs are outputs too (ascending): each image's row of the
    /// result holds theirs, then the last step's.
    extras: Vec<usize>,
    /// Whether to keep the activations for a backward pass.
    keep: bool,
    saved: Mutex<Option<Saved>>,
}

impl CustomOp1 for RunOp {
    fn name(&self) -> &'static str {
        "frozen-program"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "program input")?;
        let (batch, c, h, w) = l.shape().dims4()?;
        let input = (batch, Dims::map(c, h, w));
        let mut captured: HashMap<usize, Vec<f32>> = HashMap::new();
        let mut saved = run_forward(
            &self.program,
            x,
            input,
            self.last,
            self.keep,
            &mut |i, out, _| {
                if self.extras.contains(&i) {
                    captured.insert(i, out.to_vec());
                }
                Ok(())
            },
        )?;
        if !self.extras.is_empty() {
            let parts: Vec<&[f32]> = self
                .extras
                .iter()
                .map(|i| captured.get(i).map(Vec::as_slice).unwrap_or(&[]))
                .chain([saved.output(self.last)?])
                .collect();
            let out = interleave(&parts, batch);
            let width = out.len() / batch.max(1);
            if self.keep {
                *self.saved.lock().map_err(|_| {
                    candle_core::Error::Msg("frozen program state poisoned".into())
                })? = Some(saved);
            }
            return Ok((CpuStorage::F32(out), Shape::from((batch, width))));
        }
        let shape = saved.dims[self.last].batch_shape(batch);
        let out =
            if self.keep {
                let out = saved.output(self.last)?.to_vec();
                *self.saved.lock().map_err(|_| {
                    candle_core::Error::Msg("frozen program state poisoned".into())
                })? = Some(saved);
                out
            } else {
                saved.outputs.pop().flatten().unwrap_or_default()
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
        let (grad, extra) = if self.extras.is_empty() {
            (grad, HashMap::new())
        } else {
            // Split each image's row back into the steps' batch-major gradients.
            let batch = saved.batch;
            let lens: Vec<usize> = self
                .extras
                .iter()
                .chain([&self.last])
                .map(|&i| saved.dims[i].len())
                .collect();
            let mut parts = deinterleave(&grad, &lens, batch);
            let last = parts.pop().unwrap_or_default();
            (last, self.extras.iter().copied().zip(parts).collect())
        };
        let grad_in = run_backward(&self.program, saved, (0, self.last), grad, &extra)?;
        Ok(Some(Tensor::from_vec(grad_in, arg.shape(), arg.device())?))
    }
}

/// Batch-major `parts` (each `batch` rows of its own width) joined row by row: `[B, sum]`.
fn interleave(parts: &[&[f32]], batch: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for b in 0..batch {
        for part in parts {
            let width = part.len() / batch.max(1);
            out.extend_from_slice(&part[b * width..(b + 1) * width]);
        }
    }
    out
}

/// The inverse of [`interleave`]: rows `[B, sum(lens)]` back into batch-major parts.
fn deinterleave(joined: &[f32], lens: &[usize], batch: usize) -> Vec<Vec<f32>> {
    let mut parts: Vec<Vec<f32>> = lens.iter().map(|l| Vec::with_capacity(l * batch)).collect();
    let mut at = 0;
    for _ in 0..batch {
        for (part, &len) in parts.iter_mut().zip(lens) {
            part.extend_from_slice(&joined[at..at + len]);
            at += len;
        }
    }
    parts
}

#[cfg(test)]
mod tests;
