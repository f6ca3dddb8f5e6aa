//! The reduced-width, random-weight networks of tests/fixtures/make_fixtures.py, built from
//! their fixture weights.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use cnn_explorer::model::resnet::{ResNet, ResNetConfig};
use cnn_explorer::model::vgg::{Vgg, VggConfig};
use cnn_explorer::model::Arch;
use cnn_explorer::weights::loading::{read_tensors, tensors_for};

use super::fixture;

/// The tiny VGG of `config` from fixture `weights` (either naming, or a `.pth`).
pub fn tiny_vgg(config: VggConfig, weights: &str) -> Vgg {
    let tensors = tensors_for(
        config.arch,
        read_tensors(&fixture(weights)).unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Vgg::new(vb, config).unwrap()
}

/// The fixtures' VGG-16 or VGG-19 widths: 8 to 32 channels, 64 hidden, 10 classes.
pub fn tiny_config(arch: Arch) -> VggConfig {
    let base = if arch == Arch::Vgg19 {
        VggConfig::vgg19()
    } else {
        VggConfig::vgg16()
    };
    VggConfig {
        widths: [8, 16, 24, 32, 32],
        hidden: 64,
        num_classes: 10,
        ..base
    }
}

/// The parameters of a fixture weights file, ready for a module's `VarBuilder`.
pub fn fixture_vb(weights: &str) -> VarBuilder<'static> {
    let tensors = read_tensors(&fixture(weights)).unwrap();
    VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)
}

/// The tiny ResNet of `base` (widths 8 to 32, 10 classes) from fixture `weights`.
pub fn tiny_resnet(base: ResNetConfig, weights: &str) -> ResNet {
    let config = ResNetConfig {
        widths: [8, 16, 24, 32],
        num_classes: 10,
        ..base
    };
    ResNet::new(fixture_vb(weights), config).unwrap()
}
