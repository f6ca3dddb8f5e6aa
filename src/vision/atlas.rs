//! The feature explorer's atlas: all channels of one layer tiled into a single RGBA image,
//! each channel normalised to its own range and coloured with viridis, plus the per-channel
//! statistics the explorer sorts and labels by. One texture per layer, not one per channel.

use super::colormap::viridis;
use super::grid::{grid_shape, ChannelMaps};

/// Minimum, maximum and mean of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelStats {
    pub min: f32,
    pub max: f32,
    pub mean: f32,
}

/// Statistics of every channel of `maps`, `[channels]`; non-finite values are ignored.
pub fn channel_stats(maps: &ChannelMaps) -> Vec<ChannelStats> {
    (0..maps.channels)
        .map(|c| {
            let (mut min, mut max, mut sum, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0);
            for &v in maps.channel(c).iter().filter(|v| v.is_finite()) {
                min = min.min(v);
                max = max.max(v);
                sum += f64::from(v);
                n += 1;
            }
            if n == 0 {
                ChannelStats {
                    min: 0.0,
                    max: 0.0,
                    mean: 0.0,
                }
            } else {
                ChannelStats {
                    min,
                    max,
                    mean: (sum / f64::from(n)) as f32,
                }
            }
        })
        .collect()
}

/// How the atlas lays out a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtlasLayout {
    /// One tile per channel (`tile_width x tile_height` pixels each), row-major, no gaps.
    Tiles,
    /// A vector layer (1x1 maps): one pixel per unit in a near-square grid, all units
    /// normalised together (per-unit normalisation of a single value says nothing).
    Units,
}

/// An RGBA8 image of a layer's channels.
#[derive(Debug, Clone)]
pub struct Atlas {
    pub layout: AtlasLayout,
    /// Atlas size in pixels.
    pub width: usize,
    pub height: usize,
    /// Grid of tiles (or of units).
    pub columns: usize,
    pub rows: usize,
    /// One tile's size in pixels (1x1 for [`AtlasLayout::Units`]).
    pub tile_width: usize,
    pub tile_height: usize,
    /// `[height * width * 4]`, row-major RGBA; unused cells are transparent.
    pub rgba: Vec<u8>,
}

impl Atlas {
    /// The normalised texture rectangle `[u0, v0, u1, v1]` of channel `c`'s tile.
    pub fn uv_rect(&self, c: usize) -> [f32; 4] {
        let (col, row) = (c % self.columns, c / self.columns);
        let (w, h) = (self.width as f32, self.height as f32);
        let x0 = (col * self.tile_width) as f32;
        let y0 = (row * self.tile_height) as f32;
        [
            x0 / w,
            y0 / h,
            (x0 + self.tile_width as f32) / w,
            (y0 + self.tile_height as f32) / h,
        ]
    }
}

/// Maps `v` in `[lo, hi]` to `[0, 1]`; a constant channel maps to 0.
fn unit(v: f32, lo: f32, hi: f32) -> f32 {
    if hi > lo && v.is_finite() {
        ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Viridis RGBA of `v` normalised to `[lo, hi]`.
pub fn colour(v: f32, lo: f32, hi: f32) -> [u8; 4] {
    let [r, g, b] = viridis(unit(v, lo, hi));
    [r, g, b, 255]
}

/// Builds the atlas of `maps` (`stats` from [`channel_stats`]).
pub fn build_atlas(maps: &ChannelMaps, stats: &[ChannelStats]) -> Atlas {
    let (columns, rows) = grid_shape(maps.channels);
    if maps.height * maps.width == 1 {
        let lo = stats.iter().map(|s| s.min).fold(f32::INFINITY, f32::min);
        let hi = stats
            .iter()
            .map(|s| s.max)
            .fold(f32::NEG_INFINITY, f32::max);
        let mut rgba = vec![0u8; columns * rows * 4];
        for (c, &v) in maps.values.iter().enumerate() {
            rgba[c * 4..c * 4 + 4].copy_from_slice(&colour(v, lo, hi));
        }
        return Atlas {
            layout: AtlasLayout::Units,
            width: columns,
            height: rows,
            columns,
            rows,
            tile_width: 1,
            tile_height: 1,
            rgba,
        };
    }
    let (tw, th) = (maps.width, maps.height);
    let width = columns * tw;
    let height = rows * th;
    let mut rgba = vec![0u8; width * height * 4];
    for (c, s) in stats.iter().enumerate().take(maps.channels) {
        let (x0, y0) = ((c % columns) * tw, (c / columns) * th);
        let plane = maps.channel(c);
        for y in 0..th {
            let row = &plane[y * tw..(y + 1) * tw];
            let start = ((y0 + y) * width + x0) * 4;
            for (x, &v) in row.iter().enumerate() {
                rgba[start + x * 4..start + x * 4 + 4].copy_from_slice(&colour(v, s.min, s.max));
            }
        }
    }
    Atlas {
        layout: AtlasLayout::Tiles,
        width,
        height,
        columns,
        rows,
        tile_width: tw,
        tile_height: th,
        rgba,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(channels: usize, height: usize, width: usize) -> ChannelMaps {
        ChannelMaps {
            values: (0..channels * height * width).map(|i| i as f32).collect(),
            channels,
            height,
            width,
        }
    }

    #[test]
    fn each_channel_spans_the_whole_colormap_in_its_tile() {
        let m = maps(5, 2, 3);
        let stats = channel_stats(&m);
        assert_eq!(stats[1].min, 6.0);
        assert_eq!(stats[1].max, 11.0);
        assert_eq!(stats[1].mean, 8.5);
        let atlas = build_atlas(&m, &stats);
        assert_eq!((atlas.columns, atlas.rows), (3, 2));
        assert_eq!((atlas.width, atlas.height), (9, 4));
        let px = |x: usize, y: usize| &atlas.rgba[(y * atlas.width + x) * 4..][..4];
        // Channel 1 sits at column 1: its first value is its minimum, its last its maximum.
        assert_eq!(px(3, 0), colour(0.0, 0.0, 1.0));
        assert_eq!(px(5, 1), colour(1.0, 0.0, 1.0));
        // The sixth cell is empty.
        assert_eq!(px(8, 3), [0, 0, 0, 0]);
        let [u0, v0, u1, v1] = atlas.uv_rect(4);
        assert_eq!((u0, v0, u1, v1), (3.0 / 9.0, 0.5, 6.0 / 9.0, 1.0));
    }

    #[test]
    fn a_vector_layer_is_one_pixel_per_unit_normalised_together() {
        let m = maps(10, 1, 1);
        let atlas = build_atlas(&m, &channel_stats(&m));
        assert_eq!(atlas.layout, AtlasLayout::Units);
        assert_eq!((atlas.width, atlas.height), (4, 3));
        assert_eq!(&atlas.rgba[..4], &colour(0.0, 0.0, 1.0));
        assert_eq!(&atlas.rgba[36..40], &colour(1.0, 0.0, 1.0));
    }

    #[test]
    fn constant_and_non_finite_channels_do_not_break_the_atlas() {
        let m = ChannelMaps {
            values: vec![2.0, 2.0, f32::NAN, 1.0],
            channels: 2,
            height: 1,
            width: 2,
        };
        let stats = channel_stats(&m);
        assert_eq!(stats[0].min, stats[0].max);
        assert_eq!(stats[1].mean, 1.0);
        let atlas = build_atlas(&m, &stats);
        assert!(atlas.rgba.chunks(4).all(|p| p[3] == 255));
    }
}
