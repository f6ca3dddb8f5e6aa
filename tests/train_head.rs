//! Train head with the real EfficientNet-Lite0 on a generated dataset (shapes and colours in
//! class folders, plus broken files): accuracy, skipped files counted, the feature cache hit on
//! a second run, cancel, and a saved head that loads and predicts the same.

mod common;

use candle_core::Device;
use cnn_explorer::inference::load_model;
use cnn_explorer::train::head::Head;
use cnn_explorer::train::head::SavedPreprocess;
use cnn_explorer::train::pipeline::{classify_with_head, train_on_folder, TrainConfig};
use cnn_explorer::train::{Silent, TrainObserver};
use cnn_explorer::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};
use cnn_explorer::Error;

const PER_CLASS: usize = 40;

/// Asks to stop before anything is computed.
struct CancelAtOnce;

impl TrainObserver for CancelAtOnce {
    fn is_cancelled(&self) -> bool {
        true
    }
}

#[test]
fn head_trains_caches_cancels_and_round_trips() {
    let model = load_model(
        "efficientnet-lite0",
        Some(&common::efficientnet_weights()),
        &Device::Cpu,
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    common::shapes::make_dataset(
        data.path(),
        &[("disc", 0), ("square", 1), ("stripes", 2)],
        PER_CLASS,
    );
    let mut config = TrainConfig::default();
    config.features.cache_dir = Some(cache.path().to_path_buf());
    config.val_fraction = 0.25;
    config.head.epochs = 15;
    config.head.lr = 3e-3;
    config.head.batch_size = 16;

    let first = train_on_folder(&model, data.path(), &config, &mut Silent).unwrap();
    assert_eq!(first.dataset.classes, ["disc", "square", "stripes"]);
    assert_eq!(
        first.dataset.skipped.len(),
        1,
        "{:?}",
        first.dataset.skipped
    );
    assert_eq!(first.failed.len(), 2, "{:?}", first.failed);
    assert_eq!(first.features_computed, 3 * PER_CLASS + 2);
    assert_eq!(first.split.val.len(), 3 * PER_CLASS / 4);
    assert!(
        first.val_accuracy >= 0.95,
        "validation accuracy {} ({:?})",
        first.val_accuracy,
        first.head.metrics
    );
    assert_eq!(
        first.map.len(),
        first.split.train.len() + first.split.val.len()
    );
    let diagonal: usize = (0..3).map(|i| first.confusion[i][i]).sum();
    assert_eq!(diagonal + first.mistakes().count(), first.split.val.len());
    // Every validation photo's prediction is the head's on that photo, read again from disk:
    // what the confusion cells and the top losses are made of.
    assert_eq!(first.predictions.len(), first.split.val.len());
    for (p, &i) in first.predictions.iter().zip(&first.split.val) {
        assert_eq!(p.path, first.dataset.items[i].path);
        assert_eq!(p.truth, first.dataset.items[i].class);
        let photo = load_rgb(&p.path, DEFAULT_MAX_PIXELS).unwrap();
        let again = &classify_with_head(&model, &first.head, &[&photo]).unwrap()[0];
        for (a, b) in p.probabilities.iter().zip(again) {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1e-3),
                "{}: {a} vs {b}",
                p.path.display()
            );
        }
        let top = (0..again.len())
            .max_by(|&a, &b| again[a].total_cmp(&again[b]))
            .unwrap();
        assert_eq!(p.predicted, top, "{}", p.path.display());
    }

    // Second run: every decodable photo's features come from the cache.
    let second = train_on_folder(&model, data.path(), &config, &mut Silent).unwrap();
    assert_eq!(second.features_from_cache, 3 * PER_CLASS);
    assert_eq!(
        second.features_computed, 2,
        "only the broken files are tried again"
    );
    assert_eq!(
        second.val_accuracy, first.val_accuracy,
        "same seed, same head"
    );

    // Cancel.
    let mut no_cache = config.clone();
    no_cache.features.cache_dir = None;
    let err = train_on_folder(&model, data.path(), &no_cache, &mut CancelAtOnce).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");

    // Save, load, predict the same.
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("shapes.safetensors");
    first
        .head
        .save(&path, "efficientnet-lite0", &model.preprocess)
        .unwrap();
    let (loaded, info) = Head::load(&path).unwrap();
    assert_eq!(info.classes, first.head.classes);
    assert_eq!(info.preprocess, SavedPreprocess::Settings(model.preprocess));
    assert_eq!(info.backbone, "efficientnet-lite0");
    let photo = load_rgb(&data.path().join("square/000.png"), DEFAULT_MAX_PIXELS).unwrap();
    let before = classify_with_head(&model, &first.head, &[&photo]).unwrap();
    let after = classify_with_head(&model, &loaded, &[&photo]).unwrap();
    assert_eq!(before, after);
    let best = (0..3)
        .max_by(|&a, &b| after[0][a].total_cmp(&after[0][b]))
        .unwrap();
    assert_eq!(loaded.classes[best], "square");

    // A damaged head is refused with its name.
    std::fs::write(&path, b"garbage").unwrap();
    let err = Head::load(&path).unwrap_err().to_string();
    assert!(err.contains("shapes.safetensors"), "{err}");
}

#[test]
fn fine_tuning_trains_the_last_block_too_and_round_trips() {
    let model = load_model(
        "efficientnet-lite0",
        Some(&common::efficientnet_weights()),
        &Device::Cpu,
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    common::shapes::make_dataset(
        data.path(),
        &[("disc", 0), ("square", 1), ("stripes", 2)],
        24,
    );
    let mut config = TrainConfig::default();
    config.features.cache_dir = Some(cache.path().to_path_buf());
    config.val_fraction = 0.25;
    config.head.epochs = 6;
    config.head.lr = 3e-3;
    config.head.batch_size = 16;
    config.fine_tune = Some(0.1);

    let outcome = train_on_folder(&model, data.path(), &config, &mut Silent).unwrap();
    // The map of a fine-tuning run: the block inputs averaged over space, one point a photo.
    assert_eq!(
        outcome.map.len(),
        outcome.split.train.len() + outcome.split.val.len()
    );
    assert!(outcome.map.iter().any(|(_, [x, y])| *x != 0.0 || *y != 0.0));
    assert_eq!(outcome.features_from_cache, 0);
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "block inputs are never cached"
    );
    assert!(
        outcome.val_accuracy >= 0.95,
        "validation accuracy {} ({:?})",
        outcome.val_accuracy,
        outcome.head.metrics
    );
    let block = outcome.head.block.as_ref().expect("a fine-tuned block");
    assert_eq!(block.input_tap, "block15");
    assert_eq!(block.input_shape, [320, 7, 7]);
    // The block moved away from the pretrained head convolution.
    let pretrained = model.backbone.last_block().unwrap().convs[0].weight.clone();
    let tuned = &outcome.head.weights["block.0.weight"];
    let moved = (tuned - &pretrained)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(moved > 1e-4, "the block did not train ({moved})");

    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("tuned.safetensors");
    outcome
        .head
        .save(&path, "efficientnet-lite0", &model.preprocess)
        .unwrap();
    let (loaded, info) = Head::load(&path).unwrap();
    assert_eq!(info.block.as_ref(), Some(block));
    let photo = load_rgb(&data.path().join("stripes/003.png"), DEFAULT_MAX_PIXELS).unwrap();
    let before = classify_with_head(&model, &outcome.head, &[&photo]).unwrap();
    let after = classify_with_head(&model, &loaded, &[&photo]).unwrap();
    assert_eq!(before, after);
}
