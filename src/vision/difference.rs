//! Pictures of how two images of the same size differ: an adversarial perturbation, too
//! small to see, amplified around mid-grey.

use image::{Rgb, RgbImage};

/// `changed - original` per channel, times `127 / budget` around mid-grey (128): a change of
/// `budget` (in 8-bit units, at least 1) reaches black or white, no change stays grey.
/// `changed` must have `original`'s size; pixels outside it count as unchanged.
pub fn amplified_difference(original: &RgbImage, changed: &RgbImage, budget: f32) -> RgbImage {
    let gain = 127.0 / budget.max(1.0);
    RgbImage::from_fn(original.width(), original.height(), |x, y| {
        let a = original.get_pixel(x, y).0;
        let b = changed.get_pixel_checked(x, y).map_or(a, |p| p.0);
        Rgb([0, 1, 2]
            .map(|c| (128.0 + (f32::from(b[c]) - f32::from(a[c])) * gain).clamp(0.0, 255.0) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_change_is_grey_and_the_budget_reaches_black_and_white() {
        let original = RgbImage::from_pixel(2, 1, Rgb([100, 100, 100]));
        let mut changed = original.clone();
        changed.put_pixel(1, 0, Rgb([104, 96, 101]));
        let picture = amplified_difference(&original, &changed, 4.0);
        assert_eq!(picture.dimensions(), (2, 1));
        assert_eq!(picture.get_pixel(0, 0).0, [128, 128, 128]);
        // +4 of a budget of 4: white; -4: black; +1: a quarter of the way up.
        assert_eq!(picture.get_pixel(1, 0).0, [255, 1, 159]);
        // A budget under 1 counts as 1 (no division by zero).
        let tiny = amplified_difference(&original, &changed, 0.0);
        assert_eq!(tiny.get_pixel(1, 0).0, [255, 0, 255]);
    }
}
