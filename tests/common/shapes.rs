//! A generated labelled dataset for the train-head tests: shapes and colours on noise, one
//! folder per class, plus the kinds of broken files Cats-vs-Dogs ships.

use std::path::Path;

use cnn_explorer::train::split::SplitMix64;
use image::{Rgb, RgbImage};

/// A 96x96 photo of shape `kind` (0: red disc, 1: blue square, 2: green stripes) at a random
/// place and size on a noisy background.
pub fn shape(kind: usize, rng: &mut SplitMix64) -> RgbImage {
    let side = 96;
    let (cx, cy) = (20 + rng.below(56) as i64, 20 + rng.below(56) as i64);
    let r = 10 + rng.below(14) as i64;
    let mut img = RgbImage::new(side, side);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (dx, dy) = (x as i64 - cx, y as i64 - cy);
        let noise = 90 + rng.below(80) as u8;
        let inside = match kind {
            0 => dx * dx + dy * dy <= r * r,
            1 => dx.abs() <= r && dy.abs() <= r,
            _ => dx.abs() <= r + 6 && dy.abs() <= r && (y / 4) % 2 == 0,
        };
        *p = match (inside, kind) {
            (true, 0) => Rgb([220, 30, 30]),
            (true, 1) => Rgb([30, 40, 220]),
            (true, _) => Rgb([30, 200, 40]),
            (false, _) => Rgb([noise, noise, noise]),
        };
    }
    img
}

/// `per_class` PNGs in `dir/<name>/` for each `(name, shape kind)` of `classes` (at least
/// three), and three broken files: an empty JPEG in the first folder, a truncated one in the
/// second, a text file named .jpg in the third.
pub fn make_dataset(dir: &Path, classes: &[(&str, usize)], per_class: usize) {
    let mut rng = SplitMix64::new(42);
    for (name, kind) in classes {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..per_class {
            shape(*kind, &mut rng)
                .save(folder.join(format!("{i:03}.png")))
                .unwrap();
        }
    }
    std::fs::write(dir.join(classes[0].0).join("empty.jpg"), b"").unwrap();
    let mut jpeg = Vec::new();
    shape(1, &mut rng)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(
        dir.join(classes[1].0).join("truncated.jpg"),
        &jpeg[..jpeg.len() / 2],
    )
    .unwrap();
    std::fs::write(dir.join(classes[2].0).join("notes.jpg"), b"not a photo").unwrap();
}
