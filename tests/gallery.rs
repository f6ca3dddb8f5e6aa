//! The layer gallery with the real EfficientNet-Lite0, kept small (the stem's first channels,
//! 32 px, 2 steps): its cache is reused, survives an interrupted run (only finished batches
//! are kept, and a rerun dreams only the rest), never trusts a damaged tile, and the CLI
//! writes the grid as one PNG. And the gallery's other half, dataset examples per channel:
//! each channel's strongest photos of a folder (checked against every photo's own pass), the
//! crop around the strongest cell, the cache, and the CLI's sheet and JSON.

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

// ---- Dataset examples -------------------------------------------------------------------

use cnn_explorer::explain::examples::{find_examples, ChannelExamples, ExampleSettings, CROP_SIDE};
use cnn_explorer::train::dataset::{scan, Item, ScanOptions};

/// A folder of two classes of five generated photos (stripes and blobs of several scales and
/// colours, so channels prefer different ones), plus one file that is not an image.
fn example_folder(root: &Path) -> Vec<Item> {
    for (c, class) in ["stripes", "blobs"].into_iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..5u32 {
            let period = 4 + 5 * i;
            let photo = image::RgbImage::from_fn(160, 120, |x, y| {
                let on = if c == 0 {
                    (x / period) % 2 == 0
                } else {
                    let (dx, dy) = (
                        x as i32 % (2 * period as i32) - period as i32,
                        y as i32 % (2 * period as i32) - period as i32,
                    );
                    dx * dx + dy * dy < (period * period) as i32 / 2
                };
                let base = [
                    (40 * i) as u8,
                    200 - (30 * i) as u8,
                    (60 * c as u32 + 20 * i) as u8,
                ];
                if on {
                    image::Rgb(base)
                } else {
                    image::Rgb([255 - base[0], 255 - base[1], 255 - base[2]])
                }
            });
            photo.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
    std::fs::write(root.join("blobs").join("broken.png"), b"not a png").unwrap();
    scan(root, ScanOptions::default()).unwrap().items
}

fn find(model: &LoadedModel, items: &[Item], cache: Option<&Path>) -> ChannelExamples {
    let settings = ExampleSettings {
        top: 3,
        batch_size: 4,
    };
    find_examples(
        model,
        "block3",
        items,
        settings,
        cache,
        &|| false,
        &mut |_| {},
    )
    .expect("the search runs")
    .expect("not cancelled")
}

#[test]
fn each_channels_examples_are_its_strongest_photos_and_are_cached() {
    let model = lite0();
    let tmp = tempfile::tempdir().unwrap();
    let items = example_folder(&tmp.path().join("photos"));
    let cache = tmp.path().join("cache");
    let found = find(&model, &items, Some(&cache));
    assert!(!found.from_cache);
    assert_eq!(found.failed.len(), 1, "{:?}", found.failed);
    assert!(found.failed[0].path.ends_with("broken.png"));
    // Every photo's own pass (one photo at a time, through `layer_maps`).
    let maps: Vec<Option<cnn_explorer::vision::grid::ChannelMaps>> = items
        .iter()
        .map(|item| {
            let photo = cnn_explorer::vision::image_io::load_rgb(&item.path, u64::MAX).ok()?;
            Some(model.layer_maps(&photo, "block3").unwrap())
        })
        .collect();
    let first = maps.iter().flatten().next().unwrap();
    assert_eq!(found.channels.len(), first.channels);
    let plane = first.height * first.width;
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0);
    for (c, list) in found.channels.iter().enumerate() {
        let mut expected: Vec<f32> = maps
            .iter()
            .flatten()
            .map(|m| {
                m.values[c * plane..(c + 1) * plane]
                    .iter()
                    .copied()
                    .fold(f32::MIN, f32::max)
            })
            .collect();
        expected.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(list.len(), 3);
        for (k, e) in list.iter().enumerate() {
            assert!(
                close(e.value, expected[k]),
                "channel {c} #{k}: {} vs {}",
                e.value,
                expected[k]
            );
            let m = maps[e.photo].as_ref().expect("a readable photo");
            let [y, x] = e.cell;
            assert!(close(m.values[c * plane + y * m.width + x], e.value));
            assert_eq!(e.crop.dimensions(), (CROP_SIDE, CROP_SIDE));
            // The window holds the cell's receptive field, inside the 224 px view.
            let [fx0, fy0, fx1, fy1] = e.field;
            let [wx0, wy0, wx1, wy1] = e.window;
            assert!(
                wx0 <= fx0 && wy0 <= fy0 && fx1 <= wx1 && fy1 <= wy1 && wx1 <= 224 && wy1 <= 224
            );
        }
    }
    // Read back whole from the cache.
    let again = find(&model, &items, Some(&cache));
    assert!(again.from_cache);
    assert_eq!(again.channels, found.channels);
    assert_eq!(again.failed, found.failed);
    // A photo removed from the folder: found again, without it.
    let fewer: Vec<Item> = items[1..].to_vec();
    let without = find(&model, &fewer, Some(&cache));
    assert!(!without.from_cache);
    assert!(without
        .channels
        .iter()
        .flatten()
        .all(|e| without.photos[e.photo] != items[0].path));
    // A damaged crops file is never trusted.
    let dir = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("crops.png").is_file() && find_lists(p) == items.len())
        .expect("the first search's cache folder");
    std::fs::write(dir.join("crops.png"), b"damaged").unwrap();
    let recomputed = find(&model, &items, Some(&cache));
    assert!(!recomputed.from_cache);
    assert_eq!(recomputed.channels, found.channels);
    // Cancelled before the first batch: nothing, and nothing new cached.
    let before = std::fs::read_dir(&cache).unwrap().count();
    let settings = ExampleSettings::default();
    let cancelled = find_examples(
        &model,
        "block5",
        &items,
        settings,
        Some(&cache),
        &|| true,
        &mut |_| {},
    );
    assert!(cancelled.unwrap().is_none());
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), before);
    // Vectors have no position to crop around; unknown layers are named.
    let err = find_examples(
        &model,
        "logits",
        &items,
        settings,
        None,
        &|| false,
        &mut |_| {},
    );
    assert!(err.unwrap_err().to_string().contains("not a map"));
    let err = find_examples(
        &model,
        "block99",
        &items,
        settings,
        None,
        &|| false,
        &mut |_| {},
    );
    assert!(err.unwrap_err().to_string().contains("block99"));
}

/// How many photos the cached lists in `dir` were made for.
fn find_lists(dir: &Path) -> usize {
    let text = std::fs::read_to_string(dir.join("examples.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["photos"].as_array().map_or(0, Vec::len)
}

#[test]
fn the_cli_writes_a_row_of_examples_per_channel() {
    let weights = common::efficientnet_weights();
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let items = example_folder(&photos);
    let out = tmp.path().join("examples.png");
    let o = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
        .args([
            "examples",
            photos.to_str().unwrap(),
            "--model",
            "efficientnet-lite0",
        ])
        .args([
            "--layer",
            "stem",
            "--top",
            "4",
            "--channels",
            "5",
            "--json",
            "-o",
        ])
        .arg(&out)
        .env("RUST_LOG", "warn")
        .env("CNN_EXPLORER_CACHE_DIR", tmp.path().join("cache"))
        .env("CNN_EXPLORER_WEIGHTS_DIR", weights.parent().unwrap())
        .output()
        .expect("the binary runs");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(err.contains("broken.png"), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(v["layer"], "stem");
    assert_eq!(v["photos"].as_u64(), Some(items.len() as u64));
    // The stem: a 3x3 convolution at stride 2.
    assert_eq!(v["receptive_field"]["size"].as_u64(), Some(3));
    assert_eq!(v["receptive_field"]["stride"].as_u64(), Some(2));
    let channels = v["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 5);
    assert!(channels.iter().all(|c| c.as_array().unwrap().len() == 4));
    // Five rows of four 64 px crops, 2 px apart.
    let sheet = image::open(&out).unwrap();
    assert_eq!(
        (sheet.width(), sheet.height()),
        (4 * 64 + 3 * 2, 5 * 64 + 4 * 2)
    );
    // The sheet may not replace a photo of the folder.
    let o = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
        .args([
            "examples",
            photos.to_str().unwrap(),
            "--model",
            "efficientnet-lite0",
        ])
        .args(["--layer", "stem", "-o"])
        .arg(&items[0].path)
        .env("CNN_EXPLORER_WEIGHTS_DIR", weights.parent().unwrap())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        image::open(&items[0].path).is_ok(),
        "the photo is left whole"
    );
}
