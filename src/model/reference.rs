//! A [`Network`] run with candle's own ops, on any device: the path for CUDA and Metal, and
//! the reference the fast CPU program is tested against. Every op keeps gradients to the
//! input (no fused softmax, no ReLU on the logits).
//!
//! Two of candle's backward passes need help. A convolution's input gradient is a transposed
//! convolution whose output padding candle derives from the height alone, so an input whose
//! last rows or columns the stride skips would get a gradient of the wrong shape: the input is
//! padded and cropped to exactly what the kernel reads first. And `max_pool2d`'s backward
//! scales the gradient by the share of maxima in a window where it should divide by their
//! count (see [`max_pool2x2`]).

use candle_core::{Result, Tensor, D};

use super::network::{ConvLayer, Layer, LinearLayer, Network, SqueezeExciteLayer, TapSink};
use crate::kernels::{Activation, PoolWindow};

/// Runs steps `0..=last` of `network` on `x` `[B, 3, H, W]`, reporting each tap to `sink`;
/// the last step's output.
pub fn forward(network: &Network, x: &Tensor, last: usize, sink: TapSink) -> Result<Tensor> {
    forward_steps(network, x, 0..=last, &mut Vec::new(), sink)
}

/// Runs `steps` of `network` on `x` (the input of the first of them), with `residuals` the
/// starts of the residuals open before them (left as open after them), reporting each tap to
/// `sink`; the last step's output. Splitting a pass in two this way lets the second half
/// start from a gradient-tracking activation (attribution maps need the gradient there).
pub fn forward_steps(
    network: &Network,
    x: &Tensor,
    steps: std::ops::RangeInclusive<usize>,
    residuals: &mut Vec<Tensor>,
    sink: TapSink,
) -> Result<Tensor> {
    let mut x = x.clone();
    let (first, last) = (*steps.start(), *steps.end());
    for step in network.steps().iter().take(last + 1).skip(first) {
        x = match &step.layer {
            Layer::Conv(conv) => conv_forward(conv, &x)?,
            Layer::MaxPool(window) => max_pool(&x, *window)?,
            Layer::AdaptiveAvgPool(n) => adaptive_avg_pool2d(&x, *n)?,
            Layer::GlobalAvgPool => global_avg_pool(&x)?,
            Layer::Linear(linear) => linear_forward(linear, &x)?,
            Layer::ResidualStart => {
                residuals.push(x.clone());
                x
            }
            Layer::ResidualAdd {
                shortcut,
                activation,
            } => {
                let Some(skip) = residuals.pop() else {
                    candle_core::bail!("residual add without a start");
                };
                let skip = match shortcut {
                    Some(conv) => conv_forward(conv, &skip)?,
                    None => skip,
                };
                activate(&(x + skip)?, *activation)?
            }
            Layer::HardSwish => hard_swish(&x)?,
            Layer::SqueezeExcite(se) => squeeze_excite(se, &x)?,
        };
        if let Some(tap) = &step.tap {
            sink(&tap.name, tap.kind, &x);
        }
    }
    Ok(x)
}

/// `activation(x)`.
fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    match activation {
        Activation::Identity => Ok(x.clone()),
        Activation::Relu => x.relu(),
        Activation::Relu6 => x.clamp(0f32, 6f32),
    }
}

/// `[B, C_in, H, W]` -> `[B, C_out, H', W']`: the convolution, bias and activation.
fn conv_forward(conv: &ConvLayer, x: &Tensor) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let k = conv.kernel();
    let (s, padding) = (conv.stride, conv.padding);
    let fit = |size: usize| -> Result<(usize, usize)> {
        let (before, after) = padding
            .sides(size, k, s)
            .ok_or_else(|| candle_core::Error::Msg(format!("a {k}x{k} kernel on {h}x{w}")))?;
        let padded = size + before + after;
        if padded < k {
            candle_core::bail!("a {k}x{k} kernel does not fit a {h}x{w} input");
        }
        // What the kernel reads: the rest is skipped by the stride.
        let used = (padded - k) / s * s + k;
        Ok((before, used))
    };
    let ((top, rows), (left, cols)) = (fit(h)?, fit(w)?);
    let x = x.pad_with_zeros(2, top, rows.saturating_sub(top + h))?;
    let x = x.pad_with_zeros(3, left, cols.saturating_sub(left + w))?;
    let x = x.narrow(2, 0, rows)?.narrow(3, 0, cols)?;
    let groups = if conv.depthwise { c } else { 1 };
    let y = x.conv2d(&conv.weight, 0, s, 1, groups)?;
    let y = y.broadcast_add(&conv.bias.reshape((1, (), 1, 1))?)?;
    activate(&y, conv.activation)
}

/// `[B, in]` (or any activation, flattened) -> `[B, out]`.
fn linear_forward(linear: &LinearLayer, x: &Tensor) -> Result<Tensor> {
    let x = x.flatten_from(1)?;
    let y = x.matmul(&linear.weight.t()?)?.broadcast_add(&linear.bias)?;
    activate(&y, linear.activation)
}

/// `x * relu6(x + 3) / 6`.
fn hard_swish(x: &Tensor) -> Result<Tensor> {
    x.mul(&((x + 3.0)?.clamp(0f32, 6f32)? / 6.0)?)
}

/// Squeeze-and-excitation: channels scaled by `hard_sigmoid(expand(relu(reduce(mean))))`.
fn squeeze_excite(se: &SqueezeExciteLayer, x: &Tensor) -> Result<Tensor> {
    let (b, c, _, _) = x.dims4()?;
    let squeezed = global_avg_pool(x)?;
    let hidden = linear_forward(&se.reduce, &squeezed)?.relu()?;
    let gate = ((linear_forward(&se.expand, &hidden)? + 3.0)?.clamp(0f32, 6f32)? / 6.0)?;
    x.broadcast_mul(&gate.reshape((b, c, 1, 1))?)
}

/// Max-pooling over `window` (the 2x2/2 and 3x3/2-padded windows the networks use).
fn max_pool(x: &Tensor, window: PoolWindow) -> Result<Tensor> {
    match window {
        PoolWindow::TWO_BY_TWO => max_pool2x2(x),
        PoolWindow::THREE_BY_THREE_STRIDE_TWO => max_pool3x3s2(x),
        other => candle_core::bail!("no candle path for the max-pool window {other:?}"),
    }
}

/// 2x2 max-pooling with stride 2 (odd rows/columns dropped, as PyTorch does), with a correct
/// input gradient: `[B, C, H, W]` -> `[B, C, H/2, W/2]`.
///
/// candle's backward multiplies the gradient by the share of maxima in each window (1/4 for a
/// single maximum) where it should divide by their number, so a VGG would pass 1/1024 of the
/// true gradient to its input; the incoming gradient is rescaled here by `4 / maxima^2` (a
/// value-free straight-through term), which makes candle's result exact (tied maxima share).
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let x = if h % 2 == 1 || w % 2 == 1 {
        // The pool ignores them anyway; cropping keeps candle's upsampled mask aligned.
        x.narrow(2, 0, h - h % 2)?.narrow(3, 0, w - w % 2)?
    } else {
        x.clone()
    };
    let y = x.max_pool2d(2)?;
    if !x.track_op() {
        return Ok(y);
    }
    let (x_const, y_const) = (x.detach(), y.detach());
    let (h, w) = (x.dim(2)?, x.dim(3)?);
    let is_max = x_const
        .eq(&y_const.upsample_nearest2d(h, w)?)?
        .to_dtype(x.dtype())?;
    let maxima = (is_max.avg_pool2d(2)? * 4.0)?;
    let scale = (maxima.sqr()?.recip()? * 4.0)?;
    // Value: y. Gradient: scale * d(y).
    let scaled = y.mul(&scale)?;
    scaled.add(&(y_const - scaled.detach())?)
}

/// ResNet's stem max-pool, 3x3 with stride 2 and padding 1, with an input gradient (candle's
/// `max_pool2d` has none for overlapping windows): the maximum of the nine strided views of
/// the padded input, each differentiable (tied maxima share the gradient).
/// `[B, C, H, W]` -> `[B, C, ⌊(H-1)/2⌋+1, ⌊(W-1)/2⌋+1]`.
pub fn max_pool3x3s2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let window = PoolWindow::THREE_BY_THREE_STRIDE_TWO;
    let (oh, ow) = (window.out_size(h), window.out_size(w));
    if oh == 0 || ow == 0 {
        candle_core::bail!("a 3x3 pool does not fit a {h}x{w} input");
    }
    // One row/column of "-infinity" before, two after: every view below stays inside.
    let low = f32::MIN;
    let fill = |shape: (usize, usize, usize, usize)| {
        Tensor::full(low, shape, x.device())?.to_dtype(x.dtype())
    };
    let x = Tensor::cat(&[&fill((b, c, 1, w))?, x, &fill((b, c, 2, w))?], 2)?;
    let x = Tensor::cat(&[&fill((b, c, h + 3, 1))?, &x, &fill((b, c, h + 3, 2))?], 3)?;
    let mut out: Option<Tensor> = None;
    for dy in 0..3 {
        // Rows dy, dy + 2, ...: a window of 2 * oh rows, every other one.
        let rows = x
            .narrow(2, dy, 2 * oh)?
            .reshape((b, c, oh, 2, w + 3))?
            .narrow(3, 0, 1)?
            .squeeze(3)?;
        for dx in 0..3 {
            let view = rows
                .narrow(3, dx, 2 * ow)?
                .reshape((b, c, oh, ow, 2))?
                .narrow(4, 0, 1)?
                .squeeze(4)?;
            out = Some(match out {
                None => view,
                Some(m) => m.maximum(&view)?,
            });
        }
    }
    out.ok_or_else(|| candle_core::Error::Msg("empty pool".into()))
}

/// Global average pool: `[B, C, H, W]` -> `[B, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean(D::Minus1)?.mean(D::Minus1)
}

/// PyTorch's `AdaptiveAvgPool2d((out, out))` on `[B, C, H, W]`, differentiable: bin `i`
/// averages rows `floor(i*H/out) .. ceil((i+1)*H/out)`, written as two matrix products.
pub fn adaptive_avg_pool2d(x: &Tensor, out: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h == out && w == out {
        return Ok(x.clone());
    }
    if h % out == 0 && w % out == 0 && h / out == w / out {
        return x.avg_pool2d(h / out);
    }
    let rows = pooling_matrix(h, out, x.device())?.to_dtype(x.dtype())?; // [out, H]
    let cols = pooling_matrix(w, out, x.device())?.to_dtype(x.dtype())?; // [out, W]
                                                                         // [B, C, H, W] x [W, out] -> [B, C, H, out]; then rows: [out, H] x [B, C, H, out].
    let y = x.broadcast_matmul(&cols.t()?)?;
    rows.broadcast_matmul(&y)
}

fn pooling_matrix(size: usize, out: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mut m = vec![0f32; out * size];
    for i in 0..out {
        let start = i * size / out;
        let end = ((i + 1) * size).div_ceil(out);
        for j in start..end {
            m[i * size + j] = 1.0 / (end - start) as f32;
        }
    }
    Tensor::from_vec(m, (out, size), device)
}
