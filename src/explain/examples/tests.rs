use image::{Rgb, RgbImage};

use super::*;

fn tiny_crop() -> ([u32; 4], [u32; 4], RgbImage) {
    ([0; 4], [0, 0, 1, 1], RgbImage::new(1, 1))
}

#[test]
fn a_channel_keeps_its_strongest_photos_in_order() {
    let mut best = Vec::new();
    let mut crops = 0;
    for (photo, value) in [
        (0, 1.0),
        (1, 3.0),
        (2, 2.0),
        (3, 3.0),
        (4, 0.5),
        (5, f32::NEG_INFINITY),
    ] {
        offer(&mut best, 3, photo, value, [0, 0], || {
            crops += 1;
            tiny_crop()
        });
    }
    let kept: Vec<(usize, f32)> = best.iter().map(|e| (e.photo, e.value)).collect();
    // Ties keep the earlier photo first; photo 4 never beat the third, so it was never cut.
    assert_eq!(kept, [(1, 3.0), (3, 3.0), (2, 2.0)]);
    assert_eq!(crops, 4);
}

/// A 224-pixel view whose pixel (x, y) is (x, y, 0).
fn view() -> RgbImage {
    RgbImage::from_fn(224, 224, |x, y| Rgb([x as u8, y as u8, 0]))
}

#[test]
fn a_small_field_is_shown_with_context_and_boxed() {
    // VGG-16's conv1_1: 3 pixels, stride 1, starting one pixel before the image.
    let field = ReceptiveField {
        size: 3,
        stride: 1,
        offset: -1,
        cells: 224,
        global: false,
    };
    let (f, window, crop) = cut(&view(), &field, [100, 50]);
    assert_eq!(f, [49, 99, 52, 102]);
    assert_eq!(window, [50 - 16, 100 - 16, 50 + 16, 100 + 16]);
    assert_eq!(crop.dimensions(), (CROP_SIDE, CROP_SIDE));
    // The crop's top-left pixel is the window's (resampled: within a level).
    let [r, g, _] = crop.get_pixel(0, 0).0;
    assert!(r.abs_diff(34) <= 1 && g.abs_diff(84) <= 1, "{r} {g}");
    // In a corner the window is shifted inside the view.
    let (f, window, _) = cut(&view(), &field, [0, 0]);
    assert_eq!((f, window), ([0, 0, 2, 2], [0, 0, 32, 32]));
}

#[test]
fn a_large_field_is_clipped_to_the_view() {
    // conv5_3: 196 pixels at stride 16 from -90.
    let field = ReceptiveField {
        size: 196,
        stride: 16,
        offset: -90,
        cells: 14,
        global: false,
    };
    let (f, window, _) = cut(&view(), &field, [0, 13]);
    assert_eq!(f, [118, 0, 224, 106]);
    // Square, as wide as the clipped field's longer side, inside the view.
    assert_eq!(window, [118, 0, 224, 106]);
    let e = ChannelExample {
        photo: 0,
        value: 1.0,
        cell: [0, 13],
        field: f,
        window,
        crop: RgbImage::new(CROP_SIDE, CROP_SIDE),
    };
    // The field fills the crop: no box is drawn.
    assert_eq!(e.boxed([255, 0, 0]), e.crop);
}

#[test]
fn the_box_outlines_the_field_inside_the_crop() {
    let e = ChannelExample {
        photo: 0,
        value: 1.0,
        cell: [0, 0],
        field: [8, 8, 16, 16],
        window: [0, 0, 32, 32],
        crop: RgbImage::new(CROP_SIDE, CROP_SIDE),
    };
    assert_eq!(e.field_in_crop(), [16.0, 16.0, 32.0, 32.0]);
    let boxed = e.boxed([255, 0, 0]);
    assert_eq!(boxed.get_pixel(16, 16).0, [255, 0, 0]);
    assert_eq!(boxed.get_pixel(31, 20).0, [255, 0, 0]);
    assert_eq!(boxed.get_pixel(20, 20).0, [0, 0, 0]);
    assert_eq!(boxed.get_pixel(40, 40).0, [0, 0, 0]);
}
