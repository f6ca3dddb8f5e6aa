//! Classifier heads on a backbone for the export tests: random tensors, a "fine-tuned" copy
//! of the backbone's last block, and our own logits through the head.

use candle_core::{Device, Tensor};
use cnn_explorer::model::Backbone;
use cnn_explorer::train::finetune::BlockInfo;
use cnn_explorer::train::head::Head;

/// A normal tensor of `shape` with standard deviation `scale`, on the CPU.
pub fn randn(shape: &[usize], scale: f32) -> Tensor {
    Tensor::randn(0f32, scale, shape, &Device::Cpu).unwrap()
}

/// Gives `head` the backbone's last block, its weights and biases moved by normal noise of
/// `noise` (a "fine-tuned" block), its input shape taken from `x`.
pub fn fine_tune(backbone: &dyn Backbone, head: &mut Head, x: &Tensor, noise: f32) {
    let block = backbone.last_block().expect("a fine-tunable block");
    let input = backbone.forward_until(x, Some(&block.input_tap)).unwrap();
    let (_, c, h, w) = input.dims4().unwrap();
    for (i, conv) in block.convs.iter().enumerate() {
        let weight = (&conv.weight + randn(conv.weight.dims(), noise)).unwrap();
        let bias = (&conv.bias + randn(conv.bias.dims(), noise)).unwrap();
        head.weights.insert(format!("block.{i}.weight"), weight);
        head.weights.insert(format!("block.{i}.bias"), bias);
    }
    head.block = Some(BlockInfo {
        input_tap: block.input_tap.clone(),
        input_shape: [c, h, w],
        convs: block.convs.iter().map(|c| (c.padding, c.relu6)).collect(),
        max_pool: block.max_pool,
        residual: block.residual,
    });
}

/// Our classifier's logits: the embedding (or the fine-tuned block's input) through the head.
pub fn ours(backbone: &dyn Backbone, head: &Head, x: &Tensor) -> Tensor {
    let features = match &head.block {
        Some(b) => backbone
            .forward_until(x, Some(&b.input_tap))
            .unwrap()
            .flatten_from(1)
            .unwrap(),
        None => backbone.embed(x).unwrap(),
    };
    head.logits(&features).unwrap()
}
