//! Image bytes -> `decode_rgb` (with a 4-megapixel budget, so legitimately huge images do not
//! slow the fuzzer) -> the network's view and its normalised CHW floats, in each resize mode
//! and filter. A decoded image is non-empty and within budget; the view is always 224x224
//! and its floats finite.

#![no_main]

#[path = "common.rs"]
mod common;

use cnn_explorer::vision::image_io::decode_rgb;
use cnn_explorer::vision::preprocess::{normalize_chw, Preprocess, ResizeFilter, ResizeMode};
use libfuzzer_sys::fuzz_target;

const MAX_PIXELS: u64 = 4_000_000;
const SIDE: u32 = 224;

fuzz_target!(|data: &[u8]| {
    let image = match decode_rgb(data, MAX_PIXELS) {
        Ok(image) => image,
        Err(reason) => {
            assert!(!reason.is_empty(), "an error without a reason");
            if common::verbose() {
                eprintln!("refused: {reason}");
            }
            return;
        }
    };
    let (w, h) = image.dimensions();
    assert!(w > 0 && h > 0, "decoded an empty {w}x{h} image");
    assert!(
        u64::from(w) * u64::from(h) <= MAX_PIXELS,
        "{w}x{h} is over the budget"
    );
    assert_eq!(image.as_raw().len(), w as usize * h as usize * 3);

    // The input's length picks the mode and filter, so each one gets its share of inputs.
    let mode = if data.len() % 2 == 0 {
        ResizeMode::CenterCrop
    } else {
        ResizeMode::Whole
    };
    let filter = if data.len() % 4 < 2 {
        ResizeFilter::Bilinear
    } else {
        ResizeFilter::Bicubic
    };
    let pre = Preprocess {
        mode,
        ..Preprocess::imagenet(SIDE).with_filter(filter)
    };
    if common::verbose() {
        eprintln!("decoded {w}x{h}, preprocessing {mode:?} {filter:?}");
    }
    // `to_chw` is exactly these two steps; called apart to check the view's size too.
    let view = pre.network_view(&image);
    assert_eq!(view.dimensions(), (SIDE, SIDE), "view of a {w}x{h} image");
    let chw = normalize_chw(&view, &pre.mean, &pre.std);
    assert_eq!(chw.len(), 3 * (SIDE * SIDE) as usize);
    assert!(
        chw.iter().all(|v| v.is_finite()),
        "non-finite network input"
    );
});
