//! The command line as a user meets it: real weights, real photos, and every kind of bad
//! input answered with a clear error that names the file, a non-zero exit and no panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::run::{cnn_explorer, stderr, stdout};
use common::{cat_photo, fixture};

/// Runs `predict` with the real EfficientNet-Lite0 on `image`.
fn predict(image: &Path) -> Output {
    common::efficientnet_weights();
    cnn_explorer(&[
        "predict",
        "--model",
        "efficientnet-lite0",
        "--json",
        image.to_str().unwrap(),
    ])
}

/// The command failed cleanly: non-zero exit, no panic, and the message names `needle`.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail; stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(err.contains(needle), "stderr should name {needle:?}: {err}");
}

#[test]
fn predict_puts_a_cat_class_first_for_the_cat_photo() {
    let o = predict(&cat_photo());
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(row["model"], "efficientnet-lite0");
    let top = row["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let first = top[0]["index"].as_u64().unwrap();
    assert!([281, 282, 285].contains(&first), "top-1 is {}", top[0]);
    let p = top[0]["prob"].as_f64().unwrap();
    assert!(p > 0.3 && p < 1.0, "prob {p}");
    assert!(
        stderr(&o).contains("device: CPU"),
        "device reported: {}",
        stderr(&o)
    );
}

#[test]
fn unusual_but_valid_images_are_converted_and_classified() {
    let dir = tempfile::tempdir().unwrap();
    let cat = image::open(cat_photo()).unwrap();
    let gray = dir.path().join("gray.png");
    cat.to_luma8().save(&gray).unwrap();
    let alpha = dir.path().join("alpha.png");
    cat.to_rgba8().save(&alpha).unwrap();
    for path in [
        gray,
        alpha,
        fixture("images/gray16.png"),
        fixture("images/cmyk.jpg"),
        fixture("images/exif_orientation6.jpg"),
    ] {
        let o = predict(&path);
        assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
        assert!(stdout(&o).contains("\"top\""));
    }
}

#[test]
fn bad_images_get_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let not_image = dir.path().join("notes.jpg");
    std::fs::write(&not_image, "this is a text file with an image extension\n").unwrap();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.path().join("truncated.jpg");
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::open(cat_photo())
        .unwrap()
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let jpeg = jpeg.into_inner();
    std::fs::write(&truncated, &jpeg[..jpeg.len() / 2]).unwrap();
    let cases = [
        (not_image, "not an image"),
        (empty, "empty"),
        (truncated, "truncated"),
        (fixture("images/huge_header.png"), "above the limit"),
        (dir.path().join("missing.png"), "cannot read"),
    ];
    for (path, reason) in cases {
        let o = predict(&path);
        assert_clean_failure(&o, &path.display().to_string());
        assert!(
            stderr(&o).contains(reason),
            "{}: {}",
            path.display(),
            stderr(&o)
        );
    }
}

#[test]
fn one_bad_image_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"nope").unwrap();
    common::efficientnet_weights();
    let o = cnn_explorer(&[
        "predict",
        "--model",
        "efficientnet-lite0",
        "--json",
        bad.to_str().unwrap(),
        cat_photo().to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "bad.png");
    assert_eq!(stdout(&o).lines().count(), 1, "the cat is still classified");
}

#[test]
fn wrong_or_damaged_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = common::efficientnet_weights();
    let cat = cat_photo();
    let cat = cat.to_str().unwrap();

    // EfficientNet weights passed off as VGG-16.
    let o = cnn_explorer(&[
        "predict",
        "--model",
        "vgg16",
        "--weights",
        real.to_str().unwrap(),
        cat,
    ]);
    assert_clean_failure(&o, "does not hold VGG-16 weights");

    // A truncated .pth and a truncated .safetensors.
    let bytes = std::fs::read(&real).unwrap();
    let cut_pth = dir.path().join("cut.pth");
    std::fs::write(&cut_pth, &bytes[..bytes.len() / 2]).unwrap();
    let o = cnn_explorer(&[
        "predict",
        "--model",
        "efficientnet-lite0",
        "--weights",
        cut_pth.to_str().unwrap(),
        cat,
    ]);
    assert_clean_failure(&o, "cut.pth");

    let tiny = std::fs::read(fixture("vgg16_tiny_tv.safetensors")).unwrap();
    let cut_st = dir.path().join("cut.safetensors");
    std::fs::write(&cut_st, &tiny[..tiny.len() - 100]).unwrap();
    let o = cnn_explorer(&[
        "predict",
        "--model",
        "vgg16",
        "--weights",
        cut_st.to_str().unwrap(),
        cat,
    ]);
    assert_clean_failure(&o, "cut.safetensors");

    // The right file names but the wrong sizes (a tiny VGG is not VGG-16).
    let o = cnn_explorer(&[
        "predict",
        "--model",
        "vgg16",
        "--weights",
        fixture("vgg16_tiny_tv.safetensors").to_str().unwrap(),
        cat,
    ]);
    assert_clean_failure(&o, "shape mismatch");
}

#[test]
fn unknown_model_and_layer_names_are_refused() {
    let o = cnn_explorer(&["layers", "--model", "resnet9000"]);
    assert_clean_failure(&o, "unknown model 'resnet9000'");
    assert!(stderr(&o).contains("vgg16"), "lists the known models");

    common::efficientnet_weights();
    let o = cnn_explorer(&[
        "features",
        cat_photo().to_str().unwrap(),
        "--model",
        "efficientnet-lite0",
        "--layer",
        "conv9_9",
    ]);
    assert_clean_failure(&o, "unknown layer 'conv9_9'");
    assert!(stderr(&o).contains("block7"), "lists the known layers");
}

#[test]
fn features_writes_a_grid_png_and_channel_means() {
    common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid.png");
    let o = cnn_explorer(&[
        "features",
        cat_photo().to_str().unwrap(),
        "--model",
        "efficientnet-lite0",
        "--layer",
        "block3",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(row["shape"], serde_json::json!([40, 28, 28]));
    assert_eq!(row["channel_means"].as_array().unwrap().len(), 40);
    let grid = image::open(&out).unwrap().to_rgb8();
    // 40 channels -> 7 columns x 6 rows of 28x28 maps scaled x2, 1-pixel gaps.
    assert_eq!(grid.dimensions(), (7 * 56 + 6, 6 * 56 + 5));
    let distinct: std::collections::HashSet<_> = grid.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 50, "a real picture, not a flat one");
}

#[test]
fn models_and_layers_json() {
    let o = cnn_explorer(&["models", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "vgg16",
            "vgg19",
            "resnet50",
            "resnet18",
            "mobilenetv3-large",
            "efficientnet-lite0",
            "efficientnet-lite1",
            "efficientnet-lite2"
        ]
    );
    for r in rows.as_array().unwrap() {
        for key in ["arch", "size_bytes", "source", "present"] {
            assert!(r.get(key).is_some(), "{key} in {r}");
        }
    }

    let o = cnn_explorer(&["layers", "--model", "vgg16", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let layers: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let layers = layers.as_array().unwrap();
    let shape = |name: &str| {
        layers
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))["shape"]
            .clone()
    };
    assert_eq!(layers.len(), 13 + 5 + 3);
    assert_eq!(shape("conv1_1"), serde_json::json!([1, 64, 224, 224]));
    assert_eq!(shape("conv5_3"), serde_json::json!([1, 512, 14, 14]));
    assert_eq!(shape("pool5"), serde_json::json!([1, 512, 7, 7]));
    assert_eq!(shape("fc7"), serde_json::json!([1, 4096]));
    assert_eq!(shape("logits"), serde_json::json!([1, 1000]));

    // The new backbones' layers, whether or not their weights are here.
    let layers_of = |model: &str| -> Vec<serde_json::Value> {
        let o = cnn_explorer(&["layers", "--model", model, "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v.as_array().unwrap().clone()
    };
    let find = |layers: &[serde_json::Value], name: &str| {
        layers
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    };
    let resnet = layers_of("resnet50");
    assert_eq!(resnet.len(), 2 + 16 + 1);
    assert_eq!(
        find(&resnet, "pool")["shape"],
        serde_json::json!([1, 64, 56, 56])
    );
    assert_eq!(
        find(&resnet, "layer1.0")["shape"],
        serde_json::json!([1, 256, 56, 56])
    );
    assert_eq!(
        find(&resnet, "layer4.2")["shape"],
        serde_json::json!([1, 2048, 7, 7])
    );
    assert_eq!(find(&resnet, "layer4.2")["kind"], "block");
    let mobilenet = layers_of("mobilenetv3_large_100");
    assert_eq!(mobilenet.len(), 1 + 15 + 3);
    assert_eq!(
        find(&mobilenet, "stem")["shape"],
        serde_json::json!([1, 16, 112, 112])
    );
    assert_eq!(
        find(&mobilenet, "head")["shape"],
        serde_json::json!([1, 960, 7, 7])
    );
    assert_eq!(
        find(&mobilenet, "pre_logits")["shape"],
        serde_json::json!([1, 1280])
    );
    // EfficientNet-Lite1 and -Lite2 at their native sizes (240, 260): 21 blocks, Lite2's
    // last one 1.1 times as wide (352), the head fixed at 1280.
    for (model, side, last) in [
        ("efficientnet-lite1", 240, 320),
        ("efficientnet-lite2", 260, 352),
    ] {
        let lite = layers_of(model);
        assert_eq!(lite.len(), 1 + 21 + 2, "{model}");
        let half = (side + 1) / 2;
        assert_eq!(
            find(&lite, "stem")["shape"],
            serde_json::json!([1, 32, half, half])
        );
        let out = (side + 31) / 32;
        assert_eq!(
            find(&lite, "block20")["shape"],
            serde_json::json!([1, last, out, out])
        );
        assert_eq!(
            find(&lite, "head")["shape"],
            serde_json::json!([1, 1280, out, out])
        );
    }
}

#[test]
fn asking_for_a_device_this_build_lacks_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let o = cnn_explorer(&["--device", "cuda", "bench", "--model", "efficientnet-lite0"]);
    assert_clean_failure(&o, "no CUDA support");
}

#[test]
fn dream_and_attack_write_pngs_and_report_json() {
    common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    let dreamed = dir.path().join("zebra.png");
    let o = cnn_explorer(&[
        "dream",
        "--class",
        "zebra",
        "--steps",
        "3",
        "--size",
        "112",
        "--model",
        "efficientnet-lite0",
        "--json",
        "-o",
        dreamed.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(row["class"], 340);
    assert_eq!(row["steps"], 3);
    assert!(row["prob"].as_f64().unwrap() > 0.0 && row["ms_per_step"].as_f64().unwrap() > 0.0);
    assert_eq!(image::image_dimensions(&dreamed).unwrap(), (112, 112));

    let adversarial = dir.path().join("cat-fgsm.png");
    let cat = common::cat_photo();
    let o = cnn_explorer(&[
        "attack",
        cat.to_str().unwrap(),
        "--fgsm",
        "--eps",
        "8",
        "--model",
        "efficientnet-lite0",
        "--json",
        "-o",
        adversarial.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(row["source_label"], "Egyptian cat");
    assert_eq!(row["success"], true);
    assert_eq!(row["steps"], 1);
    assert!(row["linf"].as_u64().unwrap() <= 8);
    assert_eq!(image::image_dimensions(&adversarial).unwrap(), (451, 300));

    let o = cnn_explorer(&[
        "dream",
        "--class",
        "no such animal",
        "--model",
        "efficientnet-lite0",
    ]);
    assert_clean_failure(&o, "no ImageNet class matches 'no such animal'");
}

#[test]
fn compare_trains_each_backbone_on_the_same_split_and_reports_missing_weights() {
    let weights = tempfile::tempdir().unwrap();
    common::install_two_models(weights.path());
    let data = tempfile::tempdir().unwrap();
    common::shapes::make_dataset(
        data.path(),
        &[("disc", 0), ("square", 1), ("stripes", 2)],
        8,
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
            .args(args)
            .env("RUST_LOG", "warn")
            .env("CNN_EXPLORER_WEIGHTS_DIR", weights.path())
            .output()
            .expect("the binary runs")
    };
    let dir = data.path().to_str().unwrap();
    let o = run(&[
        "compare",
        dir,
        "--models",
        "efficientnet-lite0,resnet18,mobilenetv3-large",
        "--epochs",
        "3",
        "--no-cache",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{}", stdout(&o));
    let (effnet, resnet) = (&rows[0]["row"], &rows[1]["row"]);
    assert_eq!(effnet["parameters"], 4_652_008);
    assert_eq!(effnet["embedding_dim"], 1280);
    assert_eq!(resnet["embedding_dim"], 512);
    let on_disk = std::fs::metadata(weights.path().join("resnet18.safetensors"))
        .unwrap()
        .len();
    assert_eq!(resnet["weights_bytes"], on_disk);
    for r in [effnet, resnet] {
        assert!(r["feature_ms_per_image"].as_f64().unwrap() > 0.0);
        assert!((0.0..=1.0).contains(&r["val_accuracy"].as_f64().unwrap()));
    }
    // The same split for both: 8 photos a class, 2 kept for validation (the 3 broken files
    // are skipped by both).
    assert_eq!(
        (&effnet["train_photos"], &effnet["val_photos"]),
        (&resnet["train_photos"], &resnet["val_photos"])
    );
    assert_eq!(effnet["val_photos"], 6);
    assert!(effnet["val_accuracy"].as_f64().unwrap() >= 0.8, "{effnet}");
    assert_eq!(rows[2]["model"], "mobilenetv3-large");
    assert!(rows[2]["error"].as_str().unwrap().contains("no weights"));

    // The table, with its charts.
    let o = run(&[
        "compare",
        dir,
        "--models",
        "efficientnet-lite0",
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for needle in ["val acc", "ms/photo", "4.7M", "validation accuracy", "█"] {
        assert!(stdout(&o).contains(needle), "{needle}: {}", stdout(&o));
    }

    // A folder no model can train on is refused before any model loads.
    let empty = tempfile::tempdir().unwrap();
    let o = run(&["compare", empty.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn train_head_saves_a_head_that_predict_uses_with_the_resize_mode_asked_for() {
    let weights = common::efficientnet_weights();
    let data = tempfile::tempdir().unwrap();
    common::shapes::make_dataset(
        data.path(),
        &[("disc", 0), ("square", 1), ("stripes", 2)],
        8,
    );
    let out = tempfile::tempdir().unwrap();
    let head = out.path().join("shapes.safetensors");
    let head_arg = head.to_str().unwrap();
    let mut args = vec![
        "train-head",
        data.path().to_str().unwrap(),
        "--model",
        "efficientnet-lite0",
        "--epochs",
        "3",
        "--mlp",
        "16",
        "--dropout",
        "0.2",
        "--no-cache",
        "--json",
        "-o",
        head_arg,
    ];
    let o = cnn_explorer(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = rows.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["dataset", "epoch", "epoch", "epoch", "done"]);
    assert_eq!(rows[0]["layout"], "class-folders");
    assert_eq!(rows[4]["head"], head_arg);
    // Per-class scores in class order beside the confusion matrix, recall its diagonal share.
    let done = &rows[4];
    let confusion = done["confusion"].as_array().unwrap();
    for key in ["precision", "recall", "f1"] {
        assert_eq!(
            done[key].as_array().unwrap().len(),
            confusion.len(),
            "{key}"
        );
    }
    for (c, row) in confusion.iter().enumerate() {
        let row: Vec<u64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let total: u64 = row.iter().sum();
        let recall = if total == 0 {
            0.0
        } else {
            row[c] as f64 / total as f64
        };
        assert!((done["recall"][c].as_f64().unwrap() - recall).abs() < 1e-6);
    }
    // The most confused pairs are off-diagonal cells with their counts.
    for pair in done["most_confused"].as_array().unwrap() {
        let (t, p) = (
            pair["truth"].as_u64().unwrap(),
            pair["predicted"].as_u64().unwrap(),
        );
        assert_ne!(t, p);
        assert_eq!(pair["count"], confusion[t as usize][p as usize]);
    }
    // The dataset map: every photo that trained or validated, once, at finite coordinates.
    let map = done["map"].as_array().unwrap();
    assert_eq!(
        map.len() as u64,
        done["train"].as_u64().unwrap() + done["val"].as_u64().unwrap()
    );
    assert!(map
        .iter()
        .all(|p| p["x"].as_f64().unwrap().is_finite() && p["y"].as_f64().unwrap().is_finite()));
    // The top losses: every mistake (up to 10), surest first, each loss -ln p(true).
    let off_diagonal: u64 = (0..confusion.len())
        .flat_map(|t| (0..confusion.len()).map(move |p| (t, p)))
        .filter(|(t, p)| t != p)
        .map(|(t, p)| confusion[t][p].as_u64().unwrap())
        .sum();
    let losses = done["top_losses"].as_array().unwrap();
    assert_eq!(losses.len() as u64, off_diagonal.min(10));
    for (n, m) in losses.iter().enumerate() {
        assert_ne!(m["truth"], m["predicted"]);
        let (loss, p_truth) = (m["loss"].as_f64().unwrap(), m["p_truth"].as_f64().unwrap());
        assert!(
            (loss + p_truth.max(1e-12).ln()).abs() < 1e-4 * loss.max(1.0),
            "{m}"
        );
        assert!(m["p_predicted"].as_f64().unwrap() >= p_truth, "{m}");
        assert!(Path::new(m["path"].as_str().unwrap()).is_file());
        if n > 0 {
            assert!(losses[n - 1]["loss"].as_f64().unwrap() >= loss);
        }
    }

    // The window's dropout is a flag here too, and the preprocessing is saved as data.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(head.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(info["kind"]["kind"], "mlp");
    assert_eq!(info["kind"]["hidden"], 16);
    assert!((info["kind"]["dropout"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert_eq!(info["preprocess"]["size"], 224);
    assert_eq!(info["preprocess"]["mode"], "center-crop");

    // --dropout belongs to an MLP head.
    args.retain(|a| !["--mlp", "16"].contains(a));
    assert!(!cnn_explorer(&args).status.success());

    // predict --head honours --resize: "whole" gives what the library gives the whole photo.
    let top_probs = |resize: &str| -> Vec<f64> {
        let o = cnn_explorer(&[
            "predict",
            "--head",
            head_arg,
            "--resize",
            resize,
            "--top",
            "3",
            "--json",
            cat_photo().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(row["model"], "efficientnet-lite0");
        row["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["prob"].as_f64().unwrap())
            .collect()
    };
    let (crop, whole) = (top_probs("crop"), top_probs("whole"));
    let mut model = cnn_explorer::inference::load_model(
        "efficientnet-lite0",
        Some(&weights),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    model.preprocess.mode = cnn_explorer::vision::preprocess::ResizeMode::Whole;
    let (loaded, _) = cnn_explorer::train::head::Head::load(&head).unwrap();
    let photo = cnn_explorer::vision::image_io::load_rgb(
        &cat_photo(),
        cnn_explorer::vision::image_io::DEFAULT_MAX_PIXELS,
    )
    .unwrap();
    let mut expected =
        cnn_explorer::train::pipeline::classify_with_head(&model, &loaded, &[&photo])
            .unwrap()
            .remove(0);
    expected.sort_by(|a, b| b.total_cmp(a));
    for (got, want) in whole.iter().zip(&expected) {
        assert!(
            (got - f64::from(*want)).abs() < 1e-5,
            "{whole:?} vs {expected:?}"
        );
    }
    assert_ne!(crop, whole, "the resize mode changes what the head sees");

    // explain --head: a map of one of the head's classes, named by name.
    let map = out.path().join("disc.png");
    let o = cnn_explorer(&[
        "explain",
        "--head",
        head_arg,
        "--class",
        "disc",
        "--causal-steps",
        "4",
        "--json",
        "-o",
        map.to_str().unwrap(),
        cat_photo().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (row["class"].as_u64(), row["label"].as_str()),
        (Some(0), Some("disc"))
    );
    assert_eq!(row["layer"], "head");
    assert_eq!(row["map"].as_array().unwrap().len(), 7);
    assert!(map.is_file());
    let o = cnn_explorer(&[
        "explain",
        "--head",
        head_arg,
        "--class",
        "tabby",
        cat_photo().to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "no class 'tabby'");
}

#[test]
fn explain_writes_an_overlay_with_the_raw_map_and_its_scores() {
    common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cat_map.png");
    let cat = cat_photo();
    let explain = |extra: &[&str]| {
        let mut args = vec!["explain", "--model", "efficientnet-lite0"];
        args.extend_from_slice(extra);
        args.push(cat.to_str().unwrap());
        cnn_explorer(&args)
    };
    let o = explain(&["--json", "--causal-steps", "8", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(row["method"], "grad-cam");
    assert!(
        [281, 282, 285].contains(&row["class"].as_u64().unwrap()),
        "{}",
        row["class"]
    );
    assert_eq!(row["layer"], "head");
    let map = row["map"].as_array().unwrap();
    assert_eq!(map.len(), 7, "7x7 at the head");
    assert!(map.iter().all(|r| r.as_array().unwrap().len() == 7));
    let values: Vec<f64> = map
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert!(values.iter().all(|v| *v >= 0.0) && values.iter().any(|v| *v > 0.0));
    for key in ["deletion", "insertion"] {
        let v = row[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
        assert_eq!(row[format!("{key}_curve")].as_array().unwrap().len(), 9);
    }
    assert_eq!(row["output"], out.to_str().unwrap());
    let png = image::open(&out).unwrap();
    assert_eq!(
        (png.width(), png.height()),
        (224 + 16, 224),
        "overlay and colour bar"
    );

    // An input method: the map at the input's resolution; no scores when asked for none.
    let o = explain(&[
        "--method",
        "saliency",
        "--causal-steps",
        "0",
        "--json",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(row["map"].as_array().unwrap().len(), 224);
    assert!(row["layer"].is_null() && row["deletion"].is_null());

    // Bad requests are named, before any work, and the photo is never overwritten.
    assert_clean_failure(&explain(&["--method", "lime"]), "unknown method 'lime'");
    assert_clean_failure(
        &explain(&["--method", "saliency", "--layer", "head"]),
        "--layer",
    );
    assert_clean_failure(&explain(&["--layer", "block99"]), "block99");
    assert_clean_failure(&explain(&["--class", "no such class"]), "no such class");
    let before = std::fs::read(&cat).unwrap();
    assert_clean_failure(&explain(&["-o", cat.to_str().unwrap()]), "chelsea");
    assert_eq!(std::fs::read(&cat).unwrap(), before);
    let missing = dir.path().join("missing.jpg");
    let o = cnn_explorer(&[
        "explain",
        "--model",
        "efficientnet-lite0",
        missing.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "missing.jpg");
}

/// An output that is an input, a folder or a device is refused before any work, and the
/// user's files are left exactly as they were.
#[test]
fn outputs_never_overwrite_inputs_folders_or_devices() {
    common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("v.png");
    std::fs::copy(cat_photo(), &photo).unwrap();
    let before = std::fs::read(&photo).unwrap();
    let photo_arg = photo.to_str().unwrap();
    let m = ["--model", "efficientnet-lite0"];
    let attack = cnn_explorer(
        &[
            &["attack", photo_arg, "--target", "207", "-o", photo_arg][..],
            &m,
        ]
        .concat(),
    );
    assert_clean_failure(&attack, "is an input");
    let features = cnn_explorer(
        &[
            &["features", photo_arg, "--layer", "block3", "-o", photo_arg][..],
            &m,
        ]
        .concat(),
    );
    assert_clean_failure(&features, "is an input");
    // The same file through another name.
    let other = dir.path().join(".").join("v.png");
    let o = cnn_explorer(
        &[
            &["attack", photo_arg, "--fgsm", "-o", other.to_str().unwrap()][..],
            &m,
        ]
        .concat(),
    );
    assert_clean_failure(&o, "is an input");
    assert_eq!(
        std::fs::read(&photo).unwrap(),
        before,
        "the photo was changed"
    );

    // A folder as the dream's output is refused before the steps run.
    let folder = dir.path().to_str().unwrap();
    let o = cnn_explorer(
        &[
            &["dream", "--class", "zebra", "--steps", "500", "-o", folder][..],
            &m,
        ]
        .concat(),
    );
    assert_clean_failure(&o, "not a regular file");
    assert!(!stderr(&o).contains("step  500"), "the steps ran first");

    // train-head refuses a head or split path that is one of the folder's photos, and a
    // device node as its output.
    let data = tempfile::tempdir().unwrap();
    common::shapes::make_dataset(
        data.path(),
        &[("disc", 0), ("square", 1), ("stripes", 2)],
        4,
    );
    let first = data.path().join("disc").join("000.png");
    let kept = std::fs::read(&first).unwrap();
    let data_arg = data.path().to_str().unwrap();
    let out = dir.path().join("head.safetensors");
    let train = |extra: &[&str]| {
        let args = [
            &["train-head", data_arg, "--epochs", "1", "--no-cache"][..],
            &m,
            extra,
        ]
        .concat();
        cnn_explorer(&args)
    };
    let o = train(&[
        "--split-out",
        first.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "is an input");
    #[cfg(unix)]
    {
        let o = train(&["-o", "/dev/null"]);
        assert_clean_failure(&o, "not a regular file");
        use std::os::unix::fs::FileTypeExt;
        let null = std::fs::metadata("/dev/null").unwrap().file_type();
        assert!(null.is_char_device(), "/dev/null was replaced");
    }
    assert_eq!(
        std::fs::read(&first).unwrap(),
        kept,
        "a training photo was changed"
    );
    assert!(!out.exists());
}

/// A folder whose path is not UTF-8 trains and reports as JSON (the path written lossily),
/// without a panic.
#[cfg(unix)]
#[test]
fn a_non_utf8_folder_path_is_reported_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    common::efficientnet_weights();
    let base = tempfile::tempdir().unwrap();
    let data = base
        .path()
        .join(std::ffi::OsStr::from_bytes(b"photos-\xff"));
    common::shapes::make_dataset(&data, &[("disc", 0), ("square", 1), ("stripes", 2)], 4);
    let split = base.path().join("split.json");
    let head = base
        .path()
        .join(std::ffi::OsStr::from_bytes(b"head-\xfe.safetensors"));
    let o = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
        .arg("train-head")
        .arg(&data)
        .args([
            "--model",
            "efficientnet-lite0",
            "--epochs",
            "1",
            "--no-cache",
            "--json",
        ])
        .arg("--split-out")
        .arg(&split)
        .arg("-o")
        .arg(&head)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows[0]["root"].as_str().unwrap().contains("photos-"));
    assert!(rows.last().unwrap()["head"]
        .as_str()
        .unwrap()
        .contains("head-"));
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&split).unwrap()).unwrap();
    assert!(!split["train"].as_array().unwrap().is_empty());
}

/// Numeric options out of range (or NaN) are refused as the flags are read, with the range.
#[test]
fn numeric_options_are_validated_with_their_range() {
    let cat = cat_photo();
    let cat = cat.to_str().unwrap();
    for (args, needle) in [
        (vec!["train-head", ".", "--val", "2"], "0.01 to 0.9"),
        (vec!["train-head", ".", "--val=-1"], "0.01 to 0.9"),
        (vec!["train-head", ".", "--lr", "NaN"], "--lr"),
        (vec!["train-head", ".", "--mlp", "100000000"], "65536"),
        (vec!["dream", "--class", "zebra", "--lr", "NaN"], "--lr"),
        (vec!["attack", cat, "--fgsm", "--eps=-1"], "--eps"),
        (vec!["predict", cat, "--top", "0"], "1 to 1000"),
    ] {
        let o = cnn_explorer(&args);
        assert_clean_failure(&o, needle);
    }
}

/// A FIFO or a device given as a photo is refused at once, naming it, instead of blocking
/// forever or reading without end; the other photos are still classified.
#[cfg(unix)]
#[test]
fn fifos_and_devices_as_photos_are_refused_not_waited_on() {
    common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("photo.png");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: mkfifo is missing");
        return;
    }
    let cat = cat_photo();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
        .args(["predict", "--model", "efficientnet-lite0", "--json"])
        .args([fifo.as_os_str(), "/dev/zero".as_ref(), cat.as_os_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("predict blocked on a FIFO or /dev/zero");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(
        err.contains("photo.png") && err.contains("not a regular file"),
        "{err}"
    );
    assert!(err.contains("/dev/zero"), "{err}");
    assert!(
        stdout(&o).contains("Egyptian cat"),
        "the cat was not classified"
    );
}

/// `--weights` naming a folder or a device says so (not "no such file").
#[cfg(unix)]
#[test]
fn weights_that_are_folders_or_devices_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let cat = cat_photo();
    let cat = cat.to_str().unwrap();
    let m = ["predict", cat, "--model", "efficientnet-lite0", "--weights"];
    let o = cnn_explorer(&[&m[..], &[dir.path().to_str().unwrap()]].concat());
    assert_clean_failure(&o, "is a folder");
    let o = cnn_explorer(&[&m[..], &["/dev/zero"]].concat());
    assert_clean_failure(&o, "not a regular file");
    let missing = dir.path().join("missing.safetensors");
    let o = cnn_explorer(&[&m[..], &[missing.to_str().unwrap()]].concat());
    assert_clean_failure(&o, "missing.safetensors");
}

/// Writes a linear head on EfficientNet-Lite0's 1280 features, with a fine-tuned block of one
/// 1x1 convolution from `tap` taking `input_shape` (`[4, 2, 2]`: consistent in itself).
fn write_block_head(path: &Path, tap: &str) {
    use candle_core::{DType, Device, Tensor};
    let dev = Device::Cpu;
    let mut weights = std::collections::HashMap::new();
    let t = |shape: &[usize]| Tensor::ones(shape, DType::F32, &dev).unwrap();
    weights.insert("fc.weight".to_string(), t(&[2, 1280]));
    weights.insert("fc.bias".to_string(), t(&[2]));
    weights.insert("block.0.weight".to_string(), t(&[1280, 4, 1, 1]));
    weights.insert("block.0.bias".to_string(), t(&[1280]));
    candle_core::safetensors::save(&weights, path).unwrap();
    let info = serde_json::json!({
        "kind": {"kind": "linear"}, "dim": 1280, "classes": ["cat", "dog"],
        "backbone": "efficientnet-lite0", "preprocess": "a script's head",
        "metrics": [], "best_epoch": 0,
        "block": {"input_tap": tap, "input_shape": [4, 2, 2], "convs": [[0, false]],
                  "max_pool": false},
    });
    std::fs::write(path.with_extension("json"), info.to_string()).unwrap();
}

/// A head whose fine-tuned block does not fit the backbone is the head's fault: the run stops
/// once, naming the head, instead of blaming each photo (an unknown tap) or classifying with
/// the wrong values (a tap of another shape, read as many photos' worth of inputs).
#[test]
fn a_bad_fine_tuned_block_is_blamed_on_the_head_not_the_photo() {
    common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    let cat = cat_photo();
    let cat = cat.to_str().unwrap();
    for (tap, needle) in [
        ("no-such-tap", "no layer named no-such-tap"),
        (
            "block3",
            "takes [4, 2, 2] from block3 but efficientnet-lite0 gives [40, 28, 28]",
        ),
    ] {
        let head = dir.path().join(format!("{tap}.safetensors"));
        write_block_head(&head, tap);
        let o = cnn_explorer(&["predict", "--head", head.to_str().unwrap(), cat, cat]);
        assert_clean_failure(&o, needle);
        let err = stderr(&o);
        assert!(
            err.contains(&format!("the head {}", head.display())),
            "{err}"
        );
        assert!(!err.contains("images could not be classified"), "{err}");
        assert_eq!(err.matches(needle).count(), 1, "stopped at once: {err}");
        assert!(stdout(&o).is_empty(), "nothing classified: {}", stdout(&o));
    }
}

/// Under `RUST_BACKTRACE=1` an error is still one readable message (candle used to put some
/// twenty stack frames in it), and log lines carry no colour codes when stderr is not a
/// terminal.
#[test]
fn errors_carry_no_backtrace_and_piped_logs_no_colour() {
    common::efficientnet_weights();
    let cat = cat_photo();
    let tiny = fixture("vgg16_tiny_tv.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
        .args(["predict", "--model", "vgg16", "--weights"])
        .args([tiny.as_os_str(), cat.as_os_str()])
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    assert_clean_failure(&o, "shape mismatch");
    let err = stderr(&o);
    let frame = |l: &str| {
        let l = l.trim_start();
        l.starts_with("at ")
            || l.split_once(": ")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
    };
    assert!(!err.contains("backtrace"), "{err}");
    assert!(
        !err.lines().any(frame),
        "stack frames in the message: {err}"
    );

    // An info line (the weights loaded), with stderr captured: plain text.
    let o = Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
        .args([
            "predict",
            "--model",
            "efficientnet-lite0",
            cat.to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("loaded weights"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "colour codes in a piped log: {err:?}"
    );
}

/// train-head's output errors name the path and come before any training: a folder, a path
/// ending in `/`, a "folder" that is a file; nothing is left behind.
#[test]
fn train_head_output_errors_name_the_path_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"notes").unwrap();
    let inside = notes.join("head.safetensors");
    let slash = format!("{}/new/", dir.path().display());
    let folder = dir.path().join("heads");
    std::fs::create_dir(&folder).unwrap();
    for (output, needle) in [
        (
            folder.to_str().unwrap(),
            "heads: exists and is not a regular file".to_string(),
        ),
        (&slash, format!("{slash}: ends in a path separator")),
        (
            inside.to_str().unwrap(),
            format!("{} is not a folder", notes.display()),
        ),
    ] {
        let o = cnn_explorer(&[
            "train-head",
            dir.path().to_str().unwrap(),
            "--model",
            "efficientnet-lite0",
            "-o",
            output,
        ]);
        assert_clean_failure(&o, &needle);
        assert!(
            !stderr(&o).contains("device:"),
            "the model was loaded first"
        );
        assert_eq!(stderr(&o).matches(&needle).count(), 1, "{}", stderr(&o));
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(left.len(), 2, "only notes.txt and heads/: {left:?}");
}

/// A photo whose name is not UTF-8: its JSON names it lossily, and the feature grid's default
/// name keeps the photo's own bytes (it used to become `image_LAYER.png`).
#[cfg(unix)]
#[test]
fn non_utf8_photo_names_are_kept_and_reported_lossily() {
    use std::os::unix::ffi::OsStrExt;
    common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    let photo = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"cat-\xff.png"));
    std::fs::copy(cat_photo(), &photo).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cnn-explorer"))
            .args(args)
            .arg(&photo)
            .args(["--model", "efficientnet-lite0", "--json"])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let o = run(&["predict"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(
        row["image"].as_str().unwrap().contains("cat-\u{fffd}.png"),
        "{row}"
    );
    let o = run(&["features", "--layer", "block3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(
        row["grid"]
            .as_str()
            .unwrap()
            .contains("cat-\u{fffd}_block3.png"),
        "{row}"
    );
    let grid = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"cat-\xff_block3.png"));
    assert!(grid.is_file(), "the grid keeps the photo's name");
}

/// `--screenshot` naming the photo opened is refused before any window opens.
#[test]
fn a_screenshot_over_the_photo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("v.png");
    std::fs::copy(cat_photo(), &photo).unwrap();
    let before = std::fs::read(&photo).unwrap();
    let p = photo.to_str().unwrap();
    let o = cnn_explorer(&[p, "--screenshot", p]);
    assert_clean_failure(&o, "is an input");
    assert_eq!(std::fs::read(&photo).unwrap(), before);
}

/// `paths` names the OS's places (here Linux's XDG ones), and each variable moves only its
/// own place. The binary runs from this checkout, so its weights are the checkout's.
#[cfg(target_os = "linux")]
#[test]
fn paths_follow_xdg_and_each_override() {
    let home = tempfile::tempdir().unwrap();
    let home_dir = home.path().to_str().unwrap();
    let places = |env: &[(&str, &str)]| -> serde_json::Value {
        let mut all = vec![
            ("HOME", home_dir),
            ("XDG_DATA_HOME", ""),
            ("XDG_CACHE_HOME", ""),
            ("CNN_EXPLORER_WEIGHTS_DIR", ""),
            ("CNN_EXPLORER_HEADS_DIR", ""),
            ("CNN_EXPLORER_CACHE_DIR", ""),
            ("CNN_EXPLORER_STATE_DIR", ""),
        ];
        all.extend_from_slice(env);
        let o = common::run::cnn_explorer_with(&["paths", "--json"], &all);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let at = |p: &str| format!("{home_dir}/{p}");
    let default = places(&[]);
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights");
    assert_eq!(default["weights"], checkout.to_str().unwrap());
    assert_eq!(default["heads"], at(".local/share/cnn-explorer/heads"));
    assert_eq!(default["cache"], at(".cache/cnn-explorer"));
    assert_eq!(default["settings"], at(".local/share/cnn-explorer/app.ron"));
    let xdg = places(&[
        ("XDG_DATA_HOME", "/srv/data"),
        ("XDG_CACHE_HOME", "/srv/cache"),
    ]);
    assert_eq!(xdg["heads"], "/srv/data/cnn-explorer/heads");
    assert_eq!(xdg["cache"], "/srv/cache/cnn-explorer");
    let moved = places(&[
        ("CNN_EXPLORER_WEIGHTS_DIR", "/w"),
        ("CNN_EXPLORER_HEADS_DIR", "/h"),
        ("CNN_EXPLORER_CACHE_DIR", "/c"),
        ("CNN_EXPLORER_STATE_DIR", "/s"),
    ]);
    assert_eq!(
        [
            &moved["weights"],
            &moved["heads"],
            &moved["cache"],
            &moved["settings"]
        ],
        ["/w", "/h", "/c", "/s/app.ron"]
    );
    // The text form says which variable moves each place.
    let o = common::run::cnn_explorer_with(&["paths"], &[("HOME", home_dir)]);
    assert!(
        stdout(&o).contains("CNN_EXPLORER_HEADS_DIR moves it"),
        "{}",
        stdout(&o)
    );
}
