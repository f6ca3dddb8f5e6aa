//! The worker protocol without a window: finished, cancelled and failed jobs, each answered
//! with exactly the event the UI waits for, under a timeout; the worker survives failures.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cnn_explorer::device::DeviceChoice;
use cnn_explorer::worker::{CancelToken, Command, Event, JobId, PhotoSource, Worker, WorkerConfig};

fn worker_in(dir: &std::path::Path) -> (Worker, Arc<AtomicUsize>) {
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = wakes.clone();
    let worker = Worker::spawn(
        WorkerConfig {
            weights_dir: dir.to_path_buf(),
            ..WorkerConfig::default()
        },
        Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    )
    .unwrap();
    (worker, wakes)
}

fn next(worker: &Worker) -> Event {
    worker
        .recv_timeout(Duration::from_secs(120))
        .expect("the worker answers within the timeout")
}

fn load(worker: &Worker, job: u64, model: &str) {
    assert!(worker.send(Command::LoadModel {
        job: JobId(job),
        model: model.into(),
        device: DeviceChoice::Cpu,
    }));
}

/// A linear head on `dir` for `epochs`, a quarter kept for validation, batches of 8, saved
/// to `output`.
fn train_request(
    dir: std::path::PathBuf,
    epochs: usize,
    output: std::path::PathBuf,
) -> cnn_explorer::worker::TrainRequest {
    cnn_explorer::worker::TrainRequest {
        dir,
        cats_vs_dogs: false,
        val_fraction: 0.25,
        epochs,
        lr: 1e-3,
        weight_decay: 1e-4,
        batch_size: 8,
        seed: 0,
        mlp_hidden: None,
        dropout: 0.5,
        flip: false,
        fine_tune: false,
        fine_tune_lr_factor: 0.1,
        output,
    }
}

fn analyse(worker: &Worker, job: u64, photo: PhotoSource, cancel: CancelToken) {
    assert!(worker.send(Command::Analyse {
        job: JobId(job),
        cancel,
        photo,
    }));
}

#[test]
fn a_photo_is_analysed_into_plain_data_for_every_layer() {
    let weights = common::efficientnet_weights();
    let (worker, wakes) = worker_in(weights.parent().unwrap());
    load(&worker, 1, "efficientnet-lite0");
    match next(&worker) {
        Event::ModelLoaded { job, model } => {
            assert_eq!(job, JobId(1));
            assert_eq!(model.name, "efficientnet-lite0");
            assert!(model.device.starts_with("CPU"), "{}", model.device);
            assert_eq!(model.input_size, 224);
        }
        other => panic!("expected the model, got {other:?}"),
    }
    analyse(
        &worker,
        2,
        PhotoSource::File(common::cat_photo()),
        CancelToken::new(),
    );
    let Event::Analysed { job, analysis } = next(&worker) else {
        panic!("expected an analysis");
    };
    assert_eq!(job, JobId(2));
    assert_eq!(analysis.photo_name, "chelsea.png");
    assert_eq!(
        (analysis.original_width, analysis.original_height),
        (451, 300)
    );
    assert_eq!(
        (analysis.network_view.width, analysis.network_view.height),
        (224, 224)
    );
    assert_eq!(analysis.network_view.rgba.len(), 224 * 224 * 4);
    assert_eq!(analysis.top5.len(), 5);
    assert_eq!(analysis.top5[0].label, "Egyptian cat");
    assert!(
        (analysis.top5[0].prob - 0.355).abs() < 0.01,
        "PyTorch says 0.355"
    );
    let names: Vec<&str> = analysis.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"stem"));
    assert_eq!(names.last(), Some(&"logits"));
    assert_eq!(names.len(), 19);
    for layer in &analysis.layers {
        assert_eq!(
            layer.values.len(),
            layer.channels * layer.height * layer.width
        );
        assert_eq!(layer.stats.len(), layer.channels);
        let a = &layer.atlas;
        assert_eq!(a.rgba.len(), a.width * a.height * 4, "{}", layer.name);
        assert!(a.columns * a.rows >= layer.channels);
    }
    let stem = &analysis.layers[0];
    assert_eq!(stem.shape, vec![32, 112, 112]);
    assert_eq!(stem.kind, cnn_explorer::worker::TapKind::Stem);
    assert!(stem.value(31, 111, 111).is_some() && stem.value(32, 0, 0).is_none());
    // The waker runs just after each send: give the second one a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while wakes.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        wakes.load(Ordering::SeqCst),
        2,
        "the UI is woken after each event"
    );
}

#[test]
fn cancelled_and_failed_jobs_answer_and_the_worker_carries_on() {
    let weights = common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    let (worker, _) = worker_in(weights.parent().unwrap());

    // No model yet.
    analyse(
        &worker,
        1,
        PhotoSource::File(common::cat_photo()),
        CancelToken::new(),
    );
    match next(&worker) {
        Event::Failed { job, error } => {
            assert_eq!(job, JobId(1));
            assert!(error.contains("no model is loaded"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    load(&worker, 2, "resnet-9000");
    assert!(
        matches!(next(&worker), Event::Failed { job: JobId(2), error } if error.contains("unknown model"))
    );
    load(&worker, 3, "efficientnet-lite0");
    assert!(matches!(
        next(&worker),
        Event::ModelLoaded { job: JobId(3), .. }
    ));

    // Cancelled before it starts.
    let cancel = CancelToken::new();
    cancel.cancel();
    analyse(&worker, 4, PhotoSource::File(common::cat_photo()), cancel);
    assert!(matches!(next(&worker), Event::Cancelled { job: JobId(4) }));

    // A file that is not an image, and one that is not there.
    let bad = dir.path().join("notes.png");
    std::fs::write(&bad, "not a picture").unwrap();
    analyse(&worker, 5, PhotoSource::File(bad), CancelToken::new());
    match next(&worker) {
        Event::Failed { job, error } => {
            assert_eq!(job, JobId(5));
            assert!(
                error.contains("notes.png") && error.contains("not an image"),
                "{error}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    analyse(
        &worker,
        6,
        PhotoSource::File(dir.path().join("gone.jpg")),
        CancelToken::new(),
    );
    assert!(
        matches!(next(&worker), Event::Failed { job: JobId(6), error } if error.contains("gone.jpg"))
    );
    // Pasted pixels that do not add up.
    analyse(
        &worker,
        7,
        PhotoSource::Pixels {
            name: "pasted image".into(),
            width: 10,
            height: 10,
            rgba: vec![0u8; 12].into(),
        },
        CancelToken::new(),
    );
    assert!(
        matches!(next(&worker), Event::Failed { job: JobId(7), error } if error.contains("pasted image"))
    );

    // Still working: a pasted (RGBA) grey image is analysed.
    analyse(
        &worker,
        8,
        PhotoSource::Pixels {
            name: "pasted image".into(),
            width: 64,
            height: 48,
            rgba: vec![128u8; 64 * 48 * 4].into(),
        },
        CancelToken::new(),
    );
    match next(&worker) {
        Event::Analysed { job, analysis } => {
            assert_eq!(job, JobId(8));
            assert_eq!(
                (analysis.original_width, analysis.original_height),
                (64, 48)
            );
        }
        other => panic!("expected an analysis, got {other:?}"),
    }

    // Weights missing from the folder.
    let (empty, _) = worker_in(dir.path());
    load(&empty, 9, "vgg16");
    match next(&empty) {
        Event::Failed { error, .. } => assert!(error.contains("vgg16"), "{error}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn training_folders_and_heads_that_cannot_be_used_are_refused_and_a_saved_head_is_loaded() {
    let weights = common::efficientnet_weights();
    let (worker, _) = worker_in(weights.parent().unwrap());
    let dir = tempfile::tempdir().unwrap();

    // An empty folder, and a folder with one class.
    let scan = |job: u64, path: &std::path::Path| {
        assert!(worker.send(Command::ScanFolder {
            job: JobId(job),
            dir: path.to_path_buf(),
            cats_vs_dogs: false,
        }));
        match next(&worker) {
            Event::Failed { error, .. } => error,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    let error = scan(1, dir.path());
    assert!(
        error.contains("0 classes") && error.contains("at least two"),
        "{error}"
    );
    let one = dir.path().join("one");
    std::fs::create_dir_all(one.join("cat")).unwrap();
    common::shapes::shape(0, &mut cnn_explorer::train::split::SplitMix64::new(1))
        .save(one.join("cat/a.png"))
        .unwrap();
    let error = scan(2, &one);
    assert!(error.contains("1 class:"), "{error}");

    // A damaged head is refused; a saved one is loaded and classifies analysed photos.
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"junk").unwrap();
    assert!(worker.send(Command::LoadHead {
        job: JobId(3),
        path: bad,
    }));
    assert!(
        matches!(next(&worker), Event::Failed { job: JobId(3), error } if error.contains("bad.safetensors"))
    );
    // No training yet: no map to refine.
    let tsne = |job: u64, cancel: CancelToken| {
        let options = cnn_explorer::worker::TsneOptions {
            epochs: 200,
            ..Default::default()
        };
        assert!(worker.send(Command::Tsne {
            job: JobId(job),
            cancel,
            options,
        }));
    };
    tsne(50, CancelToken::new());
    assert!(
        matches!(next(&worker), Event::Failed { job: JobId(50), error } if error.contains("train a head"))
    );
    let data = dir.path().join("shapes");
    common::shapes::make_dataset(&data, &[("disc", 0), ("square", 1), ("stripes", 2)], 8);
    load(&worker, 4, "efficientnet-lite0");
    assert!(matches!(next(&worker), Event::ModelLoaded { .. }));
    let saved = dir.path().join("heads/shapes.safetensors");
    let request = train_request(data, 3, saved.clone());
    assert!(worker.send(Command::Train {
        job: JobId(5),
        cancel: CancelToken::new(),
        request: Box::new(request),
    }));
    let (mut steps, mut epochs) = (0, 0);
    let map_len = loop {
        match next(&worker) {
            Event::TrainScanned { summary, .. } => assert_eq!(summary.counts, [8, 9, 9]),
            Event::TrainFeatures { .. } => {}
            Event::TrainStep { .. } => steps += 1,
            Event::TrainEpoch { .. } => epochs += 1,
            Event::TrainFinished { report, head, .. } => {
                assert_eq!(report.unreadable.len(), 2);
                assert_eq!(head.classes, ["disc", "square", "stripes"]);
                break report.map.len();
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        (steps, epochs),
        (3 * 3, 3),
        "18 training photos, batches of 8"
    );
    assert!(saved.is_file());

    // The t-SNE map of the training's features: forming, then one point per map point; a
    // cancelled one answers Cancelled.
    assert_eq!(map_len, 24);
    tsne(51, CancelToken::new());
    let mut last_epoch = 0;
    loop {
        match next(&worker) {
            Event::TsneProgress {
                epoch,
                epochs,
                points,
                ..
            } => {
                assert!(epoch > last_epoch && epochs == 200, "{epoch}/{epochs}");
                assert_eq!(points.len(), map_len);
                last_epoch = epoch;
            }
            Event::TsneFinished { map, .. } => {
                assert_eq!(map.points.len(), map_len);
                assert!(map.points.iter().flatten().all(|v| v.is_finite()));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(last_epoch, 200, "the last epoch is always told");
    let cancel = CancelToken::new();
    cancel.cancel();
    tsne(52, cancel);
    let mut told = 0;
    loop {
        match next(&worker) {
            Event::TsneProgress { .. } => told += 1,
            Event::Cancelled { job: JobId(52) } => break,
            other => panic!("expected a cancellation, got {other:?}"),
        }
    }
    assert!(told <= 1, "stopped after its first epoch");

    assert!(worker.send(Command::LoadHead {
        job: JobId(6),
        path: saved.clone(),
    }));
    match next(&worker) {
        Event::HeadLoaded { head, .. } => {
            assert_eq!(head.backbone, "efficientnet-lite0");
            assert_eq!(head.name, "shapes");
        }
        other => panic!("expected the head, got {other:?}"),
    }
    analyse(
        &worker,
        7,
        PhotoSource::File(common::cat_photo()),
        CancelToken::new(),
    );
    match next(&worker) {
        Event::Analysed { analysis, .. } => {
            let head = analysis.head.expect("the head's predictions");
            assert_eq!(head.top.len(), 3);
            let sum: f32 = head.top.iter().map(|p| p.prob).sum();
            assert!((sum - 1.0).abs() < 1e-4);
        }
        other => panic!("expected an analysis, got {other:?}"),
    }

    // The head in use exports as ONNX and as timm's safetensors; never over the head itself.
    let export = |job: u64, path: std::path::PathBuf| {
        assert!(worker.send(Command::Export {
            job: JobId(job),
            path,
        }));
        next(&worker)
    };
    for (job, name, timm) in [
        (8, "model.onnx", None),
        (9, "model.safetensors", Some("tf_efficientnet_lite0")),
    ] {
        let out = dir.path().join(name);
        match export(job, out.clone()) {
            Event::Exported { job: j, report } => {
                assert_eq!(j, JobId(job));
                assert_eq!(report.path, out);
                assert_eq!(report.classes.len(), 3);
                assert_eq!(report.input_shape, [0, 3, 224, 224]);
                assert_eq!(report.timm_model.as_deref(), timm);
                let written = std::fs::metadata(&out).unwrap().len();
                assert_eq!(written, report.bytes);
                assert!(
                    written > 10_000_000,
                    "the backbone is in the file: {written} bytes"
                );
            }
            other => panic!("expected an export, got {other:?}"),
        }
    }
    let head_path = saved;
    let before = std::fs::read(&head_path).unwrap();
    match export(10, head_path.clone()) {
        Event::Failed {
            job: JobId(10),
            error,
        } => {
            assert!(error.contains("shapes.safetensors"), "{error}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&head_path).unwrap(),
        before,
        "the head is untouched"
    );
    match export(11, dir.path().join("model.txt")) {
        Event::Failed {
            job: JobId(11),
            error,
        } => assert!(error.contains(".onnx"), "{error}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_comparison_reports_progress_and_a_row_per_model_and_can_be_cancelled() {
    let weights = common::efficientnet_weights();
    let dir = tempfile::tempdir().unwrap();
    // Only EfficientNet-Lite0's weights are in this folder.
    std::fs::copy(&weights, dir.path().join("efficientnet-lite0.pth")).unwrap();
    let (worker, _) = worker_in(dir.path());
    let data = dir.path().join("shapes");
    common::shapes::make_dataset(&data, &[("disc", 0), ("square", 1), ("stripes", 2)], 6);
    let train = train_request(data, 2, dir.path().join("unused.safetensors"));
    let request = cnn_explorer::worker::CompareRequest {
        models: vec!["efficientnet-lite0".into(), "resnet50".into()],
        train: train.clone(),
    };
    assert!(worker.send(Command::Compare {
        job: JobId(1),
        cancel: CancelToken::new(),
        request: Box::new(request.clone()),
    }));
    let (mut progress, mut rows) = (Vec::new(), Vec::new());
    let finished = loop {
        match next(&worker) {
            Event::CompareProgress {
                model, fraction, ..
            } => progress.push((model, fraction)),
            Event::CompareRow { row, .. } => rows.push(row),
            Event::CompareFinished { rows, .. } => break rows,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(finished, rows);
    assert_eq!(finished.len(), 2);
    let first = finished[0].as_ref().expect("the first model's row");
    assert_eq!(first.embedding_dim, 1280);
    assert!(first.feature_ms_per_image > 0.0);
    let second = finished[1].as_ref().expect_err("the second model fails");
    assert!(second.error.contains("no weights"));
    assert!(progress
        .iter()
        .any(|(m, f)| m == "efficientnet-lite0" && *f >= 0.8));
    assert!(progress.iter().any(|(m, _)| m == "resnet50"));
    assert!(
        !dir.path().join("unused.safetensors").exists(),
        "nothing saved"
    );

    // Cancelled before it starts: answered with Cancelled, and the worker carries on.
    let cancel = CancelToken::new();
    cancel.cancel();
    assert!(worker.send(Command::Compare {
        job: JobId(2),
        cancel,
        request: Box::new(request),
    }));
    assert!(matches!(next(&worker), Event::Cancelled { job: JobId(2) }));
}
