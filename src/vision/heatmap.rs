//! Attribution maps drawn over the photo the network saw: the map resized to the photo
//! (bilinear, PyTorch's `align_corners=False`), scaled to [0, 1] by its range (a signed map to
//! [-1, 1] by its largest magnitude, so 0 stays white) and blended with viridis or the
//! diverging map.

use image::{Rgb, RgbImage};

use super::colormap::{diverging, viridis};

/// A map to draw: `values` `[height, width]`, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Heatmap<'a> {
    pub values: &'a [f32],
    pub height: usize,
    pub width: usize,
    /// Drawn with the diverging map, 0 in the middle.
    pub signed: bool,
}

impl Heatmap<'_> {
    /// The values scaled for colouring: `[0, 1]` by min-max (pytorch-grad-cam's display
    /// normalisation), or `[-1, 1]` by the largest magnitude when signed. A constant map is 0.
    pub fn scaled(&self) -> Vec<f32> {
        let finite = || self.values.iter().copied().filter(|v| v.is_finite());
        if self.signed {
            let m = finite().fold(0f32, |m, v| m.max(v.abs()));
            return self
                .values
                .iter()
                .map(|v| if m > 0.0 { v / m } else { 0.0 })
                .collect();
        }
        let lo = finite().fold(f32::INFINITY, f32::min);
        let hi = finite().fold(f32::NEG_INFINITY, f32::max);
        let span = hi - lo;
        self.values
            .iter()
            .map(|v| if span > 0.0 { (v - lo) / span } else { 0.0 })
            .collect()
    }

    /// The colour of a scaled value.
    pub fn colour(&self, t: f32) -> [u8; 3] {
        if self.signed {
            diverging(t)
        } else {
            viridis(t)
        }
    }
}

/// Bilinear resize of a `[h, w]` map to `[out_h, out_w]` (PyTorch's `align_corners=False`).
pub fn upsample(map: &[f32], (h, w): (usize, usize), (out_h, out_w): (usize, usize)) -> Vec<f32> {
    if h == 0 || w == 0 || map.len() < h * w {
        return vec![0.0; out_h * out_w];
    }
    let coord = |o: usize, out: usize, size: usize| {
        let s = ((o as f32 + 0.5) * size as f32 / out as f32 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(size - 1);
        let i1 = (i0 + 1).min(size - 1);
        (i0, i1, s - i0 as f32)
    };
    let mut out = Vec::with_capacity(out_h * out_w);
    for oy in 0..out_h {
        let (y0, y1, fy) = coord(oy, out_h, h);
        for ox in 0..out_w {
            let (x0, x1, fx) = coord(ox, out_w, w);
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// `photo` with `map` blended over it: `opacity` 0 is the photo, 1 the map alone.
pub fn overlay(photo: &RgbImage, map: &Heatmap, opacity: f32) -> RgbImage {
    let (w, h) = (photo.width() as usize, photo.height() as usize);
    let scaled = map.scaled();
    let up = upsample(&scaled, (map.height, map.width), (h, w));
    let a = opacity.clamp(0.0, 1.0);
    let mut out = photo.clone();
    for (i, px) in out.pixels_mut().enumerate() {
        let c = map.colour(up[i]);
        *px = Rgb(std::array::from_fn(|k| {
            (f32::from(px.0[k]) * (1.0 - a) + f32::from(c[k]) * a).round() as u8
        }));
    }
    out
}

/// A vertical colour bar `width` x `height`, the high end at the top.
pub fn colour_bar(width: u32, height: u32, signed: bool) -> RgbImage {
    let map = Heatmap {
        values: &[],
        height: 0,
        width: 0,
        signed,
    };
    RgbImage::from_fn(width, height, |_, y| {
        let t = 1.0 - y as f32 / (height.max(2) - 1) as f32;
        Rgb(map.colour(if signed { 2.0 * t - 1.0 } else { t }))
    })
}

/// The overlay with a colour bar at its right, as `explain` writes it.
pub fn overlay_with_bar(photo: &RgbImage, map: &Heatmap, opacity: f32) -> RgbImage {
    let over = overlay(photo, map, opacity);
    let (w, h) = over.dimensions();
    let bar = colour_bar(12, h, map.signed);
    let gap = 4;
    let mut out = RgbImage::from_pixel(w + gap + bar.width(), h, Rgb([255, 255, 255]));
    image::imageops::replace(&mut out, &over, 0, 0);
    image::imageops::replace(&mut out, &bar, i64::from(w + gap), 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_matches_pytorch_bilinear_on_a_ramp() {
        // F.interpolate([[0, 1], [2, 3]], size=4, mode="bilinear", align_corners=False).
        let up = upsample(&[0.0, 1.0, 2.0, 3.0], (2, 2), (4, 4));
        let want = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (g, w) in up.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{up:?}");
        }
    }

    #[test]
    fn the_overlay_puts_the_maps_high_end_where_the_map_is_high() {
        let photo = RgbImage::from_pixel(8, 8, Rgb([128, 128, 128]));
        let values = [0.0, 0.0, 0.0, 4.0];
        let map = Heatmap {
            values: &values,
            height: 2,
            width: 2,
            signed: false,
        };
        let out = overlay(&photo, &map, 1.0);
        assert_eq!(out.get_pixel(7, 7).0, viridis(1.0));
        assert_eq!(out.get_pixel(0, 0).0, viridis(0.0));
        assert_eq!(overlay(&photo, &map, 0.0), photo);
        // A signed map keeps 0 white and its sign's colour.
        let signed = Heatmap {
            values: &[-2.0, 0.0, 0.0, 1.0],
            signed: true,
            ..map
        };
        assert_eq!(signed.scaled(), vec![-1.0, 0.0, 0.0, 0.5]);
        let bar = overlay_with_bar(&photo, &map, 0.5);
        assert_eq!(bar.dimensions(), (8 + 4 + 12, 8));
    }
}
