//! Every model agrees with its PyTorch reference (same weights, same input) to a relative
//! error below 1e-4 in f32, tap by tap; the preprocessing agrees with torchvision's. The
//! fixtures come from tests/fixtures/make_fixtures.py.

mod common;

use candle_core::{Device, Tensor};
use cnn_explorer::model::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use cnn_explorer::model::resnet::ResNetConfig;
use cnn_explorer::model::{reference, Arch, Backbone};
use cnn_explorer::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};
use cnn_explorer::vision::preprocess::{Preprocess, ResizeFilter, ResizeMode};
use cnn_explorer::weights::loading::load_backbone;
use common::tiny::{fixture_vb, tiny_config, tiny_resnet, tiny_vgg};
use common::{fixture, load_fixture, relative_error};

const TOLERANCE: f32 = 1e-4;

fn check_every_tap(model: &dyn Backbone, io: &std::collections::HashMap<String, Tensor>) {
    let taps = model.forward_taps(&io["input"]).unwrap();
    let expected_names: Vec<&str> = taps.iter().map(|t| t.name.as_str()).collect();
    let fixture_taps = io.len() - 4; // input, input224, logits224, grad_logit3
    assert_eq!(taps.len(), fixture_taps, "taps: {expected_names:?}");
    for tap in &taps {
        let want = io
            .get(&tap.name)
            .unwrap_or_else(|| panic!("fixture has no tap {}", tap.name));
        let err = relative_error(&tap.tensor, want);
        assert!(err < TOLERANCE, "{}: relative error {err}", tap.name);
        // The fast one-op program (dreams, attacks, predictions) stops at the same tap.
        let fast = model.forward_until(&io["input"], Some(&tap.name)).unwrap();
        let err = relative_error(&fast, want);
        assert!(
            err < TOLERANCE,
            "{} (program): relative error {err}",
            tap.name
        );
    }
    // The device-generic path (candle's own ops: CUDA, Metal) matches the fixtures too.
    let network = model.network();
    let mut reference_taps = 0;
    reference::forward(
        network,
        &io["input"],
        network.steps().len() - 1,
        &mut |name, _, t| {
            let err = relative_error(t, &io[name]);
            assert!(err < TOLERANCE, "{name} (candle ops): relative error {err}");
            reference_taps += 1;
        },
    )
    .unwrap();
    assert_eq!(reference_taps, taps.len());
    // At 224 the adaptive pool is the identity, at 64 it replicates 2x2 to 7x7: both match.
    let logits = model.forward(&io["input224"]).unwrap();
    let err = relative_error(&logits, &io["logits224"]);
    assert!(err < TOLERANCE, "logits at 224: relative error {err}");
}

#[test]
fn vgg16_matches_pytorch_at_every_tap_with_torchvision_names() {
    let io = load_fixture("vgg16_tiny_io.safetensors");
    let model = tiny_vgg(tiny_config(Arch::Vgg16), "vgg16_tiny_tv.safetensors");
    check_every_tap(&model, &io);
}

#[test]
fn vgg16_loads_timm_names_to_the_same_numbers() {
    let io = load_fixture("vgg16_tiny_io.safetensors");
    let model = tiny_vgg(tiny_config(Arch::Vgg16), "vgg16_tiny_timm.safetensors");
    check_every_tap(&model, &io);
}

#[test]
fn vgg16_loads_a_torchvision_pth_to_the_same_numbers() {
    let io = load_fixture("vgg16_tiny_io.safetensors");
    let model = tiny_vgg(tiny_config(Arch::Vgg16), "vgg16_tiny_tv.pth");
    check_every_tap(&model, &io);
}

#[test]
fn cmyk_jpeg_colours_are_not_inverted() {
    // make_fixtures.py saved the cat, resized by PIL to 90x60, as a CMYK JPEG (quality 95).
    let cmyk = load_rgb(&fixture("images/cmyk.jpg"), DEFAULT_MAX_PIXELS).unwrap();
    let cat = load_rgb(&common::cat_photo(), DEFAULT_MAX_PIXELS).unwrap();
    let rgb = cnn_explorer::vision::preprocess::resize_bilinear_pil(&cat, 90, 60);
    assert_eq!(cmyk.dimensions(), rgb.dimensions());
    let diff: f64 = cmyk
        .as_raw()
        .iter()
        .zip(rgb.as_raw())
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / rgb.as_raw().len() as f64;
    assert!(
        diff < 8.0,
        "mean difference {diff} per channel: colours converted wrongly"
    );
}

#[test]
fn exif_orientation_is_applied() {
    // A 30x20 JPEG whose EXIF orientation 6 says "rotate 90 degrees clockwise".
    let img = load_rgb(&fixture("images/exif_orientation6.jpg"), DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!(img.dimensions(), (20, 30));
}

#[test]
fn vgg19_matches_pytorch_at_every_tap() {
    let io = load_fixture("vgg19_tiny_io.safetensors");
    let model = tiny_vgg(tiny_config(Arch::Vgg19), "vgg19_tiny_tv.safetensors");
    check_every_tap(&model, &io);
}

/// The input gradient of logit 3 of the fixture's first image agrees with PyTorch's, through
/// the fast program and through candle's own ops.
fn check_input_gradient(model: &dyn Backbone, io: &std::collections::HashMap<String, Tensor>) {
    let network = model.network();
    let last = network.steps().len() - 1;
    type Forward<'a> = &'a dyn Fn(&Tensor) -> Tensor;
    let paths: [(&str, Forward); 2] = [
        ("program", &|x| model.forward(x).unwrap()),
        ("candle ops", &|x| {
            reference::forward(network, x, last, &mut |_, _, _| {}).unwrap()
        }),
    ];
    for (path, forward) in paths {
        let x = candle_core::Var::from_tensor(&io["input"].narrow(0, 0, 1).unwrap()).unwrap();
        let logits = forward(x.as_tensor());
        let grads = logits
            .narrow(1, 3, 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grad = grads
            .get(x.as_tensor())
            .expect("gradient reaches the input");
        let err = relative_error(grad, &io["grad_logit3"]);
        assert!(
            err < TOLERANCE,
            "input gradient ({path}): relative error {err}"
        );
    }
}

#[test]
fn vgg_input_gradient_matches_pytorch() {
    let io = load_fixture("vgg16_tiny_io.safetensors");
    let model = tiny_vgg(tiny_config(Arch::Vgg16), "vgg16_tiny_tv.safetensors");
    check_input_gradient(&model, &io);
}

#[test]
fn resnet18_matches_pytorch_at_every_tap_and_in_its_input_gradient() {
    let io = load_fixture("resnet18_tiny_io.safetensors");
    let model = tiny_resnet(ResNetConfig::resnet18(), "resnet18_tiny.safetensors");
    check_every_tap(&model, &io);
    // Through the 3x3/2 max-pool's backward (candle has none), residuals and downsampling.
    check_input_gradient(&model, &io);
    let names: Vec<String> = model
        .forward_taps(&io["input"])
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(&names[..3], &["stem", "pool", "layer1.0"]);
    assert_eq!(&names[names.len() - 2..], &["layer4.1", "logits"]);
}

#[test]
fn resnet_loads_a_torchvision_pth_to_the_same_numbers() {
    let io = load_fixture("resnet18_tiny_io.safetensors");
    let model = tiny_resnet(ResNetConfig::resnet18(), "resnet18_tiny_tv.pth");
    let err = relative_error(&model.forward(&io["input"]).unwrap(), &io["logits"]);
    assert!(err < TOLERANCE, "logits: relative error {err}");
}

#[test]
fn resnet50_matches_pytorch_at_every_tap_and_in_its_input_gradient() {
    let io = load_fixture("resnet50_tiny_io.safetensors");
    let model = tiny_resnet(ResNetConfig::resnet50(), "resnet50_tiny.safetensors");
    check_every_tap(&model, &io);
    check_input_gradient(&model, &io);
    assert_eq!(model.embedding_dim(), 32 * 4);
}

#[test]
fn mobilenet_v3_matches_pytorch_at_every_tap_and_in_its_input_gradient() {
    let io = load_fixture("mobilenetv3_tiny_io.safetensors");
    let config = MobileNetV3Config {
        multiplier: 0.35,
        num_classes: 10,
        ..MobileNetV3Config::large_100()
    };
    let model = MobileNetV3::new(fixture_vb("mobilenetv3_tiny.safetensors"), config).unwrap();
    // Squeeze-excite, hard-swish, residuals; the pre-logits are timm's `pre_logits=True`.
    check_every_tap(&model, &io);
    check_input_gradient(&model, &io);
    let embedding = model.embed(&io["input"]).unwrap();
    assert!(relative_error(&embedding, &io["pre_logits"]) < TOLERANCE);
}

#[test]
fn efficientnet_lite0_real_weights_match_pytorch_on_the_cat() {
    let io = load_fixture("efficientnet_lite0_cat.safetensors");
    let weights = common::efficientnet_weights();
    let model = load_backbone(Arch::EfficientNetLite0, &weights, &Device::Cpu).unwrap();
    let taps = model.forward_taps(&io["input"]).unwrap();
    assert_eq!(taps.len(), io.len() - 1, "every tap of the fixture");
    for tap in &taps {
        let err = relative_error(&tap.tensor, &io[&tap.name]);
        assert!(err < TOLERANCE, "{}: relative error {err}", tap.name);
        let fast = model.forward_until(&io["input"], Some(&tap.name)).unwrap();
        let err = relative_error(&fast, &io[&tap.name]);
        assert!(
            err < TOLERANCE,
            "{} (program): relative error {err}",
            tap.name
        );
    }
    let names: Vec<&str> = taps.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[0], "stem");
    assert_eq!(names[16], "block15");
    assert_eq!(&names[17..], &["head", "logits"]);
}

/// A real EfficientNet-Lite1 or -Lite2 against its fixture (tests/fixtures/make_fixtures.py,
/// `efficientnet-lite12`): the catalogue's preprocessing at the native size against
/// torchvision's, then every tap (8 channels of each, the logits and pooled head whole) through
/// the fast CPU program (whole pass, and stopped at the tap) and through candle's own ops.
fn check_real_lite_on_the_cat(name: &str, fixture_name: &str, side: usize, blocks: usize) {
    let io = load_fixture(fixture_name);
    let spec = cnn_explorer::weights::find_model(name).unwrap();
    assert_eq!(spec.preprocess.size as usize, side, "native size");
    let cat = load_rgb(&common::cat_photo(), DEFAULT_MAX_PIXELS).unwrap();
    let ours = Tensor::from_vec(
        spec.preprocess.to_chw(&cat),
        (1, 3, side, side),
        &Device::Cpu,
    )
    .unwrap();
    let err = relative_error(&ours, &io["input"]);
    assert!(err < 1e-6, "{name} preprocessing: relative error {err}");

    let model = load_backbone(spec.arch, &common::real_weights(name), &Device::Cpu).unwrap();
    assert_eq!(model.arch(), spec.arch);
    let slice = |tap: &str, t: &Tensor| match io.get(&format!("{tap}.channels")) {
        Some(channels) => t.index_select(channels, 1).unwrap(),
        None => t.clone(),
    };
    let input = &io["input"];
    let taps = model.forward_taps(input).unwrap();
    let names: Vec<&str> = taps.iter().map(|t| t.name.as_str()).collect();
    // stem, blocks, head, logits.
    assert_eq!(taps.len(), blocks + 3, "{names:?}");
    assert_eq!(names[0], "stem");
    assert_eq!(names[blocks], format!("block{}", blocks - 1));
    assert_eq!(&names[blocks + 1..], &["head", "logits"]);
    for tap in &taps {
        let want = io
            .get(&tap.name)
            .unwrap_or_else(|| panic!("fixture has no tap {}", tap.name));
        let err = relative_error(&slice(&tap.name, &tap.tensor), want);
        assert!(err < TOLERANCE, "{name} {}: relative error {err}", tap.name);
        let fast = model.forward_until(input, Some(&tap.name)).unwrap();
        let err = relative_error(&slice(&tap.name, &fast), want);
        assert!(
            err < TOLERANCE,
            "{name} {} (program): relative error {err}",
            tap.name
        );
    }
    // The device-generic path (candle's own ops: CUDA, Metal) matches the fixture too.
    let network = model.network();
    let mut reference_taps = 0;
    reference::forward(
        network,
        input,
        network.steps().len() - 1,
        &mut |tap, _, t| {
            let err = relative_error(&slice(tap, t), &io[tap]);
            assert!(
                err < TOLERANCE,
                "{name} {tap} (candle ops): relative error {err}"
            );
            reference_taps += 1;
        },
    )
    .unwrap();
    assert_eq!(reference_taps, taps.len());
    let err = relative_error(&model.embed(input).unwrap(), &io["embedding"]);
    assert!(err < TOLERANCE, "{name} embedding: relative error {err}");
    assert_eq!(model.embedding_dim(), 1280);
}

#[test]
fn efficientnet_lite1_real_weights_match_pytorch_on_the_cat() {
    check_real_lite_on_the_cat(
        "efficientnet-lite1",
        "efficientnet_lite1_cat.safetensors",
        240,
        21,
    );
}

#[test]
fn efficientnet_lite2_real_weights_match_pytorch_on_the_cat() {
    check_real_lite_on_the_cat(
        "efficientnet-lite2",
        "efficientnet_lite2_cat.safetensors",
        260,
        21,
    );
}

#[test]
fn preprocessing_matches_torchvision() {
    let want = load_fixture("preprocess.safetensors");
    let images = [
        ("chelsea", common::cat_photo()),
        ("noise_97x61", fixture("images/noise_97x61.png")),
        ("noise_131x283", fixture("images/noise_131x283.png")),
    ];
    for (name, path) in images {
        let img = load_rgb(&path, DEFAULT_MAX_PIXELS).unwrap();
        for (mode, suffix) in [
            (ResizeMode::CenterCrop, "crop"),
            (ResizeMode::Whole, "whole"),
        ] {
            let pre = Preprocess {
                mode,
                ..Preprocess::default()
            };
            let ours = Tensor::from_vec(pre.to_chw(&img), (3, 224, 224), &Device::Cpu).unwrap();
            let key = format!("{name}_{suffix}");
            let err = relative_error(&ours, &want[&key]);
            // Bit-exact pixels give identical floats; allow only float-formatting noise.
            assert!(err < 1e-6, "{key}: relative error {err}");
        }
        // timm's transform for MobileNetV3 (the catalogue's): PIL bicubic, crop 224 of 256.
        let pre = cnn_explorer::weights::find_model("mobilenetv3_large_100")
            .unwrap()
            .preprocess;
        assert_eq!(pre.filter, ResizeFilter::Bicubic);
        let ours = Tensor::from_vec(pre.to_chw(&img), (3, 224, 224), &Device::Cpu).unwrap();
        let key = format!("{name}_crop_bicubic");
        let err = relative_error(&ours, &want[&key]);
        assert!(err < 1e-6, "{key}: relative error {err}");
    }
}
