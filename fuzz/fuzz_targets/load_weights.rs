//! Weights-file bytes -> `read_tensors` (safetensors, PyTorch zip `.pth`, legacy pickle
//! `.pth`; the reader is picked by content, the file is named as a user's would be) ->
//! `tensors_for` + a tiny ResNet-18-shaped and VGG-16-shaped network (the configurations of
//! the seeds, see make_seeds.py) -> a forward pass, plus `load_backbone` for one real
//! architecture. An error names the file; a network that builds gives finite logits of the
//! right shape (see `CNN_FUZZ_ALLOW_NONFINITE` in common.rs).

#![no_main]

#[path = "common.rs"]
mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use cnn_explorer::model::resnet::{ResNet, ResNetConfig};
use cnn_explorer::model::vgg::{Vgg, VggConfig};
use cnn_explorer::model::{Arch, Backbone};
use cnn_explorer::weights::loading::{load_backbone, read_tensors, tensors_for};
use libfuzzer_sys::fuzz_target;

const CLASSES: usize = 3;
const ARCHS: [Arch; 8] = [
    Arch::Vgg16,
    Arch::Vgg19,
    Arch::ResNet18,
    Arch::ResNet50,
    Arch::MobileNetV3Large,
    Arch::EfficientNetLite0,
    Arch::EfficientNetLite1,
    Arch::EfficientNetLite2,
];

fn tiny_resnet() -> ResNetConfig {
    ResNetConfig {
        layers: [1, 1, 1, 1],
        widths: [2, 2, 2, 2],
        stem: 2,
        num_classes: CLASSES,
        ..ResNetConfig::resnet18()
    }
}

fn tiny_vgg() -> VggConfig {
    VggConfig {
        convs_per_block: [1; 5],
        widths: [2; 5],
        hidden: 4,
        num_classes: CLASSES,
        ..VggConfig::vgg16()
    }
}

/// Builds `arch`'s tiny network from `tensors` and runs it on a fixed 32x32 input.
fn tiny_forward(arch: Arch, tensors: &HashMap<String, Tensor>) {
    let Ok(tensors) = tensors_for(arch, tensors.clone(), &Device::Cpu) else {
        return;
    };
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let built: candle_core::Result<Box<dyn Backbone>> = match arch {
        Arch::Vgg16 => Vgg::new(vb, tiny_vgg()).map(|m| Box::new(m) as Box<dyn Backbone>),
        _ => ResNet::new(vb, tiny_resnet()).map(|m| Box::new(m) as Box<dyn Backbone>),
    };
    let model = match built {
        Ok(model) => model,
        Err(e) => {
            if common::verbose() {
                eprintln!("tiny {arch}: not built: {e}");
            }
            return;
        }
    };
    let input = Tensor::arange(0f32, (3 * 32 * 32) as f32, &Device::Cpu)
        .and_then(|t| t.affine(1.0 / 3072.0, -0.5))
        .and_then(|t| t.reshape((1, 3, 32, 32)))
        .expect("the fixed input");
    let logits = model.forward(&input).expect("a built network runs");
    assert_eq!(logits.dims(), &[1, CLASSES], "tiny {arch}: logits' shape");
    let values: Vec<f32> = logits
        .flatten_all()
        .and_then(|t| t.to_vec1())
        .expect("logits");
    if common::verbose() {
        eprintln!("tiny {arch}: logits {values:?}");
    }
    if common::check_finite() {
        assert!(
            values.iter().all(|v| v.is_finite()),
            "tiny {arch}: the weights loaded but the logits are {values:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let name = if data.starts_with(b"PK") || data.first() == Some(&0x80) {
        "weights.pth"
    } else {
        "weights.safetensors"
    };
    let path = common::scratch_file(name, data);

    // The real architectures, one per input: a full-size network never fits these inputs,
    // so this checks the refusal and its message.
    let arch = ARCHS[data.len() % ARCHS.len()];
    if let Err(e) = load_backbone(arch, &path, &Device::Cpu) {
        let message = e.to_string();
        assert!(
            message.contains(name),
            "{arch}: the error does not name the file: {message}"
        );
    }

    let tensors = match read_tensors(&path) {
        Ok(tensors) => tensors,
        Err(e) => {
            let message = e.to_string();
            if common::verbose() {
                eprintln!("refused: {message}");
            }
            assert!(
                message.contains(name),
                "the error does not name the file: {message}"
            );
            return;
        }
    };
    for (tensor_name, tensor) in &tensors {
        assert_eq!(tensor.dtype(), DType::F32, "{tensor_name} is not f32");
    }
    if common::verbose() {
        eprintln!("read {} tensors", tensors.len());
    }
    tiny_forward(Arch::ResNet18, &tensors);
    tiny_forward(Arch::Vgg16, &tensors);
});
