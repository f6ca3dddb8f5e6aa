//! Each kind of program step with its own shape rule, forward pass and input gradient, on
//! one batch of activations laid out `[B, C, H, W]` (or `[B, F]`) in a flat slice.

use std::sync::OnceLock;

use candle_core::{Result, Storage, Tensor};
use rayon::prelude::*;

use crate::kernels::activation::{bias_activation, hard_swish, hard_swish_slope, mask_gradient};
use crate::kernels::squeeze_excite::SqueezeExcite;
use crate::kernels::{conv, depthwise, pool, winograd, Activation, Geometry, Padding, PoolWindow};
use crate::model::network::{ConvLayer, LinearLayer, SqueezeExciteLayer};

/// The shape of one image's activation: `(c, h, w)`, or a vector of `c` when `flat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dims {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub flat: bool,
}

impl Dims {
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn map(c: usize, h: usize, w: usize) -> Self {
        Self {
            c,
            h,
            w,
            flat: false,
        }
    }

    pub fn vector(c: usize) -> Self {
        Self {
            c,
            h: 1,
            w: 1,
            flat: true,
        }
    }

    fn plane(&self) -> usize {
        self.h * self.w
    }
}

/// What a step sees of one run: the batch and the shapes on either side of it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    pub batch: usize,
    pub input: Dims,
    pub output: Dims,
}

/// One step's computation. `input`, `output` and gradients are whole batches.
pub(super) trait StepKernel: Send + Sync + std::fmt::Debug {
    /// The output shape for one image of `input` shape (an error when it cannot take it).
    fn out_dims(&self, input: Dims) -> Result<Dims>;

    fn forward(&self, f: &Frame, input: &[f32]) -> Result<Vec<f32>>;

    /// The input gradient for the output gradient `grad` (`output` is what `forward` gave).
    fn backward(
        &self,
        f: &Frame,
        input: &[f32],
        output: &[f32],
        grad: Vec<f32>,
    ) -> Result<Vec<f32>>;
}

/// The f32 data of a contiguous CPU tensor, to `f`.
pub(super) fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(super::f32_slice(cpu, layout, "frozen weight")?),
        _ => candle_core::bail!("frozen program weights must be on the CPU"),
    }
}

/// A convolution step: Winograd for 3x3 stride-1 pad-1 dense layers, else im2col + gemm or
/// the depthwise kernel; bias and activation fused into the output pass.
#[derive(Debug)]
pub(super) struct ConvStep {
    layer: ConvLayer,
    /// The Winograd kernels, forward and input-gradient, made on first use.
    winograd: [OnceLock<Vec<f32>>; 2],
}

impl ConvStep {
    pub fn new(layer: ConvLayer) -> Self {
        Self {
            layer,
            winograd: Default::default(),
        }
    }

    fn geometry(&self, batch: usize, input: Dims) -> Result<Geometry> {
        let c_out = self.layer.weight.dim(0)?;
        let (k, stride) = (self.layer.kernel(), self.layer.stride);
        Geometry::new(
            (batch, input.c, input.h, input.w),
            c_out,
            k,
            stride,
            self.layer.padding,
        )
    }

    fn uses_winograd(&self, g: &Geometry) -> bool {
        !self.layer.depthwise && winograd::applies(g)
    }

    /// The Winograd kernels of this convolution, for the forward pass or the input gradient.
    fn winograd_kernels(&self, for_input_grad: bool) -> Result<&[f32]> {
        let cell = &self.winograd[usize::from(for_input_grad)];
        if let Some(kernels) = cell.get() {
            return Ok(kernels);
        }
        let (k, c, _, _) = self.layer.weight.dims4()?;
        let kernels = with_data(&self.layer.weight, |w| {
            Ok(winograd::transform_kernels(w, k, c, for_input_grad))
        })?;
        Ok(cell.get_or_init(|| kernels))
    }
}

impl StepKernel for ConvStep {
    fn out_dims(&self, input: Dims) -> Result<Dims> {
        let (c_out, c_in_k, _, _) = self.layer.weight.dims4()?;
        let c_in = if self.layer.depthwise { c_out } else { c_in_k };
        if input.flat || input.c != c_in {
            candle_core::bail!(
                "a {:?} kernel cannot take {input:?}",
                self.layer.weight.dims()
            );
        }
        let g = self.geometry(1, input)?;
        Ok(Dims::map(c_out, g.out_h, g.out_w))
    }

    fn forward(&self, f: &Frame, input: &[f32]) -> Result<Vec<f32>> {
        let g = self.geometry(f.batch, f.input)?;
        let activation = self.layer.activation;
        with_data(&self.layer.bias, |bias| {
            if self.uses_winograd(&g) {
                let top = activation.top();
                let epilogue = winograd::Epilogue {
                    bias: Some(bias),
                    low: top.map_or(f32::NEG_INFINITY, |_| 0.0),
                    high: top.unwrap_or(f32::INFINITY),
                };
                return winograd::conv3x3(&g, input, self.winograd_kernels(false)?, epilogue);
            }
            let mut out = with_data(&self.layer.weight, |w| {
                if self.layer.depthwise {
                    Ok(depthwise::depthwise_forward(&g, input, w))
                } else {
                    conv::conv_forward(&g, input, w)
                }
            })?;
            bias_activation(&mut out, bias, f.output.plane(), activation);
            Ok(out)
        })
    }

    fn backward(
        &self,
        f: &Frame,
        _input: &[f32],
        output: &[f32],
        mut grad: Vec<f32>,
    ) -> Result<Vec<f32>> {
        mask_gradient(&mut grad, output, self.layer.activation);
        let g = self.geometry(f.batch, f.input)?;
        if self.uses_winograd(&g) {
            // Stride 1, pad 1: the input gradient is a 3x3 convolution too.
            let back = Geometry::new(
                (f.batch, g.c_out, g.out_h, g.out_w),
                g.c_in,
                3,
                1,
                Padding::Symmetric(1),
            )?;
            let kernels = self.winograd_kernels(true)?;
            return winograd::conv3x3(&back, &grad, kernels, winograd::Epilogue::NONE);
        }
        with_data(&self.layer.weight, |w| {
            if self.layer.depthwise {
                Ok(depthwise::depthwise_input_grad(&g, &grad, w))
            } else {
                conv::conv_input_grad(&g, &grad, w)
            }
        })
    }
}

/// Max-pooling; the gradient goes to each window's first maximum.
#[derive(Debug)]
pub(super) struct MaxPoolStep(pub PoolWindow);

impl StepKernel for MaxPoolStep {
    fn out_dims(&self, input: Dims) -> Result<Dims> {
        let (h, w) = (self.0.out_size(input.h), self.0.out_size(input.w));
        if input.flat || h == 0 || w == 0 {
            candle_core::bail!("a {0}x{0} pool cannot take {input:?}", self.0.kernel);
        }
        Ok(Dims { h, w, ..input })
    }

    fn forward(&self, f: &Frame, input: &[f32]) -> Result<Vec<f32>> {
        let d = f.input;
        Ok(pool::max_pool_forward(
            input,
            f.batch * d.c,
            d.h,
            d.w,
            self.0,
        ))
    }

    fn backward(&self, f: &Frame, input: &[f32], _: &[f32], grad: Vec<f32>) -> Result<Vec<f32>> {
        let d = f.input;
        Ok(pool::max_pool_grad(
            input,
            &grad,
            f.batch * d.c,
            d.h,
            d.w,
            self.0,
        ))
    }
}

/// PyTorch's `AdaptiveAvgPool2d((n, n))`.
#[derive(Debug)]
pub(super) struct AdaptiveAvgPoolStep(pub usize);

impl StepKernel for AdaptiveAvgPoolStep {
    fn out_dims(&self, input: Dims) -> Result<Dims> {
        if input.flat {
            candle_core::bail!("an adaptive pool cannot take {input:?}");
        }
        Ok(Dims::map(input.c, self.0, self.0))
    }

    fn forward(&self, f: &Frame, input: &[f32]) -> Result<Vec<f32>> {
        let (d, n) = (f.input, self.0);
        Ok(if (d.h, d.w) == (n, n) {
            input.to_vec()
        } else {
            pool::adaptive_pool(input, f.batch * d.c, (d.h, d.w), n)
        })
    }

    fn backward(&self, f: &Frame, _: &[f32], _: &[f32], grad: Vec<f32>) -> Result<Vec<f32>> {
        let (d, n) = (f.input, self.0);
        Ok(if (d.h, d.w) == (n, n) {
            grad
        } else {
            pool::adaptive_pool_grad(&grad, f.batch * d.c, (d.h, d.w), n)
        })
    }
}

/// The mean over space: `[C, H, W]` -> `[C]`.
#[derive(Debug)]
pub(super) struct GlobalAvgPoolStep;

impl StepKernel for GlobalAvgPoolStep {
    fn out_dims(&self, input: Dims) -> Result<Dims> {
        Ok(Dims::vector(input.c))
    }

    fn forward(&self, f: &Frame, input: &[f32]) -> Result<Vec<f32>> {
        Ok(pool::global_avg_pool(input, f.input.plane()))
    }

    fn backward(&self, f: &Frame, _: &[f32], _: &[f32], grad: Vec<f32>) -> Result<Vec<f32>> {
        Ok(pool::global_avg_pool_grad(&grad, f.input.plane()))
    }
}

/// A fully connected layer on the flattened activation.
#[derive(Debug)]
pub(super) struct LinearStep(pub LinearLayer);

impl StepKernel for LinearStep {
    fn out_dims(&self, input: Dims) -> Result<Dims> {
        let (d_out, d_in) = self.0.weight.dims2()?;
        if d_in != input.len() {
            candle_core::bail!("a linear layer of {d_in} inputs cannot take {input:?}");
        }
        Ok(Dims::vector(d_out))
    }

    fn forward(&self, f: &Frame, input: &[f32]) -> Result<Vec<f32>> {
        use crate::kernels::gemm::{matmul, Strides};
        let (d_out, d_in) = self.0.weight.dims2()?;
        let mut out = vec![0f32; f.batch * d_out];
        with_data(&self.0.weight, |w| {
            // w [out, in] read as w^T [in, out].
            matmul(
                (f.batch, d_out, d_in),
                (&mut out, Strides::rows(d_out)),
                (input, Strides::rows(d_in)),
                (w, Strides::cols(d_in)),
            )
        })?;
        with_data(&self.0.bias, |b| {
            bias_activation(&mut out, b, 1, self.0.activation);
            Ok(())
        })?;
        Ok(out)
    }

    fn backward(
        &self,
        f: &Frame,
        _input: &[f32],
        output: &[f32],
        mut grad: Vec<f32>,
    ) -> Result<Vec<f32>> {
        use crate::kernels::gemm::{matmul, Strides};
        mask_gradient(&mut grad, output, self.0.activation);
        let (d_out, d_in) = self.0.weight.dims2()?;
        let mut g = vec![0f32; f.batch * d_in];
        with_data(&self.0.weight, |w| {
            matmul(
                (f.batch, d_in, d_out),
                (&mut g, Strides::rows(d_in)),
                (&grad, Strides::rows(d_out)),
                (w, Strides::rows(d_in)),
            )
        })?;
        Ok(g)
    }
}

/// `x * relu6(x + 3) / 6`, element-wise.
#[derive(Debug)]
pub(super) struct HardSwishStep;

impl StepKernel for HardSwishStep {
    fn out_dims(&self, input: Dims) -> Result<Dims> {
        Ok(input)
    }

    fn forward(&self, _: &Frame, input: &[f32]) -> Result<Vec<f32>> {
        Ok(input.par_iter().map(|&v| hard_swish(v)).collect())
    }

    fn backward(
        &self,
        _: &Frame,
        input: &[f32],
        _: &[f32],
        mut grad: Vec<f32>,
    ) -> Result<Vec<f32>> {
        grad.par_iter_mut()
            .zip(input.par_iter())
            .for_each(|(g, &x)| *g *= hard_swish_slope(x));
        Ok(grad)
    }
}

/// Squeeze-and-excitation, its weights copied out of the tensors on first use.
#[derive(Debug)]
pub(super) struct SqueezeExciteStep {
    layer: SqueezeExciteLayer,
    weights: OnceLock<SqueezeExcite>,
}

impl SqueezeExciteStep {
    pub fn new(layer: SqueezeExciteLayer) -> Self {
        Self {
            layer,
            weights: OnceLock::new(),
        }
    }

    fn weights(&self) -> Result<&SqueezeExcite> {
        if let Some(se) = self.weights.get() {
            return Ok(se);
        }
        let vec = |t: &Tensor| with_data(t, |d| Ok(d.to_vec()));
        let (reduce, expand) = (&self.layer.reduce, &self.layer.expand);
        let se = SqueezeExcite::new(
            (vec(&reduce.weight)?, vec(&reduce.bias)?),
            (vec(&expand.weight)?, vec(&expand.bias)?),
        )?;
        Ok(self.weights.get_or_init(|| se))
    }
}

impl StepKernel for SqueezeExciteStep {
    fn out_dims(&self, input: Dims) -> Result<Dims> {
        let c = self.layer.reduce.weight.dim(1)?;
        if input.flat || c != input.c {
            candle_core::bail!("squeeze-excite of {c} channels cannot take {input:?}");
        }
        Ok(input)
    }

    fn forward(&self, f: &Frame, input: &[f32]) -> Result<Vec<f32>> {
        let se = self.weights()?;
        if se.channels() != f.input.c {
            candle_core::bail!(
                "squeeze-excite of {} channels on {:?}",
                se.channels(),
                f.input
            );
        }
        Ok(se.forward(input, f.batch, f.input.plane()))
    }

    fn backward(&self, f: &Frame, input: &[f32], _: &[f32], grad: Vec<f32>) -> Result<Vec<f32>> {
        Ok(self
            .weights()?
            .backward(input, &grad, f.batch, f.input.plane()))
    }
}

/// The shape a residual's skip has at its end: the remembered `start` dims, projected by
/// `shortcut` when given.
pub(super) fn skip_dims(shortcut: Option<&ConvStep>, start: Dims) -> Result<Dims> {
    match shortcut {
        Some(conv) => conv.out_dims(start),
        None => Ok(start),
    }
}

/// A residual end's activation: `act(x + skip + shortcut bias)`; the bias is in the
/// projection's forward already, so this only adds and activates.
pub(super) fn residual_add(x: &[f32], skip: &[f32], activation: Activation, out: Dims) -> Vec<f32> {
    let mut sum = x.to_vec();
    sum.par_iter_mut()
        .zip(skip.par_iter())
        .for_each(|(o, r)| *o += r);
    bias_activation(&mut sum, &vec![0.0; out.c], out.plane(), activation);
    sum
}
