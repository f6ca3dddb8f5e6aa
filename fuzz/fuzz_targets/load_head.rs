//! Saved-head bytes -> `Head::load`. An input is the description (`head.json`), or the
//! description, a NUL byte and the weights (`head.safetensors`); without a NUL the weights
//! are a fixed linear head (4 features, 3 classes; `linear_head.safetensors`, written by
//! make_seeds.py). A head that loads agrees with its description and classifies a row of
//! its input width into one probability per class, all finite (see
//! `CNN_FUZZ_ALLOW_NONFINITE` in common.rs).

#![no_main]

#[path = "common.rs"]
mod common;

use cnn_explorer::train::head::Head;
use libfuzzer_sys::fuzz_target;

const LINEAR_HEAD: &[u8] = include_bytes!("linear_head.safetensors");
/// The widest example row the target classifies (a block's input can be large; memory for
/// a row this size is the fuzzer's, not the library's).
const MAX_WIDTH: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let (json, weights) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, LINEAR_HEAD),
    };
    common::scratch_file("head.json", json);
    let path = common::scratch_file("head.safetensors", weights);

    let (head, info) = match Head::load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            let message = e.to_string();
            if common::verbose() {
                eprintln!("refused: {message}");
            }
            assert!(
                message.contains("head.safetensors") || message.contains("head.json"),
                "the error does not name the file: {message}"
            );
            return;
        }
    };
    assert_eq!(head.classes, info.classes);
    assert_eq!(head.dim, info.dim);

    let width = head.input_width();
    if common::verbose() {
        eprintln!(
            "loaded: {} classes, input width {width}",
            head.classes.len()
        );
    }
    if width == 0 || width > MAX_WIDTH {
        return;
    }
    let row: Vec<f32> = (0..width).map(|i| (i % 7) as f32 / 7.0 - 0.5).collect();
    match head.probabilities(&row) {
        Ok(probs) => {
            assert_eq!(probs.len(), head.classes.len(), "one probability per class");
            if common::verbose() {
                eprintln!("probabilities {probs:?}");
            }
            if common::check_finite() {
                assert!(
                    probs.iter().all(|p| p.is_finite()),
                    "probabilities {probs:?}"
                );
            }
        }
        Err(e) => {
            if common::verbose() {
                eprintln!("loaded but cannot classify: {e}");
            }
        }
    }
});
