//! Contact sheets: equally sized images tiled into one, for a batch of dreams or a layer's
//! gallery written as a single PNG.

use image::{Rgb, RgbImage};

/// `images` (all `w x h`; others are centred in a `w x h` cell) tiled `columns` across with
/// `gap` pixels of white between them.
pub fn contact_sheet(images: &[RgbImage], columns: usize, gap: u32) -> RgbImage {
    let Some(first) = images.first() else {
        return RgbImage::new(1, 1);
    };
    let (w, h) = first.dimensions();
    let columns = columns.clamp(1, images.len()) as u32;
    let rows = (images.len() as u32).div_ceil(columns);
    let mut sheet = RgbImage::from_pixel(
        columns * w + (columns - 1) * gap,
        rows * h + (rows - 1) * gap,
        Rgb([255, 255, 255]),
    );
    for (i, img) in images.iter().enumerate() {
        let (c, r) = (i as u32 % columns, i as u32 / columns);
        let (x0, y0) = (c * (w + gap), r * (h + gap));
        let (dx, dy) = (
            w.saturating_sub(img.width()) / 2,
            h.saturating_sub(img.height()) / 2,
        );
        for (x, y, p) in img.enumerate_pixels() {
            if x + dx < w && y + dy < h {
                sheet.put_pixel(x0 + x + dx, y0 + y + dy, *p);
            }
        }
    }
    sheet
}

/// A roughly square number of columns for `n` tiles.
pub fn sheet_columns(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_go_left_to_right_then_down_with_gaps() {
        let tiles: Vec<RgbImage> = (0..5u8)
            .map(|i| RgbImage::from_pixel(3, 2, Rgb([i, i, i])))
            .collect();
        let sheet = contact_sheet(&tiles, 3, 1);
        assert_eq!(sheet.dimensions(), (3 * 3 + 2, 2 * 2 + 1));
        assert_eq!(sheet.get_pixel(4, 0), &Rgb([1, 1, 1]));
        assert_eq!(sheet.get_pixel(3, 0), &Rgb([255, 255, 255]));
        assert_eq!(sheet.get_pixel(4, 3), &Rgb([4, 4, 4]));
        assert_eq!(sheet.get_pixel(8, 4), &Rgb([255, 255, 255]));
        assert_eq!(sheet_columns(5), 3);
        assert_eq!(sheet_columns(8), 3);
        assert_eq!(sheet_columns(1), 1);
    }
}
