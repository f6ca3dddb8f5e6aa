//! The Train tab's dataset map: every photo of the folder at the two principal components of
//! its frozen features, coloured by class, validation photos the head got wrong ringed.
//! Hover a point for its photo and classes; click it to open the photo in Explore. Classes that
//! separate on the map are the reason a linear head on frozen features works.

use std::collections::HashMap;
use std::path::PathBuf;

use eframe::egui::{self, Color32, TextureHandle};
use egui_plot::{Legend, MarkerShape, Plot, Points};

use crate::worker::MapPoint;

/// Legends beyond this many classes would hide the map: hover names the class instead.
const MAX_LEGEND: usize = 12;

/// A point nearer than this to the pointer (in screen pixels) is the one hovered.
const HOVER_PIXELS: f32 = 8.0;

/// Matplotlib's `tab20`, dark shades first: 20 classes that tell apart.
const PALETTE: [u32; 20] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22,
    0x17becf, 0xaec7e8, 0xffbb78, 0x98df8a, 0xff9896, 0xc5b0d5, 0xc49c94, 0xf7b6d2, 0xc7c7c7,
    0xdbdb8d, 0x9edae5,
];

/// Class `c`'s colour: `tab20`, then hues spread by the golden ratio (37 pet breeds).
pub(super) fn class_colour(c: usize) -> Color32 {
    match PALETTE.get(c) {
        Some(&rgb) => Color32::from_rgb((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8),
        None => egui::ecolor::Hsva::new((c as f32 * 0.618_034).fract(), 0.6, 0.85, 1.0).into(),
    }
}

/// What the user did on the map.
#[derive(Default)]
pub(super) struct MapAction {
    /// The photo under the pointer (its thumbnail is wanted).
    pub hovered: Option<PathBuf>,
    /// The photo clicked, to open in Explore.
    pub open: Option<PathBuf>,
}

/// Draws the map.
pub(super) fn dataset_map(
    ui: &mut egui::Ui,
    classes: &[String],
    points: &[MapPoint],
    thumbnails: &HashMap<PathBuf, TextureHandle>,
) -> MapAction {
    let mut action = MapAction::default();
    if points.is_empty() {
        return action;
    }
    let k = classes.len();
    let mistakes = points
        .iter()
        .filter(|p| p.predicted.is_some_and(|q| q != p.truth))
        .count();
    ui.strong("Dataset map: the frozen features, projected on their two principal components")
        .on_hover_text(
            "Each dot is a photo, coloured by its class (PCA of the features the head is \
             trained on). Classes that lie apart here are easy for a linear head. Validation \
             photos the head got wrong are ringed. Hover a dot for its photo; click to \
             open it in Explore; drag and scroll to move and zoom, double-click to reset.",
        );
    ui.weak(format!(
        "{} photos, {mistakes} validation mistakes ringed",
        points.len()
    ));
    let mut plot = Plot::new("train-dataset-map")
        .height(340.0)
        .show_x(false)
        .show_y(false)
        .show_axes([false, false])
        // The page scrolls over the map; ctrl-scroll (or drag) zooms and moves it.
        .allow_scroll(false);
    if k <= MAX_LEGEND {
        plot = plot.legend(Legend::default());
    }
    let ring = ui.visuals().strong_text_color();
    let mut hovered = None;
    let response = plot.show(ui, |plot_ui| {
        for (c, name) in classes.iter().enumerate() {
            let xy: Vec<[f64; 2]> = points
                .iter()
                .filter(|p| p.truth == c)
                .map(|p| [f64::from(p.xy[0]), f64::from(p.xy[1])])
                .collect();
            plot_ui.points(
                Points::new(name.as_str(), xy)
                    .color(class_colour(c))
                    .radius(2.5)
                    .shape(MarkerShape::Circle)
                    .filled(true)
                    .allow_hover(false),
            );
        }
        let wrong: Vec<[f64; 2]> = points
            .iter()
            .filter(|p| p.predicted.is_some_and(|q| q != p.truth))
            .map(|p| [f64::from(p.xy[0]), f64::from(p.xy[1])])
            .collect();
        plot_ui.points(
            Points::new("misclassified (ringed)", wrong)
                .color(ring)
                .radius(5.0)
                .shape(MarkerShape::Circle)
                .filled(false)
                .allow_hover(false),
        );
        if let Some(pointer) = plot_ui.pointer_coordinate() {
            let at = plot_ui.screen_from_plot(pointer);
            hovered = points
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let s = plot_ui.screen_from_plot(egui_plot::PlotPoint::new(p.xy[0], p.xy[1]));
                    (i, s.distance(at))
                })
                .filter(|&(_, d)| d <= HOVER_PIXELS)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i);
        }
    });
    let hovered = hovered.and_then(|i| points.get(i));
    let clicked = response.response.clicked();
    if let Some(p) = hovered {
        action.hovered = Some(p.path.clone());
        let name = |c: usize| classes.get(c).map_or("?", String::as_str);
        response.response.on_hover_ui_at_pointer(|ui| {
            if let Some(tex) = thumbnails.get(&p.path) {
                ui.add(egui::Image::new(tex).fit_to_exact_size(egui::vec2(96.0, 96.0)));
            }
            ui.label(p.path.display().to_string());
            ui.label(match p.predicted {
                Some(q) if q != p.truth => {
                    format!("{} (validation), seen as {}", name(p.truth), name(q))
                }
                Some(_) => format!("{} (validation, right)", name(p.truth)),
                None => format!("{} (training)", name(p.truth)),
            });
            ui.weak("Click to open it in Explore");
        });
        if clicked {
            action.open = Some(p.path.clone());
        }
    }
    action
}
