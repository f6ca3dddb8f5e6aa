//! The channel grid in a pane of a given size: tiles as large as fit without scrolling for
//! 16, 64 and 512 channels, and dead channels marked.

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

use super::*;
use crate::vision::atlas::{build_atlas, channel_stats};
use crate::vision::grid::ChannelMaps;

/// A layer of `channels` 4x4 maps; every fifth channel constant (dead).
fn layer(channels: usize) -> LayerMaps {
    let values: Vec<f32> = (0..channels * 16)
        .map(|i| {
            if (i / 16) % 5 == 4 {
                0.0
            } else {
                (i % 16) as f32
            }
        })
        .collect();
    let maps = ChannelMaps {
        values,
        channels,
        height: 4,
        width: 4,
    };
    let stats = channel_stats(&maps);
    let atlas = build_atlas(&maps, &stats);
    LayerMaps {
        name: "test".into(),
        kind: TapKind::Conv,
        shape: vec![channels, 4, 4],
        channels,
        height: 4,
        width: 4,
        values: maps.values,
        stats,
        atlas,
        receptive_field: None,
    }
}

const PANE: egui::Vec2 = egui::vec2(900.0, 600.0);

/// The grid of `n` channels fitted to [`PANE`]: each tile's rectangle.
fn tiles(n: usize) -> Vec<Rect> {
    let layer = layer(n);
    let ordered: Vec<usize> = (0..n).collect();
    let mut texture = None;
    let mut h = Harness::builder().with_size(PANE).build_ui(|ui| {
        let tex = texture.get_or_insert_with(|| {
            let a = &layer.atlas;
            let image = ColorImage::from_rgba_unmultiplied([a.width, a.height], &a.rgba);
            ui.ctx()
                .load_texture("atlas", image, TextureOptions::NEAREST)
        });
        let tile = fitting_tile(n, ui.available_size());
        channel_grid(ui, &layer, tex, &ordered, tile);
    });
    h.run();
    (0..n)
        .map(|c| {
            h.query_by_label(&format!("channel {c}"))
                .unwrap_or_else(|| panic!("channel {c} of {n} is drawn"))
                .rect()
        })
        .collect()
}

#[test]
fn tiles_fill_the_pane_for_16_64_and_512_channels() {
    for (n, at_least) in [(16, 120.0), (64, 60.0), (512, 24.0)] {
        let rects = tiles(n);
        let side = rects[0].width();
        assert!(side >= at_least, "{n} channels: tiles of {side} points");
        // All of them visible at once: nothing below the pane.
        let bottom = rects.iter().map(|r| r.bottom()).fold(0.0, f32::max);
        let right = rects.iter().map(|r| r.right()).fold(0.0, f32::max);
        assert!(bottom <= PANE.y && right <= PANE.x, "{n}: {right}x{bottom}");
        // And as large as that allows: one point more would not fit.
        let inner = egui::vec2(PANE.x - 16.0, PANE.y - 16.0);
        let bigger = fitting_tile(n, inner) + 1.0;
        let columns = ((inner.x + TILE_SPACING) / (bigger + TILE_SPACING)).floor();
        let rows = (n as f32 / columns).ceil();
        assert!(
            rows * (bigger + TILE_SPACING) - TILE_SPACING > inner.y,
            "{n}: {bigger} would fit too"
        );
        // The pane is filled: the grid's last row reaches down at least half of it.
        assert!(bottom >= PANE.y * 0.5, "{n}: the grid ends at {bottom}");
    }
}

#[test]
fn fitting_stays_within_the_sliders_range() {
    assert_eq!(fitting_tile(1, egui::vec2(4000.0, 4000.0)), 256.0);
    assert_eq!(fitting_tile(100_000, PANE), 24.0);
    assert_eq!(fitting_tile(16, egui::vec2(0.0, 0.0)), 24.0);
}

#[test]
fn constant_channels_are_dead() {
    let l = layer(10);
    let dead: Vec<usize> = (0..10).filter(|&c| is_dead(&l.stats[c])).collect();
    assert_eq!(dead, [4, 9]);
}
