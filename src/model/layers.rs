//! Loading layers from PyTorch-named parameters: convolutions with eval-mode batch norm folded
//! in at load time, linear layers. What they compute is described in [`super::network`].

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::network::{ConvLayer, Layer, LinearLayer, Origin};
use crate::kernels::{Activation, Padding};

/// Shape of a convolution to load.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
    /// 1 (dense), or the channel count (depthwise); other groupings are refused.
    pub groups: usize,
}

impl ConvSpec {
    fn weight_shape(&self) -> (usize, usize, usize, usize) {
        (
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel,
            self.kernel,
        )
    }

    /// The convolution of this shape with `weight`, `bias` and `activation`.
    fn layer(&self, weight: Tensor, bias: Tensor, activation: Activation) -> Result<ConvLayer> {
        let padding = (self.stride, self.padding);
        ConvLayer::new(weight, bias, padding, self.depthwise()?, activation)
    }

    fn depthwise(&self) -> Result<bool> {
        let depthwise =
            self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels;
        if self.groups != 1 && !depthwise {
            candle_core::bail!("a convolution in {} groups is not supported", self.groups);
        }
        Ok(depthwise)
    }
}

/// Loads `weight` `[out, in/groups, k, k]` and `bias` `[out]` (PyTorch `nn.Conv2d` names),
/// followed by `activation`.
pub fn conv(vb: VarBuilder, spec: ConvSpec, activation: Activation) -> Result<ConvLayer> {
    let weight = vb.get(spec.weight_shape(), "weight")?;
    let bias = vb.get(spec.out_channels, "bias")?;
    let mut layer = spec.layer(weight, bias, activation)?;
    layer.origin = Some(origin(&vb, None, false));
    Ok(layer)
}

/// `vb`'s module (with `bn`'s batch norm folded into it) as a layer's [`Origin`].
fn origin(vb: &VarBuilder, bn: Option<&VarBuilder>, pointwise: bool) -> Origin {
    Origin {
        module: vb.prefix(),
        batch_norm: bn.map(VarBuilder::prefix),
        pointwise,
    }
}

/// Loads a bias-free convolution (`conv_vb`) followed by a `BatchNorm2d` (`bn_vb`) with
/// epsilon `eps`, folded into one convolution (`w * g / sqrt(v + eps)`,
/// `b - m * g / sqrt(v + eps)`), then `activation`.
pub fn conv_bn(
    (conv_vb, bn_vb): (VarBuilder, VarBuilder),
    spec: ConvSpec,
    eps: f64,
    activation: Activation,
) -> Result<ConvLayer> {
    let weight = conv_vb.get(spec.weight_shape(), "weight")?;
    let c = spec.out_channels;
    let gamma = bn_vb.get(c, "weight")?;
    let beta = bn_vb.get(c, "bias")?;
    let mean = bn_vb.get(c, "running_mean")?;
    let var = bn_vb.get(c, "running_var")?;
    let scale = gamma.div(&(var + eps)?.sqrt()?)?;
    let weight = weight.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
    let bias = beta.sub(&mean.mul(&scale)?)?;
    let mut layer = spec.layer(weight, bias, activation)?;
    layer.origin = Some(origin(&conv_vb, Some(&bn_vb), false));
    Ok(layer)
}

/// [`conv_bn`] as a network layer.
pub fn conv_bn_layer(
    vbs: (VarBuilder, VarBuilder),
    spec: ConvSpec,
    eps: f64,
    activation: Activation,
) -> Result<Layer> {
    Ok(Layer::Conv(conv_bn(vbs, spec, eps, activation)?))
}

/// A fully connected layer, PyTorch `nn.Linear` names: `weight` `[out, in]`, `bias` `[out]`.
pub fn linear(
    vb: VarBuilder,
    (in_features, out_features): (usize, usize),
    activation: Activation,
) -> Result<LinearLayer> {
    let weight = vb.get((out_features, in_features), "weight")?;
    let bias = vb.get(out_features, "bias")?;
    let mut layer = LinearLayer::new(weight, bias, activation)?;
    layer.origin = Some(origin(&vb, None, false));
    Ok(layer)
}

/// A 1x1 convolution `weight` `[out, in, 1, 1]` loaded as the linear layer it is (on a
/// pooled `[B, in]` activation).
pub fn pointwise_as_linear(
    vb: VarBuilder,
    (in_features, out_features): (usize, usize),
    activation: Activation,
) -> Result<LinearLayer> {
    let weight = vb
        .get((out_features, in_features, 1, 1), "weight")?
        .reshape((out_features, in_features))?;
    let bias = vb.get(out_features, "bias")?;
    let mut layer = LinearLayer::new(weight, bias, activation)?;
    layer.origin = Some(origin(&vb, None, true));
    Ok(layer)
}
