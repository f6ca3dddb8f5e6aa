//! The exported ONNX graphs read back and evaluated by `candle-onnx`, for every architecture
//! (the fixtures' tiny VGG-16, ResNet-18/50 and MobileNetV3 with random weights, and the real
//! EfficientNet-Lite0 with a fine-tuned block and an MLP head): the graph's logits equal ours
//! to 1e-4. Needs `--features onnx-check` (candle-onnx's build wants `protoc`); .ci/run runs it.
#![cfg(feature = "onnx-check")]

mod common;

use std::collections::HashMap;

use candle_core::Device;
use cnn_explorer::export::classifier_steps;
use cnn_explorer::export::onnx::{to_onnx, OnnxModel};
use cnn_explorer::inference::load_model;
use cnn_explorer::model::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use cnn_explorer::model::resnet::ResNetConfig;
use cnn_explorer::model::{Arch, Backbone};
use cnn_explorer::train::head::{Head, HeadKind};

use common::heads::{fine_tune, ours, randn};
use common::relative_error;
use common::tiny::{fixture_vb, tiny_config, tiny_resnet, tiny_vgg};

const CLASSES: usize = 4;

/// A head of `kind` on `dim`-wide features with random weights.
fn head(kind: HeadKind, dim: usize) -> Head {
    let mut weights = HashMap::new();
    match kind {
        HeadKind::Linear => {
            weights.insert("fc.weight".into(), randn(&[CLASSES, dim], 0.1));
            weights.insert("fc.bias".into(), randn(&[CLASSES], 0.1));
        }
        HeadKind::Mlp { hidden, .. } => {
            weights.insert("fc1.weight".into(), randn(&[hidden, dim], 0.1));
            weights.insert("fc1.bias".into(), randn(&[hidden], 0.1));
            weights.insert("fc2.weight".into(), randn(&[CLASSES, hidden], 0.3));
            weights.insert("fc2.bias".into(), randn(&[CLASSES], 0.1));
        }
    }
    Head {
        kind,
        dim,
        classes: (0..CLASSES).map(|i| format!("class{i}")).collect(),
        weights,
        metrics: Vec::new(),
        best_epoch: 0,
        block: None,
    }
}

/// Exports, reads the bytes back with candle-onnx, evaluates, compares.
fn check(name: &str, backbone: &dyn Backbone, head: &Head, size: usize) {
    let x = randn(&[2, 3, size, size], 1.0);
    let steps = classifier_steps(backbone, head).unwrap();
    let model = OnnxModel {
        steps: &steps,
        size,
        metadata: vec![("model".into(), name.into())],
        name: name.into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, to_onnx(&model).unwrap()).unwrap();
    let proto = candle_onnx::read_file(&path).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name, "input");
    assert_eq!(graph.output[0].name, "logits");
    let inputs = HashMap::from([("input".to_string(), x.clone())]);
    let mut outputs = candle_onnx::simple_eval(&proto, inputs).unwrap();
    let got = outputs.remove("logits").unwrap();
    let want = ours(backbone, head, &x);
    let err = relative_error(&got, &want);
    assert!(err < 1e-4, "{name}: candle-onnx differs from ours by {err}");
}

#[test]
fn tiny_vgg_resnets_and_mobilenet_read_back() {
    let mlp = HeadKind::Mlp {
        hidden: 8,
        dropout: 0.5,
    };
    let vgg = tiny_vgg(tiny_config(Arch::Vgg16), "vgg16_tiny_tv.safetensors");
    check(
        "vgg16",
        &vgg,
        &head(HeadKind::Linear, vgg.embedding_dim()),
        64,
    );
    let mut tuned = head(mlp, vgg.embedding_dim());
    fine_tune(&vgg, &mut tuned, &randn(&[1, 3, 64, 64], 1.0), 0.01);
    check("vgg16 fine-tuned", &vgg, &tuned, 64);
    for (config, file) in [
        (ResNetConfig::resnet18(), "resnet18_tiny.safetensors"),
        (ResNetConfig::resnet50(), "resnet50_tiny.safetensors"),
    ] {
        let resnet = tiny_resnet(config, file);
        check(
            file,
            &resnet,
            &head(HeadKind::Linear, resnet.embedding_dim()),
            64,
        );
    }
    let resnet = tiny_resnet(ResNetConfig::resnet18(), "resnet18_tiny.safetensors");
    let mut tuned = head(HeadKind::Linear, resnet.embedding_dim());
    fine_tune(&resnet, &mut tuned, &randn(&[1, 3, 64, 64], 1.0), 0.01);
    check("resnet18 fine-tuned", &resnet, &tuned, 64);
    let config = MobileNetV3Config {
        multiplier: 0.35,
        num_classes: 10,
        ..MobileNetV3Config::large_100()
    };
    let mobilenet = MobileNetV3::new(fixture_vb("mobilenetv3_tiny.safetensors"), config).unwrap();
    check(
        "mobilenetv3",
        &mobilenet,
        &head(mlp, mobilenet.embedding_dim()),
        64,
    );
}

#[test]
fn real_efficientnet_lite0_with_a_fine_tuned_block_reads_back() {
    let weights = common::efficientnet_weights();
    let model = load_model("efficientnet-lite0", Some(&weights), &Device::Cpu).unwrap();
    let backbone = model.backbone.as_ref();
    let mlp = HeadKind::Mlp {
        hidden: 16,
        dropout: 0.2,
    };
    let mut tuned = head(mlp, backbone.embedding_dim());
    fine_tune(backbone, &mut tuned, &randn(&[1, 3, 224, 224], 1.0), 0.01);
    check("efficientnet-lite0 fine-tuned", backbone, &tuned, 224);
}
