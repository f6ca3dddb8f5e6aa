//! Building blocks shared by the backbones: convolutions with batch norm folded in at load
//! time, TensorFlow-style "same" padding, a differentiable adaptive average pool, linear
//! layers. Every op here keeps gradients flowing to the input.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::cpu_ops;
use super::program::{Activation, ProgramOp};

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// The same number of zeros on every side (PyTorch's `padding=p`).
    Symmetric(usize),
    /// TensorFlow's "SAME": output size `ceil(in / stride)`, the odd zero on the bottom/right.
    TfSame,
}

/// A 2-D convolution with an optional bias, eval-mode batch norm folded into its weights.
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    /// `[1, out_channels, 1, 1]`, ready to broadcast.
    bias: Option<Tensor>,
    stride: usize,
    padding: Padding,
    groups: usize,
}

/// Shape of a convolution to load.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
    pub groups: usize,
}

impl Conv {
    /// Loads `weight` `[out, in/groups, k, k]` and `bias` `[out]` (PyTorch `nn.Conv2d` names).
    pub fn load(vb: VarBuilder, spec: ConvSpec) -> Result<Self> {
        let weight = vb.get(Self::weight_shape(&spec), "weight")?;
        let bias = vb.get(spec.out_channels, "bias")?;
        Ok(Self::from_parts(weight, Some(bias), spec))
    }

    /// Loads a bias-free convolution (`conv_vb`) followed by a `BatchNorm2d` (`bn_vb`) with
    /// epsilon `eps`, folded into one convolution: `w * g / sqrt(v + eps)`,
    /// `b - m * g / sqrt(v + eps)`.
    pub fn load_with_batch_norm(
        conv_vb: VarBuilder,
        bn_vb: VarBuilder,
        spec: ConvSpec,
        eps: f64,
    ) -> Result<Self> {
        let weight = conv_vb.get(Self::weight_shape(&spec), "weight")?;
        let c = spec.out_channels;
        let gamma = bn_vb.get(c, "weight")?;
        let beta = bn_vb.get(c, "bias")?;
        let mean = bn_vb.get(c, "running_mean")?;
        let var = bn_vb.get(c, "running_var")?;
        let scale = gamma.div(&(var + eps)?.sqrt()?)?;
        let weight = weight.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
        let bias = beta.sub(&mean.mul(&scale)?)?;
        Ok(Self::from_parts(weight, Some(bias), spec))
    }

    fn weight_shape(spec: &ConvSpec) -> (usize, usize, usize, usize) {
        (
            spec.out_channels,
            spec.in_channels / spec.groups,
            spec.kernel,
            spec.kernel,
        )
    }

    fn from_parts(weight: Tensor, bias: Option<Tensor>, spec: ConvSpec) -> Self {
        let out = spec.out_channels;
        Self {
            weight,
            bias: bias.and_then(|b| b.reshape((1, out, 1, 1)).ok()),
            stride: spec.stride,
            padding: spec.padding,
            groups: spec.groups,
        }
    }
}

impl Module for Conv {
    /// `[B, C_in, H, W]` -> `[B, C_out, H', W']`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.convolve(x)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

impl Conv {
    /// The convolution proper: our fast CPU kernels for frozen f32 weights (which pad as they
    /// go), else candle's on an explicitly padded input.
    fn convolve(&self, x: &Tensor) -> Result<Tensor> {
        let frozen = !self.weight.track_op();
        let (c_out, c_in_per_group, k, _) = self.weight.dims4()?;
        if frozen && cpu_ops::supported(x) {
            if self.groups == 1 {
                return cpu_ops::conv2d_frozen(x, &self.weight, self.stride, self.padding);
            }
            if c_in_per_group == 1 && self.groups == c_out {
                return cpu_ops::depthwise_conv2d_frozen(
                    x,
                    &self.weight,
                    self.stride,
                    self.padding,
                );
            }
        }
        let (x, pad) = match self.padding {
            Padding::Symmetric(p) => (x.clone(), p),
            Padding::TfSame => (pad_tf_same(x, k, self.stride)?, 0),
        };
        x.conv2d(&self.weight, pad, self.stride, 1, self.groups)
    }

    /// This convolution as a trainable block step (`None` unless plain: ungrouped, stride 1,
    /// with a bias, padded alike on every side).
    pub fn block_conv(&self, relu6: bool) -> Result<Option<super::BlockConv>> {
        let (c_out, _, k, _) = self.weight.dims4()?;
        let padding = match self.padding {
            Padding::Symmetric(p) => p,
            // Stride 1: TF "same" pads (k-1)/2 each side, evenly for odd kernels.
            Padding::TfSame if k % 2 == 1 => (k - 1) / 2,
            Padding::TfSame => return Ok(None),
        };
        let (Some(bias), 1, 1) = (&self.bias, self.groups, self.stride) else {
            return Ok(None);
        };
        Ok(Some(super::BlockConv {
            weight: self.weight.clone(),
            bias: bias.reshape(c_out)?,
            padding,
            relu6,
        }))
    }

    /// This convolution followed by `activation`, as a step of a
    /// [`FrozenProgram`](super::program::FrozenProgram); `None`
    /// for grouped convolutions other than depthwise ones.
    pub fn program_op(&self, activation: Activation) -> Result<Option<ProgramOp>> {
        let (c_out, c_in_per_group, _, _) = self.weight.dims4()?;
        let depthwise = self.groups > 1 && c_in_per_group == 1 && self.groups == c_out;
        if self.groups != 1 && !depthwise {
            return Ok(None);
        }
        let bias = match &self.bias {
            Some(b) => b.flatten_all()?,
            None => Tensor::zeros(c_out, self.weight.dtype(), self.weight.device())?,
        };
        Ok(Some(ProgramOp::Conv {
            weight: self.weight.contiguous()?,
            bias: bias.contiguous()?,
            stride: self.stride,
            padding: self.padding,
            depthwise,
            activation,
        }))
    }
}

/// TensorFlow "SAME" padding of `[B, C, H, W]` for a `k x k` kernel at `stride`.
pub fn pad_tf_same(x: &Tensor, k: usize, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let total = |size: usize| {
        let out = size.div_ceil(stride);
        ((out - 1) * stride + k).saturating_sub(size)
    };
    let (ph, pw) = (total(h), total(w));
    let x = if ph > 0 {
        x.pad_with_zeros(2, ph / 2, ph - ph / 2)?
    } else {
        x.clone()
    };
    if pw > 0 {
        x.pad_with_zeros(3, pw / 2, pw - pw / 2)
    } else {
        Ok(x)
    }
}

/// A fully connected layer, PyTorch `nn.Linear` names: `weight` `[out, in]`, `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// A layer of `weight` `[out, in]` and `bias` `[out]` (a 1x1 convolution's, reshaped).
    pub fn new(weight: Tensor, bias: Tensor) -> Self {
        Self { weight, bias }
    }

    pub fn load(vb: VarBuilder, in_features: usize, out_features: usize) -> Result<Self> {
        let weight = vb.get((out_features, in_features), "weight")?;
        let bias = vb.get(out_features, "bias")?;
        Ok(Self { weight, bias })
    }
}

impl Linear {
    /// This layer followed by `activation`, as a step of a
    /// [`FrozenProgram`](super::program::FrozenProgram).
    pub fn program_op(&self, activation: Activation) -> Result<ProgramOp> {
        Ok(ProgramOp::Linear {
            weight: self.weight.contiguous()?,
            bias: self.bias.contiguous()?,
            activation,
        })
    }
}

impl Module for Linear {
    /// `[B, in]` -> `[B, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if cpu_ops::supported(x) && !self.weight.track_op() {
            cpu_ops::linear_frozen(x, &self.weight)?
        } else {
            x.matmul(&self.weight.t()?)?
        };
        y.broadcast_add(&self.bias)
    }
}

/// ReLU, differentiable (our one-pass op on the CPU in f32).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if cpu_ops::supported(x) {
        cpu_ops::relu(x)
    } else {
        x.relu()
    }
}

/// ReLU6 (`min(max(x, 0), 6)`), differentiable.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    if cpu_ops::supported(x) {
        cpu_ops::relu6(x)
    } else {
        x.clamp(0f32, 6f32)
    }
}

/// 2x2 max-pooling with stride 2 (odd rows/columns dropped, as PyTorch does), with a correct
/// input gradient: `[B, C, H, W]` -> `[B, C, H/2, W/2]`.
///
/// On the CPU in f32 this is our op (gradient to each window's first maximum, as PyTorch).
/// Elsewhere candle's: its backward multiplies the gradient by the share of maxima in each
/// window (1/4 for a single maximum) where it should divide by their number, so a VGG would
/// pass 1/1024 of the true gradient to its input; the incoming gradient is rescaled here by
/// `4 / maxima^2` (a value-free straight-through term), which makes candle's result exact.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    if cpu_ops::supported(x) {
        cpu_ops::max_pool2x2(x)
    } else {
        max_pool2x2_candle(x)
    }
}

/// [`max_pool2x2`] with candle's op and its gradient corrected (ties share the gradient).
fn max_pool2x2_candle(x: &Tensor) -> Result<Tensor> {
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
/// `max_pool2d` has none for overlapping windows): `[B, C, H, W]` -> `[B, C, ⌊(H-1)/2⌋+1, ...]`.
///
/// On the CPU in f32 our op (gradient to each window's first maximum, as PyTorch). Elsewhere
/// the maximum of the nine strided views of the padded input, each differentiable (tied
/// maxima share the gradient).
pub fn max_pool3x3s2(x: &Tensor) -> Result<Tensor> {
    if cpu_ops::supported(x) {
        cpu_ops::max_pool(x, cpu_ops::PoolWindow::THREE_BY_THREE_STRIDE_TWO)
    } else {
        max_pool3x3s2_candle(x)
    }
}

/// [`max_pool3x3s2`] with candle's ops (any device).
fn max_pool3x3s2_candle(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let window = cpu_ops::PoolWindow::THREE_BY_THREE_STRIDE_TWO;
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adaptive_pool_matches_pytorch_bins() {
        // 3x3 -> 2x2: bins rows {0,1},{1,2}; the mean of [[0,1,2],[3,4,5],[6,7,8]] bins.
        let x = Tensor::arange(0f32, 9., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let y = adaptive_avg_pool2d(&x, 2).unwrap();
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![2.0, 3.0, 5.0, 6.0]);
        // 2x2 -> 7x7 replicates (each bin covers one source pixel).
        let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu).unwrap();
        let y = adaptive_avg_pool2d(&x, 7).unwrap();
        assert_eq!(y.dims4().unwrap(), (1, 1, 7, 7));
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v[0], 1.0);
        assert_eq!(v[48], 4.0);
    }

    #[test]
    fn max_pool_gradient_goes_whole_to_the_maximum() {
        let rows = [
            [1f32, 5., 0., 0.],
            [2., 3., 0., 0.],
            [0., 0., 9., 9.],
            [0., 0., 9., 1.],
        ];
        let x =
            candle_core::Var::from_tensor(&Tensor::new(&[[rows]], &Device::Cpu).unwrap()).unwrap();
        let gradient = |y: Tensor| -> Vec<f32> {
            let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(v, vec![5.0, 0.0, 0.0, 9.0]);
            let grads = y.sum_all().unwrap().backward().unwrap();
            let g = grads.get(x.as_tensor()).unwrap();
            g.flatten_all().unwrap().to_vec1().unwrap()
        };
        // The CPU op: one maximum gets all of the gradient; of tied maxima, the first.
        let g = gradient(max_pool2x2(x.as_tensor()).unwrap());
        assert_eq!((g[1], g[0]), (1.0, 0.0));
        assert_eq!((g[10], g[11], g[14]), (1.0, 0.0, 0.0));
        assert_eq!(g.iter().sum::<f32>(), 4.0);
        // candle's op, corrected: one maximum gets all of it; k tied maxima 1/k each.
        let g = gradient(max_pool2x2_candle(x.as_tensor()).unwrap());
        assert_eq!((g[1], g[0]), (1.0, 0.0));
        for i in [10, 11, 14] {
            assert!((g[i] - 1.0 / 3.0).abs() < 1e-6, "{g:?}");
        }
        assert!((g.iter().sum::<f32>() - 4.0).abs() < 1e-5);
    }

    #[test]
    fn both_3x3_stride_2_max_pools_agree_with_each_other_and_pass_gradients() {
        for (h, w) in [(7, 8), (6, 5)] {
            let x0 = Tensor::randn(0f32, 1.0, (2, 3, h, w), &Device::Cpu).unwrap();
            let run = |pool: fn(&Tensor) -> Result<Tensor>| {
                let x = candle_core::Var::from_tensor(&x0).unwrap();
                let y = pool(x.as_tensor()).unwrap();
                let weights = Tensor::arange(0f32, y.elem_count() as f32, &Device::Cpu)
                    .unwrap()
                    .reshape(y.shape())
                    .unwrap();
                let grads = (&y * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let g: Vec<f32> = grads
                    .get(x.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
                (y.dims().to_vec(), v, g)
            };
            let (dims, values, grad) = run(max_pool3x3s2);
            assert_eq!(dims, vec![2, 3, (h - 1) / 2 + 1, (w - 1) / 2 + 1]);
            let (dims_c, values_c, grad_c) = run(max_pool3x3s2_candle);
            assert_eq!(dims, dims_c);
            assert_eq!(values, values_c);
            // Random values have no ties: both send each gradient to the one maximum.
            assert_eq!(grad, grad_c);
            // Windows overlap: a cell can collect from several outputs.
            let total: f32 = (0..values.len()).map(|i| i as f32).sum();
            assert!((grad.iter().sum::<f32>() - total).abs() < 1e-3 * total);
        }
    }

    #[test]
    fn tf_same_padding_puts_the_odd_zero_last() {
        let x = Tensor::ones((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let p = pad_tf_same(&x, 3, 2).unwrap();
        assert_eq!(p.dims4().unwrap(), (1, 1, 5, 5));
        let v: Vec<Vec<f32>> = p.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(v[0][0], 1.0);
        assert_eq!(v[4][4], 0.0);
    }
}
