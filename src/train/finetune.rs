//! Fine-tuning: the backbone's last convolutional block trained along with the head, from the
//! pretrained weights and at a lower learning rate. Its input (the activation of the tap
//! before the block) is computed once per photo; the block and the pooling run in every step.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::LastBlock;

/// How a fine-tuned block is laid out (saved with the head; weights as `block.N.weight`,
/// `block.N.bias`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// The backbone tap whose activation enters the block.
    pub input_tap: String,
    /// `[C, H, W]` of that activation.
    pub input_shape: [usize; 3],
    /// Per convolution: zero padding and whether ReLU6 (else ReLU) follows.
    pub convs: Vec<(usize, bool)>,
    pub max_pool: bool,
    /// The input is added before the last convolution's activation (a residual block).
    #[serde(default)]
    pub residual: bool,
}

impl BlockInfo {
    /// The block's input size per photo, `C * H * W`.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }
}

/// The block with its weights: trainable [`Var`]s while training, plain tensors after.
pub struct TrainableBlock {
    info: BlockInfo,
    /// Per convolution: weight `[out, in, k, k]` and bias `[1, out, 1, 1]`.
    convs: Vec<(Tensor, Tensor)>,
}

fn weight_name(i: usize) -> String {
    format!("block.{i}.weight")
}

fn bias_name(i: usize) -> String {
    format!("block.{i}.bias")
}

impl TrainableBlock {
    /// Trainable copies of `block`'s pretrained weights, registered in `varmap`; the block
    /// takes activations of shape `input_shape` (`[C, H, W]`).
    pub fn new(block: &LastBlock, input_shape: [usize; 3], varmap: &VarMap) -> Result<Self> {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Invalid("block weights poisoned".into()))?;
        let mut convs = Vec::new();
        for (i, conv) in block.convs.iter().enumerate() {
            // The head trains on the CPU, whatever device the backbone runs on.
            let weight = Var::from_tensor(&conv.weight.to_device(&Device::Cpu)?.copy()?)?;
            let bias = Var::from_tensor(&conv.bias.to_device(&Device::Cpu)?.copy()?)?;
            convs.push((weight.as_tensor().clone(), bias.as_tensor().clone()));
            data.insert(weight_name(i), weight);
            data.insert(bias_name(i), bias);
        }
        let info = BlockInfo {
            input_tap: block.input_tap.clone(),
            input_shape,
            convs: block.convs.iter().map(|c| (c.padding, c.relu6)).collect(),
            max_pool: block.max_pool,
            residual: block.residual,
        };
        Self::with_convs(info, convs)
    }

    /// The block described by `info` with weights from `weights` (as saved).
    pub fn from_weights(info: &BlockInfo, weights: &HashMap<String, Tensor>) -> Result<Self> {
        let get = |name: String| {
            weights
                .get(&name)
                .cloned()
                .ok_or_else(|| Error::Invalid(format!("the fine-tuned block lacks {name}")))
        };
        let convs = (0..info.convs.len())
            .map(|i| Ok((get(weight_name(i))?, get(bias_name(i))?)))
            .collect::<Result<Vec<_>>>()?;
        Self::with_convs(info.clone(), convs)
    }

    fn with_convs(info: BlockInfo, convs: Vec<(Tensor, Tensor)>) -> Result<Self> {
        let convs = convs
            .into_iter()
            .map(|(w, b)| {
                let out = w.dim(0)?;
                Ok((w, b.reshape((1, out, 1, 1))?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { info, convs })
    }

    /// How the block is laid out (what its head's description saves).
    pub fn info(&self) -> &BlockInfo {
        &self.info
    }

    /// Block inputs `[n, C * H * W]` (row-major `[C, H, W]` per photo) -> pooled features
    /// `[n, out]`, differentiable with respect to the block's weights.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [c, h, w] = self.info.input_shape;
        let input = x.reshape((x.dim(0)?, c, h, w))?;
        let mut x = input.clone();
        let last = self.convs.len().saturating_sub(1);
        for (i, ((weight, bias), &(padding, relu6))) in
            self.convs.iter().zip(&self.info.convs).enumerate()
        {
            x = x.conv2d(weight, padding, 1, 1, 1)?.broadcast_add(bias)?;
            if self.info.residual && i == last {
                x = (x + &input)?;
            }
            x = if relu6 {
                x.clamp(0f32, 6f32)?
            } else {
                x.relu()?
            };
        }
        if self.info.max_pool {
            x = x.max_pool2d(2)?;
        }
        Ok(x.mean((2, 3))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Activation, Padding, PoolWindow};
    use crate::model::layers::{conv, ConvSpec};
    use crate::model::network::{Layer, NetworkBuilder};
    use crate::model::reference::global_avg_pool;
    use crate::model::{BlockConv, TapKind};

    /// The trainable block computes what the frozen layers compute, and its weights get
    /// gradients.
    #[test]
    fn block_matches_the_frozen_layers_and_learns() -> Result<()> {
        let dev = Device::Cpu;
        let spec = ConvSpec {
            in_channels: 4,
            out_channels: 6,
            kernel: 3,
            stride: 1,
            padding: Padding::Symmetric(1),
            groups: 1,
        };
        let mut weights = HashMap::new();
        weights.insert(
            "weight".to_string(),
            Tensor::randn(0f32, 0.3, (6, 4, 3, 3), &dev)?,
        );
        weights.insert("bias".to_string(), Tensor::randn(0f32, 0.1, 6, &dev)?);
        let vb = candle_nn::VarBuilder::from_tensors(weights, candle_core::DType::F32, &dev);
        let layer = conv(vb, spec, Activation::Relu)?;
        let block = LastBlock {
            input_tap: "x".into(),
            convs: vec![BlockConv {
                weight: layer.weight.clone(),
                bias: layer.bias.clone(),
                padding: 1,
                relu6: false,
            }],
            max_pool: true,
            residual: false,
        };
        let mut frozen = NetworkBuilder::default();
        frozen.push(Layer::Conv(layer));
        frozen.push_tap(
            Layer::MaxPool(PoolWindow::TWO_BY_TWO),
            "pool",
            TapKind::Pool,
        );
        let frozen = crate::model::engine::Engine::build(frozen)?;
        let x = Tensor::randn(0f32, 1.0, (2, 4, 6, 6), &dev)?;
        let expected = global_avg_pool(&frozen.forward_until(&x, Some("pool"))?)?;
        let varmap = VarMap::new();
        let trainable = TrainableBlock::new(&block, [4, 6, 6], &varmap)?;
        let got = trainable.forward(&x.flatten_from(1)?)?;
        let diff = (got - &expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");

        let out = trainable.forward(&x.flatten_from(1)?)?.sum_all()?;
        let grads = out.backward()?;
        for var in varmap.all_vars() {
            assert!(grads.get(var.as_tensor()).is_some());
        }
        Ok(())
    }
}
