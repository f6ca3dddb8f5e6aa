//! A layer's channels as one picture: each channel normalised on its own, coloured with a
//! perceptual colormap, and tiled into a near-square grid (the feature explorer's atlas).

use image::RgbImage;

use super::colormap::viridis;

/// One layer's activations for one image, as plain data.
#[derive(Debug, Clone)]
pub struct ChannelMaps {
    /// `[channels * height * width]`, channel-major.
    pub values: Vec<f32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ChannelMaps {
    /// The values of channel `c`, `[height * width]`.
    pub fn channel(&self, c: usize) -> &[f32] {
        let plane = self.height * self.width;
        &self.values[c * plane..(c + 1) * plane]
    }

    /// Mean activation of every channel, `[channels]`.
    pub fn channel_means(&self) -> Vec<f32> {
        (0..self.channels)
            .map(|c| {
                let ch = self.channel(c);
                ch.iter().sum::<f32>() / ch.len().max(1) as f32
            })
            .collect()
    }
}

/// Columns and rows of a near-square grid of `n` cells.
pub fn grid_shape(n: usize) -> (usize, usize) {
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    (cols, n.div_ceil(cols).max(1))
}

/// Renders every channel of `maps` into one grid image: channel `c` at cell `c` (row-major),
/// cells separated by a 1-pixel gap, each cell scaled up (nearest) to at least `min_cell` pixels.
///
/// A vector layer (1x1 maps, e.g. `fc6`) is drawn as one square image of its values,
/// normalised together, since per-channel normalisation of single values says nothing.
pub fn render_grid(maps: &ChannelMaps, min_cell: usize) -> RgbImage {
    if maps.height * maps.width == 1 {
        let (cols, rows) = grid_shape(maps.channels);
        let flat = ChannelMaps {
            values: maps.values.clone(),
            channels: 1,
            height: rows,
            width: cols,
        };
        let mut padded = flat.values;
        padded.resize(rows * cols, f32::NAN);
        return render_grid(
            &ChannelMaps {
                values: padded,
                ..flat
            },
            min_cell,
        );
    }
    let (cols, rows) = grid_shape(maps.channels);
    let scale = min_cell.div_ceil(maps.height.max(maps.width)).max(1);
    let (cell_w, cell_h) = (maps.width * scale, maps.height * scale);
    let gap = usize::from(maps.channels > 1);
    let out_w = cols * cell_w + (cols - 1) * gap;
    let out_h = rows * cell_h + (rows - 1) * gap;
    let mut out = RgbImage::from_pixel(out_w as u32, out_h as u32, image::Rgb([24, 24, 24]));
    for c in 0..maps.channels {
        let ch = maps.channel(c);
        let (lo, hi) = finite_range(ch);
        let span = if hi > lo { hi - lo } else { 1.0 };
        let (ox, oy) = ((c % cols) * (cell_w + gap), (c / cols) * (cell_h + gap));
        for y in 0..cell_h {
            for x in 0..cell_w {
                let v = ch[(y / scale) * maps.width + x / scale];
                let px = if v.is_finite() {
                    viridis((v - lo) / span)
                } else {
                    [24, 24, 24]
                };
                out.put_pixel((ox + x) as u32, (oy + y) as u32, image::Rgb(px));
            }
        }
    }
    out
}

fn finite_range(values: &[f32]) -> (f32, f32) {
    values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_channels_and_normalises_each() {
        // Two channels of 2x2; channel 1 is channel 0 times 1000: same picture once normalised.
        let base = [0.0, 1.0, 2.0, 3.0];
        let mut values = base.to_vec();
        values.extend(base.iter().map(|v| v * 1000.0));
        let maps = ChannelMaps {
            values,
            channels: 2,
            height: 2,
            width: 2,
        };
        let img = render_grid(&maps, 2);
        assert_eq!(img.dimensions(), (2 * 2 + 1, 2));
        assert_eq!(img.get_pixel(0, 0), img.get_pixel(3, 0));
        assert_eq!(img.get_pixel(1, 1), img.get_pixel(4, 1));
        assert_ne!(img.get_pixel(0, 0), img.get_pixel(1, 1));
        assert_eq!(maps.channel_means(), vec![1.5, 1500.0]);
    }

    #[test]
    fn grid_shape_is_near_square() {
        assert_eq!(grid_shape(64), (8, 8));
        assert_eq!(grid_shape(512), (23, 23));
        assert_eq!(grid_shape(1), (1, 1));
        assert_eq!(grid_shape(3), (2, 2));
    }
}
