//! Tests of head training, saving and loading.

use super::*;

/// Two classes of 2-wide features, far apart: class 0 around (-1, 0), class 1 around (1, 0).
fn separable(n: usize) -> Examples {
    let mut out = Examples::default();
    for i in 0..n {
        let class = (i % 2) as u32;
        let sign = if class == 0 { -1.0 } else { 1.0 };
        out.x.extend([sign + 0.01 * i as f32, 0.1 * (i % 3) as f32]);
        out.y.push(class);
    }
    out
}

#[derive(Default)]
struct Recorder {
    steps: usize,
    epochs: Vec<usize>,
    cancel_after_steps: Option<usize>,
}

impl TrainObserver for Recorder {
    fn on_event(&mut self, event: TrainEvent<'_>) {
        match event {
            TrainEvent::Step { step, loss } => {
                assert_eq!(step, self.steps + 1, "steps are numbered from 1");
                assert!(loss.is_finite());
                self.steps = step;
            }
            TrainEvent::Epoch(m) => self.epochs.push(m.epoch),
            other => panic!("a head alone reports steps and epochs, not {other:?}"),
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancel_after_steps.is_some_and(|n| self.steps >= n)
    }
}

fn options() -> TrainOptions {
    TrainOptions {
        epochs: 3,
        lr: 0.05,
        batch_size: 4,
        ..TrainOptions::default()
    }
}

/// A linear head trained on [`separable`] data, with its two class names.
fn tiny_head() -> (Head, [String; 2]) {
    let (train_set, val_set) = (separable(8), separable(4));
    let classes = ["a".to_string(), "b".to_string()];
    let data = TrainData {
        train: &train_set,
        val: &val_set,
        dim: 2,
        classes: &classes,
    };
    let head = train(&data, &options(), None, &mut super::super::Silent).unwrap();
    (head, classes)
}

#[test]
fn the_observer_hears_every_step_and_epoch_and_can_stop_the_run() {
    let (train_set, val_set) = (separable(16), separable(6));
    let classes = ["a".to_string(), "b".to_string()];
    let data = TrainData {
        train: &train_set,
        val: &val_set,
        dim: 2,
        classes: &classes,
    };
    let mut recorder = Recorder::default();
    let head = train(&data, &options(), None, &mut recorder).unwrap();
    assert_eq!(recorder.epochs, [1, 2, 3]);
    assert_eq!(
        recorder.steps,
        3 * 4,
        "16 examples in batches of 4, 3 epochs"
    );
    assert_eq!(head.metrics.len(), 3);

    let mut stopping = Recorder {
        cancel_after_steps: Some(5),
        ..Recorder::default()
    };
    let err = train(&data, &options(), None, &mut stopping).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(stopping.steps, 5, "checked before every step");
}

#[test]
fn the_preprocessing_is_saved_as_data_and_old_descriptions_still_load() {
    let (head, classes) = tiny_head();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    let preprocess = Preprocess::imagenet(224);
    let json_path = head.save(&path, "vgg16", &preprocess).unwrap();

    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(saved["preprocess"]["size"], 224);
    assert_eq!(saved["preprocess"]["mode"], "center-crop");
    let (_, info) = Head::load(&path).unwrap();
    assert_eq!(info.preprocess.settings(), Some(&preprocess));

    // A head saved before: the preprocessing as its Debug text.
    let mut old = saved.clone();
    old["preprocess"] = format!("{preprocess:?}").into();
    std::fs::write(&json_path, serde_json::to_string_pretty(&old).unwrap()).unwrap();
    let (loaded, info) = Head::load(&path).unwrap();
    assert_eq!(
        info.preprocess,
        SavedPreprocess::Described(format!("{preprocess:?}"))
    );
    assert_eq!(info.preprocess.settings(), None);
    assert_eq!(loaded.classes, classes);
    let x = [-1.0f32, 0.0, 1.0, 0.0];
    assert_eq!(
        loaded.probabilities(&x).unwrap(),
        head.probabilities(&x).unwrap()
    );
}

/// Every inconsistent or hostile head file is refused, naming it: block weights with
/// `"block": null` (they were silently ignored), a block without its weights, wrong shapes,
/// a class count the weights do not have, NaN, absurd sizes, a FIFO.
#[test]
fn hostile_head_files_are_refused_naming_the_file() {
    let (head, _) = tiny_head();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    let json_path = head
        .save(&path, "vgg16", &Preprocess::imagenet(224))
        .unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let block = serde_json::json!({
        "input_tap": "x", "input_shape": [1, 2, 2], "convs": [[0, false]], "max_pool": false
    });
    let dev = Device::Cpu;
    let block_weights = |shape: &[usize]| {
        let mut w = head.weights.clone();
        w.insert(
            "block.0.weight".into(),
            Tensor::ones(shape, DType::F32, &dev).unwrap(),
        );
        w.insert(
            "block.0.bias".into(),
            Tensor::zeros(shape[0], DType::F32, &dev).unwrap(),
        );
        w
    };
    let write = |weights: &HashMap<String, Tensor>, info: &serde_json::Value| {
        candle_core::safetensors::save(weights, &path).unwrap();
        std::fs::write(&json_path, info.to_string()).unwrap();
    };
    let refused = |needle: &str| {
        let err = Head::load(&path).unwrap_err().to_string();
        assert!(err.contains("tiny.safetensors"), "names the file: {err}");
        assert!(err.contains(needle), "{needle:?} in {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    };
    // A consistent fine-tuned head loads, from f16 too.
    let mut with_block = info.clone();
    with_block["block"] = block.clone();
    let f16: HashMap<String, Tensor> = block_weights(&[2, 1, 1, 1])
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap()))
        .collect();
    write(&f16, &with_block);
    let (loaded, _) = Head::load(&path).unwrap();
    assert_eq!(loaded.probabilities(&[1.0; 8]).unwrap().len(), 4);
    assert!(loaded.probabilities(&[1.0; 7]).is_err(), "not whole photos");

    write(&block_weights(&[2, 1, 1, 1]), &info);
    refused("\"block\": null");
    write(&head.weights, &with_block);
    refused("no block.0.weight");
    write(&block_weights(&[2, 3, 1, 1]), &with_block);
    refused("takes 1 channels");
    write(&block_weights(&[2, 1, 3, 3]), &with_block);
    refused("larger than its 2x2 input");
    write(&block_weights(&[5, 1, 1, 1]), &with_block);
    refused("gives 5-wide features but the head takes 2");
    let mut huge = with_block.clone();
    huge["block"]["input_shape"] = serde_json::json!([1u64 << 40, 1u64 << 40, 1u64 << 40]);
    write(&block_weights(&[2, 1, 1, 1]), &huge);
    refused("must have 1 to");

    let mut wrong = head.weights.clone();
    wrong.insert(
        "fc.weight".into(),
        Tensor::ones((3, 2), DType::F32, &dev).unwrap(),
    );
    write(&wrong, &info);
    refused("the description lists 2 classes, the weights classify 3");
    let mut three = info.clone();
    three["classes"] = serde_json::json!(["a", "b", "c"]);
    write(&head.weights, &three);
    refused("lists 3 classes");
    let mut nan = head.weights.clone();
    let bias = Tensor::new(&[0f32, f32::NAN], &dev).unwrap();
    nan.insert("fc.bias".into(), bias);
    write(&nan, &info);
    refused("fc.bias holds NaN");
    let mut wide = info.clone();
    wide["dim"] = serde_json::json!(1u64 << 50);
    write(&head.weights, &wide);
    refused("parameters; the limit is");
    let mut mlp = info.clone();
    mlp["kind"] = serde_json::json!({"kind": "mlp", "hidden": 4, "dropout": 0.5});
    write(&head.weights, &mlp);
    refused("fc.bias, which an MLP head does not have");
    let mut epoch = info.clone();
    epoch["best_epoch"] = serde_json::json!(99);
    write(&head.weights, &epoch);
    refused("best_epoch 99");
    #[cfg(unix)]
    {
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if made.is_ok_and(|s| s.success()) {
            std::fs::write(&json_path, info.to_string()).unwrap();
            refused("not a regular file");
        }
    }
}

/// A head too large for memory is refused before anything is allocated (it used to abort
/// allocating 512 GB), with the range that fits.
#[test]
fn a_head_too_large_for_memory_is_refused_with_the_range() {
    let (train_set, val_set) = (separable(4), separable(2));
    let classes = ["a".to_string(), "b".to_string()];
    let data = TrainData {
        train: &train_set,
        val: &val_set,
        dim: 2,
        classes: &classes,
    };
    let huge = TrainOptions {
        kind: HeadKind::Mlp {
            hidden: 1 << 40,
            dropout: 0.5,
        },
        ..options()
    };
    let err = train(&data, &huge, None, &mut super::super::Silent).unwrap_err();
    assert!(err.to_string().contains("hidden units 1 to"), "{err}");
    let bad_label = Examples {
        x: vec![0.0; 2],
        y: vec![7],
    };
    let data = TrainData {
        train: &bad_label,
        ..data
    };
    let err = train(&data, &options(), None, &mut super::super::Silent).unwrap_err();
    assert!(err.to_string().contains("label 7"), "{err}");
}
