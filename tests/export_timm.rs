//! The safetensors export with timm's names for the architectures whose checkpoints already
//! use them (the fixtures' tiny ResNet-18/50 and MobileNetV3, saved from timm's own modules
//! by tests/fixtures/make_fixtures.py, and the tiny VGG-16's torchvision `features.N`, which
//! are timm's too): the file holds exactly timm's keys and shapes for the backbone plus the
//! head as timm's classifier, so `load_state_dict(strict=True)` takes it; and read back by our
//! own loader as a checkpoint (the batch norms now identities around the folded biases) it
//! gives the classifier's logits again, with and without a fine-tuned block.

mod common;

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use cnn_explorer::export::{export, ExportRequest};
use cnn_explorer::model::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use cnn_explorer::model::resnet::{ResNet, ResNetConfig};
use cnn_explorer::model::{Arch, Backbone};
use cnn_explorer::train::head::{Head, HeadKind};
use cnn_explorer::vision::preprocess::Preprocess;
use cnn_explorer::weights::loading::read_tensors;

use common::heads::{fine_tune, ours, randn};
use common::tiny::{fixture_vb, tiny_config, tiny_resnet, tiny_vgg};
use common::{fixture, relative_error};

const CLASSES: usize = 3;

fn linear_head(dim: usize) -> Head {
    let weights = HashMap::from([
        ("fc.weight".to_string(), randn(&[CLASSES, dim], 0.2)),
        ("fc.bias".to_string(), randn(&[CLASSES], 0.1)),
    ]);
    Head {
        kind: HeadKind::Linear,
        dim,
        classes: (0..CLASSES).map(|i| format!("class{i}")).collect(),
        weights,
        metrics: Vec::new(),
        best_epoch: 0,
        block: None,
    }
}

/// What an export wrote.
struct Exported {
    /// Every tensor's name and shape, as stored (the batch norms' integer counters too).
    keys: BTreeMap<String, Vec<usize>>,
    /// The floating-point tensors.
    tensors: BTreeMap<String, Tensor>,
    timm_model: String,
    setup: Vec<String>,
}

/// Exports to safetensors and reads the file back.
fn exported(backbone: &dyn Backbone, head: &Head) -> Exported {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    let report = export(
        &ExportRequest {
            backbone,
            model_name: "tiny",
            head,
            preprocess: &Preprocess::imagenet(64),
            inputs: &[],
        },
        &out,
    )
    .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let keys = file
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec()))
        .collect();
    Exported {
        keys,
        tensors: read_tensors(&out).unwrap().into_iter().collect(),
        timm_model: report.timm_model.unwrap(),
        setup: report.timm_setup,
    }
}

/// What timm's `state_dict()` holds for the fixture's model with `classifier` sized to our
/// head (`num_classes=3`): the fixture's keys and shapes (saved without
/// `num_batches_tracked`, which every batch norm has), the classifier resized.
fn timm_keys(file: &str, classifier: &str, dim: usize) -> BTreeMap<String, Vec<usize>> {
    let fixture: BTreeMap<String, Tensor> =
        read_tensors(&fixture(file)).unwrap().into_iter().collect();
    let mut want = BTreeMap::new();
    for (k, v) in &fixture {
        if k.starts_with(&format!("{classifier}.")) {
            continue;
        }
        if let Some(bn) = k.strip_suffix(".running_mean") {
            want.insert(format!("{bn}.num_batches_tracked"), vec![]);
        }
        want.insert(k.clone(), v.dims().to_vec());
    }
    want.insert(format!("{classifier}.weight"), vec![CLASSES, dim]);
    want.insert(format!("{classifier}.bias"), vec![CLASSES]);
    want
}

fn checkpoint(tensors: BTreeMap<String, Tensor>) -> VarBuilder<'static> {
    VarBuilder::from_tensors(tensors.into_iter().collect(), DType::F32, &Device::Cpu)
}

#[test]
fn resnets_export_timms_state_dict_and_it_reloads_to_the_same_logits() {
    let x = randn(&[2, 3, 64, 64], 1.0);
    for (base, file, model) in [
        (
            ResNetConfig::resnet18(),
            "resnet18_tiny.safetensors",
            "resnet18",
        ),
        (
            ResNetConfig::resnet50(),
            "resnet50_tiny.safetensors",
            "resnet50",
        ),
    ] {
        let resnet = tiny_resnet(base.clone(), file);
        let dim = resnet.embedding_dim();
        let mut heads = vec![linear_head(dim)];
        if resnet.last_block().is_some() {
            let mut tuned = linear_head(dim);
            fine_tune(&resnet, &mut tuned, &x, 0.05);
            heads.push(tuned);
        }
        for head in &heads {
            let e = exported(&resnet, head);
            assert_eq!(e.timm_model, model);
            assert!(
                e.setup.is_empty(),
                "a linear head is timm's own fc: {:?}",
                e.setup
            );
            assert_eq!(e.keys, timm_keys(file, "fc", dim), "{file}");
            // Our loader reads timm's names: the file is a ResNet with 3 classes.
            let config = ResNetConfig {
                widths: [8, 16, 24, 32],
                num_classes: CLASSES,
                ..base.clone()
            };
            let again = ResNet::new(checkpoint(e.tensors), config).unwrap();
            let err = relative_error(&again.forward(&x).unwrap(), &ours(&resnet, head, &x));
            assert!(
                err < 1e-5,
                "{file} (fine-tuned: {}): {err}",
                head.block.is_some()
            );
        }
    }
}

#[test]
fn mobilenet_exports_timms_state_dict_and_it_reloads_to_the_same_logits() {
    let x = randn(&[2, 3, 64, 64], 1.0);
    let config = MobileNetV3Config {
        multiplier: 0.35,
        num_classes: 10,
        ..MobileNetV3Config::large_100()
    };
    let file = "mobilenetv3_tiny.safetensors";
    let mobilenet = MobileNetV3::new(fixture_vb(file), config.clone()).unwrap();
    let dim = mobilenet.embedding_dim();
    let head = linear_head(dim);
    let e = exported(&mobilenet, &head);
    assert_eq!(e.timm_model, "mobilenetv3_large_100");
    assert!(e.setup.is_empty());
    // Squeeze-excite and conv_head included, as 1x1 convolutions with their biases.
    assert_eq!(e.keys, timm_keys(file, "classifier", dim));
    let again = MobileNetV3::new(
        checkpoint(e.tensors),
        MobileNetV3Config {
            num_classes: CLASSES,
            ..config
        },
    )
    .unwrap();
    let err = relative_error(&again.forward(&x).unwrap(), &ours(&mobilenet, &head, &x));
    assert!(err < 1e-5, "mobilenet: {err}");
}

#[test]
fn vgg_exports_timms_features_and_a_head_on_the_pooled_features() {
    let x = randn(&[1, 3, 64, 64], 1.0);
    let file = "vgg16_tiny_timm.safetensors";
    let vgg = tiny_vgg(tiny_config(Arch::Vgg16), file);
    let dim = vgg.embedding_dim();
    let mut head = linear_head(dim);
    fine_tune(&vgg, &mut head, &x, 0.05);
    let e = exported(&vgg, &head);
    let tensors = &e.tensors;
    assert_eq!(e.timm_model, "vgg16");
    // timm's VGG runs fc6/fc7 (`pre_logits`) before its head; ours sits on pool5's mean.
    assert_eq!(
        e.setup,
        [
            "model.pre_logits = torch.nn.Identity()".to_string(),
            format!("model.head.fc = torch.nn.Linear({dim}, {CLASSES})"),
        ]
    );
    let mut want = timm_keys(file, "head.fc", dim);
    want.retain(|k, _| !k.starts_with("pre_logits."));
    assert_eq!(e.keys, want);
    // The fine-tuned block's convolutions are the exported ones; the rest are the fixture's.
    let fixture: HashMap<String, Tensor> = read_tensors(&fixture(file)).unwrap();
    let block = head.block.as_ref().unwrap();
    let tuned = block.convs.len();
    let convs: Vec<&String> = tensors
        .keys()
        .filter(|k| k.starts_with("features.") && k.ends_with(".weight"))
        .collect();
    let mut by_index: Vec<(usize, &String)> = convs
        .iter()
        .map(|k| (k.split('.').nth(1).unwrap().parse().unwrap(), *k))
        .collect();
    by_index.sort();
    for (i, (_, name)) in by_index.iter().enumerate() {
        let got = &tensors[*name];
        let want = if i + tuned >= by_index.len() {
            head.weights[&format!("block.{}.weight", i + tuned - by_index.len())].clone()
        } else {
            fixture[*name].clone()
        };
        assert_eq!(relative_error(got, &want), 0.0, "{name}");
    }
    assert_eq!(
        relative_error(&tensors["head.fc.weight"], &head.weights["fc.weight"]),
        0.0
    );
}
