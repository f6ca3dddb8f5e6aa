//! Dreams and adversarial attacks with the real EfficientNet-Lite0: a dream reaches its class,
//! the TV weight smooths, cancel stops within a step, the targeted attack on the cat reaches
//! 90% confidence within 4/255 and still fools the network after a PNG round trip, a budget too
//! small says so with the probability it got to, and a huge photo is attacked at a bounded
//! working size.

mod common;

use std::cell::Cell;

use candle_core::Device;
use cnn_explorer::explain::attack::{attack, fgsm, AttackSettings};
use cnn_explorer::explain::dream::{dream, DreamSettings, DreamTarget};
use cnn_explorer::explain::gradients::total_variation;
use cnn_explorer::explain::pipeline::pixels_of;
use cnn_explorer::inference::{load_model, LoadedModel};
use cnn_explorer::labels::find_class;
use cnn_explorer::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};
use image::RgbImage;

fn model() -> LoadedModel {
    load_model(
        "efficientnet-lite0",
        Some(&common::efficientnet_weights()),
        &Device::Cpu,
    )
    .unwrap()
}

fn small_dream(class: usize) -> DreamSettings {
    let mut s = DreamSettings::new(DreamTarget::Class(class));
    s.size = 112;
    s
}

#[test]
fn a_dream_reaches_its_class_and_cancel_stops_within_a_step() {
    let model = model();
    let zebra = find_class("zebra").unwrap();
    let mut settings = small_dream(zebra);
    settings.steps = 300;
    let reached = Cell::new(None);
    let sure_for = Cell::new(0);
    let outcome = dream(
        &model,
        &settings,
        &|| settings.tv_weight,
        // Stop once the network has been sure for 10 steps in a row: the test needs the
        // first step, and a final image past the first lucky view (each step sees the image
        // through a random zoom and shift).
        &|| sure_for.get() >= 10,
        &mut |f| {
            assert_eq!((f.images[0].width(), f.images[0].height()), (112, 112));
            if f.probs[0] >= 0.9 {
                reached.set(reached.get().or(Some(f.step)));
                sure_for.set(sure_for.get() + 1);
            } else {
                sure_for.set(0);
            }
        },
    )
    .unwrap()
    .unwrap();
    let step = reached.get().expect("softmax >= 0.9 within 200 steps");
    assert!(step <= 200, "{step}");
    assert!(
        outcome.prob() >= 0.9,
        "the final 8-bit image is a zebra too: {}",
        outcome.prob()
    );

    // Cancel asked during step 3: no step 4.
    let seen = Cell::new(0);
    let outcome = dream(&model, &settings, &|| 1.0, &|| seen.get() >= 3, &mut |f| {
        seen.set(f.step)
    })
    .unwrap()
    .unwrap();
    assert_eq!((outcome.steps, seen.get()), (3, 3));
}

#[test]
fn a_larger_tv_weight_gives_a_smoother_dream() {
    let model = model();
    let tv_of = |weight: f32| {
        let mut settings = small_dream(find_class("goldfish").unwrap());
        settings.steps = 40;
        settings.tv_weight = weight;
        let outcome = dream(&model, &settings, &|| weight, &|| false, &mut |_| {})
            .unwrap()
            .unwrap();
        let pixels = (pixels_of(&outcome.images[0], &Device::Cpu).unwrap() / 255.0).unwrap();
        total_variation(&pixels)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let (rough, smooth) = (tv_of(0.0), tv_of(3.0));
    assert!(
        smooth < rough * 0.8,
        "TV {smooth} with weight 3 vs {rough} without"
    );
}

#[test]
fn the_targeted_attack_reaches_90_percent_within_4_of_255_even_after_saving() {
    let model = model();
    let cat = load_rgb(&common::cat_photo(), DEFAULT_MAX_PIXELS).unwrap();
    let target = find_class("golden retriever").unwrap();
    let settings = AttackSettings {
        target: Some(target),
        eps: 4.0,
        step: 1.0,
        max_steps: 40,
        confidence: 0.9,
    };
    let mut history = Vec::new();
    let outcome = attack(&model, &cat, &settings, &|| false, &mut |p| {
        history.push(*p)
    })
    .unwrap()
    .unwrap();
    assert!(
        outcome.reached && outcome.success,
        "90% not reached in {} steps: {:.3}",
        outcome.steps,
        outcome.last.target_prob
    );
    // Not the first flip of the top class: on until the target has 90%, then no further.
    assert!(outcome.last.target_prob >= 0.9, "{:?}", outcome.last);
    assert!(
        history[..history.len() - 1]
            .iter()
            .all(|p| p.target_prob < 0.9 || p.top_class != target),
        "went on past the confidence: {history:?}"
    );
    assert_eq!(outcome.source, find_class("Egyptian cat").unwrap());
    assert!(outcome.linf <= 4, "L-inf {}", outcome.linf);
    assert_eq!(outcome.adversarial.dimensions(), cat.dimensions());
    assert_eq!(history.len(), outcome.steps);
    assert!(outcome.psnr_db > 35.0, "PSNR {}", outcome.psnr_db);

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("adversarial.png");
    outcome.adversarial.save(&saved).unwrap();
    let reloaded = load_rgb(&saved, DEFAULT_MAX_PIXELS).unwrap();
    let top = model.predict(&[&reloaded], 1).unwrap().remove(0).remove(0);
    assert_eq!(top.index, target, "the PNG still fools it: {}", top.label);
    assert!(top.prob >= 0.9, "and as surely: {}", top.prob);

    // Two steps are not enough for 99%: the outcome says so, with where the target got to.
    let short = AttackSettings {
        max_steps: 2,
        confidence: 0.99,
        ..settings
    };
    let outcome = attack(&model, &cat, &short, &|| false, &mut |_| {})
        .unwrap()
        .unwrap();
    assert!(!outcome.reached, "{:?}", outcome.last);
    assert_eq!(outcome.steps, 2);
    assert!((0.0..0.99).contains(&outcome.last.target_prob));
    assert_eq!(outcome.confidence, 0.99);

    // One FGSM step of 8/255 moves the photo off its class.
    let fooled = fgsm(&model, &cat, 8.0).unwrap();
    assert_eq!(fooled.steps, 1);
    assert!(fooled.linf <= 8);
    assert!(fooled.success, "top is still {}", fooled.last.top_class);
}

/// A 100 MP photo used to need 9 GB: the attack now runs on a copy at most 512 px on its
/// shorter side (for a 224-px model), and its PNG has that size.
#[test]
fn a_huge_photo_is_attacked_at_a_bounded_working_size() {
    let model = model();
    let cat = load_rgb(&common::cat_photo(), DEFAULT_MAX_PIXELS).unwrap();
    // The cat, 10x larger each way (4510x3000, 13.5 MP).
    let big: RgbImage = image::imageops::resize(
        &cat,
        cat.width() * 10,
        cat.height() * 10,
        image::imageops::FilterType::Nearest,
    );
    let settings = AttackSettings {
        target: find_class("golden retriever"),
        max_steps: 1,
        ..AttackSettings::default()
    };
    let outcome = attack(&model, &big, &settings, &|| false, &mut |_| {})
        .unwrap()
        .unwrap();
    assert_eq!(outcome.adversarial.dimensions(), (770, 512));
    assert_eq!(outcome.original.dimensions(), (770, 512));
    assert_eq!(outcome.source, find_class("Egyptian cat").unwrap());
    assert!(outcome.linf <= 4);
}
