//! DeepDream on the cat photo with the real EfficientNet-Lite0, every way in: the command line
//! writes a PNG at the photo's aspect ratio with its objective raised and never over the
//! photo; the worker answers a DeepDream with steps then its result, a cancelled one with
//! `Cancelled` and a bad layer with `Failed`; and the Dream tab's section (through the real
//! worker thread) shows the image growing live and stops when asked.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cnn_explorer::device::DeviceChoice;
use cnn_explorer::worker::{
    CancelToken, Command as Job, DeepDreamRequest, DeepDreamSettings, Event, JobId, PhotoSource,
    Worker, WorkerConfig,
};
use common::run::{cnn_explorer, stderr};
use common::window::{real_model_options, start, wait_for};
use egui_kittest::kittest::Queryable;

/// `deepdream` on `photo` at a small size (128 px, 2 octaves of 4 steps).
fn small_deepdream(photo: &Path, output: &Path) -> Output {
    common::efficientnet_weights();
    cnn_explorer(&[
        "deepdream",
        photo.to_str().unwrap(),
        "--layer",
        "block9",
        "--model",
        "efficientnet-lite0",
        "--max-side",
        "128",
        "--octaves",
        "2",
        "--steps",
        "4",
        "-o",
        output.to_str().unwrap(),
        "--json",
    ])
}

#[test]
fn the_command_line_dreams_the_cat_at_its_aspect_ratio_and_raises_the_objective() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cat-dream.png");
    let o = small_deepdream(&common::cat_photo(), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    let png = image::open(&out).unwrap();
    // The cat is 451x300: 128x85 at a longest side of 128.
    assert_eq!((png.width(), png.height()), (128, 85));
    assert_eq!(
        (row["width"].as_u64(), row["height"].as_u64()),
        (Some(128), Some(85))
    );
    assert_eq!(
        row["octave_sizes"],
        serde_json::json!([[91, 61], [128, 85]])
    );
    assert_eq!(row["steps"], 8);
    let (start, end) = (
        row["objective_start"].as_f64().unwrap(),
        row["objective_end"].as_f64().unwrap(),
    );
    assert!(end > start * 1.2, "objective {start} -> {end}");
    let cat = image::open(common::cat_photo()).unwrap();
    let small_cat = cat.resize_exact(128, 85, image::imageops::FilterType::Triangle);
    assert_ne!(png.to_rgb8(), small_cat.to_rgb8(), "the photo was dreamed");
}

#[test]
fn the_command_line_refuses_to_write_over_the_photo_and_bad_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("cat.png");
    std::fs::copy(common::cat_photo(), &photo).unwrap();
    let before = std::fs::read(&photo).unwrap();
    for output in [photo.clone(), dir.path().join(".").join("cat.png")] {
        let o = small_deepdream(&photo, &output);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("is an input"), "{}", stderr(&o));
    }
    assert_eq!(
        std::fs::read(&photo).unwrap(),
        before,
        "the photo was changed"
    );
    let cat = photo.to_str().unwrap();
    for (flag, value, range) in [
        ("--octave-scale", "NaN", "1 to 2"),
        ("--octave-scale", "3", "1 to 2"),
        ("--octaves", "0", "1 to 10"),
        ("--max-side", "10", "32 to 2048"),
        ("--step-size", "0", "more than 0"),
    ] {
        let o = cnn_explorer(&["deepdream", cat, "--layer", "block9", flag, value]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(range), "{flag} {value}: {}", stderr(&o));
    }
}

#[test]
fn the_worker_answers_deepdreams_finished_cancelled_and_failed() {
    let weights = common::efficientnet_weights();
    let config = WorkerConfig {
        weights_dir: weights.parent().unwrap().to_path_buf(),
        ..WorkerConfig::default()
    };
    let worker = Worker::spawn(config, std::sync::Arc::new(|| {})).unwrap();
    let next = || {
        worker
            .recv_timeout(Duration::from_secs(120))
            .expect("the worker answers within the timeout")
    };
    assert!(worker.send(Job::LoadModel {
        job: JobId(1),
        model: "efficientnet-lite0".into(),
        device: DeviceChoice::Cpu,
    }));
    assert!(matches!(next(), Event::ModelLoaded { .. }));
    let request = |layer: &str| DeepDreamRequest {
        photo: PhotoSource::File(common::cat_photo()),
        settings: DeepDreamSettings {
            octaves: 2,
            steps: 3,
            max_side: 96,
            ..DeepDreamSettings::new(layer)
        },
    };
    let dream = |job: u64, layer: &str, cancel: CancelToken| {
        assert!(worker.send(Job::DeepDream {
            job: JobId(job),
            cancel,
            request: request(layer),
        }));
    };

    dream(2, "block9", CancelToken::new());
    let mut steps = Vec::new();
    let finished = loop {
        match next() {
            Event::DeepDreamStep {
                octave,
                step,
                image,
                ..
            } => steps.push((octave, step, image.map(|i| (i.width, i.height)))),
            other => break other,
        }
    };
    assert_eq!(steps.len(), 6, "{steps:?}");
    assert_eq!(
        steps[0].2,
        Some((69, 46)),
        "the first frame always has its image"
    );
    assert_eq!(steps[5].2, Some((96, 64)), "so does the last");
    match finished {
        Event::DeepDreamFinished {
            job,
            image,
            steps,
            stopped,
            ..
        } => {
            assert_eq!((job, steps, stopped), (JobId(2), 6, false));
            assert_eq!((image.width, image.height), (96, 64));
        }
        other => panic!("expected the result, got {other:?}"),
    }

    let cancelled = CancelToken::new();
    cancelled.cancel();
    dream(3, "block9", cancelled);
    assert!(matches!(next(), Event::Cancelled { job: JobId(3) }));

    dream(4, "block99", CancelToken::new());
    match next() {
        Event::Failed { job, error } => {
            assert_eq!(job, JobId(4));
            assert!(error.contains("no layer named block99"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn the_dream_tab_deepdreams_the_photo_live_and_stops() {
    let mut h = start(real_model_options());
    wait_for(&mut h, "the cat's analysis", |h| {
        h.state().analysis().is_some()
    });
    h.get_by_label("Dream").click();
    h.run_steps(2);
    h.get_by_label("DeepDream the photo").click();
    h.run_steps(2);
    h.get_by_label("Dream the photo").click();
    wait_for(&mut h, "the first live image", |h| {
        h.state().dream_panel().deepdream().images_received() >= 1
    });
    let first = h.state().dream_panel().deepdream().image().unwrap().clone();
    // The smallest of 4 octaves of the 451x300 cat, shrunk 1.4^3 times.
    assert_eq!((first.width, first.height), (164, 109));
    wait_for(&mut h, "more live images", |h| {
        h.state().dream_panel().deepdream().images_received() >= 3
    });
    let later = h.state().dream_panel().deepdream().image().unwrap();
    assert_ne!(later.rgba, first.rgba, "the image changes as it is dreamed");
    let status = h.state().dream_panel().deepdream().status().to_string();
    assert!(
        status.starts_with("block9, octave "),
        "the default layer: {status}"
    );
    assert!(h.query_by_label_contains(" of 4, step ").is_some());
    h.get_by_label("Stop dreaming").click();
    wait_for(&mut h, "the stopped DeepDream", |h| {
        !h.state().dream_panel().deepdream().is_running()
    });
    let section = h.state().dream_panel().deepdream();
    assert!(
        section.status().starts_with("Stopped after"),
        "{}",
        section.status()
    );
    let kept = section.image().unwrap();
    assert_eq!(
        (kept.width, kept.height),
        (451, 300),
        "kept at the photo's size"
    );
    assert!(h.query_by_label("Save DeepDream…").is_some());
    assert!(
        h.state().settings().dream.deepdream.open,
        "the open section is saved"
    );
}
