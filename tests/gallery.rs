//! The layer gallery with the real EfficientNet-Lite0, kept small (the stem's first channels,
//! 32 px, 2 steps): its cache is reused, survives an interrupted run (only finished batches
//! are kept, and a rerun dreams only the rest), never trusts a damaged tile, and the CLI
//! writes the grid as one PNG.

mod common;

use std::cell::Cell;
use std::path::Path;
use std::process::Command;

use candle_core::Device;
use cnn_explorer::explain::gallery::{
    cache_key, dream_gallery, tile_path, Gallery, GallerySettings,
};
use cnn_explorer::inference::{load_model, LoadedModel};

fn lite0() -> LoadedModel {
    let weights = common::efficientnet_weights();
    load_model("efficientnet-lite0", Some(&weights), &Device::Cpu).expect("the model loads")
}

fn small() -> GallerySettings {
    GallerySettings {
        size: 32,
        steps: 2,
        batch: 4,
        seed: 3,
        limit: Some(12),
    }
}

/// Runs the gallery to the end.
fn run(model: &LoadedModel, root: Option<&Path>) -> Gallery {
    dream_gallery(model, "stem", &small(), root, &|| false, &mut |_| {})
        .expect("the gallery runs")
        .expect("not cancelled")
}

fn pngs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_cache_is_reused_and_survives_an_interrupted_run() {
    let model = lite0();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(cache_key(&model, "stem", &small()));

    // Cancelled once the first batch is done: its four tiles are kept, nothing else.
    let batches = Cell::new(0);
    let outcome = dream_gallery(
        &model,
        "stem",
        &small(),
        Some(root.path()),
        &|| batches.get() >= 1,
        &mut |p| {
            if !p.new_tiles.is_empty() {
                batches.set(batches.get() + 1);
            }
        },
    )
    .unwrap();
    assert!(outcome.is_none(), "a cancelled gallery returns nothing");
    let expected: Vec<String> = (0..4).map(|c| format!("channel-{c:04}.png")).collect();
    assert_eq!(
        pngs(&dir),
        expected,
        "only the finished batch, no temp files"
    );

    // Cancelled in the middle of a batch: that batch's partial dreams are not written.
    let steps = Cell::new(0);
    let outcome = dream_gallery(
        &model,
        "stem",
        &small(),
        Some(root.path()),
        &|| steps.get() >= 1,
        &mut |p| {
            if p.step > 0 {
                steps.set(steps.get() + 1);
            }
        },
    )
    .unwrap();
    assert!(outcome.is_none());
    assert_eq!(
        pngs(&dir),
        expected,
        "a batch stopped part-way is not cached"
    );

    // The rerun dreams only the rest.
    let second = run(&model, Some(root.path()));
    assert_eq!((second.cached, second.computed), (4, 8));
    assert_eq!(second.images.len(), 12);
    assert_eq!(second.layer_channels, 32);
    assert_eq!(pngs(&dir).len(), 12);

    // And the next run reads everything, the same images.
    let third = run(&model, Some(root.path()));
    assert_eq!((third.cached, third.computed), (12, 0));
    assert_eq!(third.images, second.images);
    assert!(third.images.iter().all(|i| i.dimensions() == (32, 32)));
    // The channels differ from each other: each has its own target.
    assert_ne!(third.images[0], third.images[1]);

    // Without a cache, the same channels dream the same images: a channel's image does not
    // depend on which run (or which part of the cache) made it.
    let fresh = run(&model, None);
    assert_eq!((fresh.cached, fresh.computed), (0, 12));
    assert_eq!(fresh.images, second.images);
}

#[test]
fn a_damaged_or_wrong_sized_tile_is_dreamed_again() {
    let model = lite0();
    let root = tempfile::tempdir().unwrap();
    let first = run(&model, Some(root.path()));
    let dir = first.cache_dir.clone().expect("a cache folder");
    std::fs::write(tile_path(&dir, 5), b"not a png").unwrap();
    image::RgbImage::new(16, 16)
        .save(tile_path(&dir, 9))
        .unwrap();
    let again = run(&model, Some(root.path()));
    assert_eq!((again.cached, again.computed), (10, 2));
    assert_eq!(again.images, first.images, "the same dreams, made again");
    let five = image::open(tile_path(&dir, 5)).unwrap();
    assert_eq!(
        five.to_rgb8(),
        first.images[5],
        "the damaged file is replaced"
    );

    // Other settings are another gallery.
    let other = GallerySettings {
        steps: 3,
        ..small()
    };
    assert_ne!(
        cache_key(&model, "stem", &other),
        cache_key(&model, "stem", &small())
    );
    assert_ne!(
        cache_key(&model, "block1", &small()),
        cache_key(&model, "stem", &small())
    );
}

#[test]
fn a_layer_without_feature_maps_or_unknown_is_refused() {
    let model = lite0();
    let err = dream_gallery(&model, "logits", &small(), None, &|| false, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("convolutional layer"), "{err}");
    let err = dream_gallery(&model, "nope", &small(), None, &|| false, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope") && err.contains("block5"), "{err}");
}

#[test]
fn the_cli_writes_the_grid_as_one_png_and_reuses_the_cache() {
    let weights = common::efficientnet_weights();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("grid.png");
    let gallery = |extra: &[&str]| {
        let mut args = vec![
            "gallery",
            "--model",
            "efficientnet-lite0",
            "--layer",
            "stem",
            "--size",
            "32",
            "--steps",
            "2",
            "--channels",
            "6",
            "--json",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .env("CNN_EXPLORER_CACHE_DIR", tmp.path().join("cache"))
            .env("CNN_EXPLORER_WEIGHTS_DIR", weights.parent().unwrap())
            .output()
            .expect("the binary runs");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        let row: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
        row
    };
    let row = gallery(&[]);
    assert_eq!(row["model"], "efficientnet-lite0");
    assert_eq!(row["layer"], "stem");
    assert_eq!(
        (row["channels"].as_u64(), row["cached"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(row["computed"].as_u64(), Some(6));
    assert_eq!(row["output"], out.to_str().unwrap());
    // Six 32 px tiles, three across, two rows, 2 px apart.
    let grid = image::open(&out).unwrap();
    assert_eq!((grid.width(), grid.height()), (3 * 32 + 2 * 2, 2 * 32 + 2));
    let again = gallery(&[]);
    assert_eq!(
        (again["cached"].as_u64(), again["computed"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(image::open(&out).unwrap().to_rgb8(), grid.to_rgb8());
    let uncached = gallery(&["--no-cache"]);
    assert_eq!(uncached["cached"].as_u64(), Some(0));

    // Numbers out of range are refused as the flags are parsed.
    let o = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
        .args(["gallery", "--layer", "stem", "--size", "8"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("32 to 512"));
}
