//! `export`: the ONNX and safetensors files of a head on the real EfficientNet-Lite0 are the
//! ones tests/fixtures/make_export_fixture.py ran with onnxruntime and loaded into timm, and
//! our own logits equal theirs to 1e-4; bad requests are refused without touching anything.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use cnn_explorer::export::{classifier_steps, export, ExportFormat, ExportRequest};
use cnn_explorer::inference::load_model;
use cnn_explorer::model::Backbone;
use cnn_explorer::train::head::Head;
use sha2::{Digest, Sha256};

use common::{fixture, load_fixture, relative_error};

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("export/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn logits_of(v: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
    let n = rows.len();
    let flat: Vec<f32> = rows.concat();
    let k = flat.len() / n;
    Tensor::from_vec(flat, (n, k), &Device::Cpu).unwrap()
}

/// The digest make_export_fixture.py computes: sorted names, dtype, shape and bytes.
fn tensors_digest(path: &Path) -> String {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let mut names: Vec<_> = tensors.keys().cloned().collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        let t = &tensors[&name];
        let (dtype, bytes): (&str, Vec<u8>) = match t.dtype() {
            DType::F32 => (
                "float32",
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            DType::I64 => (
                "int64",
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<i64>()
                    .unwrap()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            other => panic!("{name}: unexpected {other:?}"),
        };
        h.update(name.as_bytes());
        h.update(dtype.as_bytes());
        h.update(
            serde_json::to_string(t.dims())
                .unwrap()
                .replace(',', ", ")
                .as_bytes(),
        );
        h.update(&bytes);
    }
    format!("{:x}", h.finalize())
}

fn sha256(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

/// Our logits for `x` `[N, 3, H, W]`: the backbone's embedding, then the head.
fn our_logits(backbone: &dyn Backbone, head: &Head, x: &Tensor) -> Tensor {
    head.logits(&backbone.embed(x).unwrap()).unwrap()
}

#[test]
fn exports_are_what_onnxruntime_and_timm_ran_and_match_our_logits() {
    let weights = common::efficientnet_weights();
    let model = load_model("efficientnet-lite0", Some(&weights), &Device::Cpu).unwrap();
    let x = load_fixture("efficientnet_lite0_cat.safetensors")["input"].clone();
    // The batch the script ran: the cat and the cat upside down.
    let batch = Tensor::cat(&[&x, &x.flip(&[2]).unwrap()], 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expected = expected();
    let heads = expected["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 2);
    for case in heads {
        let head_path = fixture(&format!("export/{}", case["head"].as_str().unwrap()));
        let (head, info) = Head::load(&head_path).unwrap();
        let preprocess = *info.preprocess.settings().unwrap();
        let ours = our_logits(model.backbone.as_ref(), &head, &batch);
        for (what, key) in [
            ("onnxruntime", "onnxruntime_logits"),
            ("timm", "timm_logits"),
        ] {
            let theirs = logits_of(&case[key]);
            let err = relative_error(&ours, &theirs);
            assert!(
                err < 1e-4,
                "{}: {what} differs by {err}",
                head_path.display()
            );
        }
        for (ext, check) in [
            ("onnx", "onnx_sha256"),
            ("safetensors", "safetensors_digest"),
        ] {
            let out = dir.path().join(format!("model.{ext}"));
            let inputs = [head_path.as_path()];
            let report = export(
                &ExportRequest {
                    backbone: model.backbone.as_ref(),
                    model_name: model.spec.name,
                    head: &head,
                    preprocess: &preprocess,
                    inputs: &inputs,
                },
                &out,
            )
            .unwrap();
            assert_eq!(report.classes, head.classes);
            assert_eq!(report.input_shape, [0, 3, 224, 224]);
            let got = if ext == "onnx" {
                sha256(&out)
            } else {
                tensors_digest(&out)
            };
            assert_eq!(
                got,
                case[check].as_str().unwrap(),
                "{ext} of {}: not the file make_export_fixture.py checked (re-run it if the \
                 format changed on purpose)",
                head_path.display()
            );
        }
    }
}

#[test]
fn bad_exports_are_refused_and_touch_nothing() {
    let weights = common::efficientnet_weights();
    let model = load_model("efficientnet-lite0", Some(&weights), &Device::Cpu).unwrap();
    let head_path = fixture("export/linear_head.safetensors");
    let (head, info) = Head::load(&head_path).unwrap();
    let preprocess = *info.preprocess.settings().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A copy of the head, which the export must not overwrite.
    let copy = dir.path().join("head.safetensors");
    std::fs::copy(&head_path, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let inputs = [copy.as_path()];
    let req = ExportRequest {
        backbone: model.backbone.as_ref(),
        model_name: model.spec.name,
        head: &head,
        preprocess: &preprocess,
        inputs: &inputs,
    };
    let refused = |out: &Path| {
        export(&req, out)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(!refused(&copy).is_empty(), "overwrote its own head");
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    let err = refused(&dir.path().join("model.pt"));
    assert!(err.contains(".onnx or a .safetensors"), "{err}");
    // A head for another width is refused by name.
    let mut narrow = head.clone();
    narrow.dim = 7;
    let err = classifier_steps(model.backbone.as_ref(), &narrow)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("7-wide"), "{err}");
    assert_eq!(
        ExportFormat::of_path(Path::new("x.ONNX")).ok(),
        Some(ExportFormat::Onnx)
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "left files behind"
    );
}
