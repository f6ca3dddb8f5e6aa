//! The Attack tab's look inside the network: Grad-CAM of the source and of the target class
//! on the original and the adversarial photo, and how much each layer's activation changed
//! (relative L2), first layer to the logits: where a 4/255 change grows into a new class.

use eframe::egui::{self, vec2, Color32, TextureHandle};
use egui_plot::{Bar, BarChart, Plot};

use super::explore::looks::{colour_bar, heatmap_texture};
use super::widgets::bar_names;
use crate::labels::imagenet_label;
use crate::worker::{AttackResult, Fooling};

/// The four maps' textures, in [`Fooling`]'s order.
pub struct Inside {
    maps: [TextureHandle; 4],
}

impl Inside {
    /// The textures of `result`'s look inside, if it has one.
    pub fn new(ctx: &egui::Context, result: &AttackResult) -> Option<Self> {
        let f = result.fooling.as_ref()?;
        let (o, a) = (&result.original_view, &result.adversarial_view);
        let map =
            |name: &str, view, attribution| heatmap_texture(ctx, name, view, attribution, 0.5);
        Some(Self {
            maps: [
                map("inside-source-original", o, &f.source_original),
                map("inside-source-adversarial", a, &f.source_adversarial),
                map("inside-target-original", o, &f.target_original),
                map("inside-target-adversarial", a, &f.target_adversarial),
            ],
        })
    }

    /// Draws the maps (2 x 2) and the bar chart of layer changes.
    pub fn show(&self, ui: &mut egui::Ui, result: &AttackResult) {
        let Some(f) = &result.fooling else { return };
        let target = result.target.unwrap_or(result.top_class);
        ui.strong("Inside the network");
        // Two rows of maps below their captions in the height left, and 40% of the width
        // (measured here: inside the row, the height available is the row's).
        let by_width = (ui.available_width() * 0.4) / 2.0 - 12.0;
        let by_height = (ui.available_height() - 32.0) / 2.0;
        let side = by_width.min(by_height).clamp(80.0, 200.0);
        ui.horizontal(|ui| {
            egui::Grid::new("inside-maps")
                .spacing(vec2(6.0, 4.0))
                .show(ui, |ui| {
                    ui.label("");
                    ui.strong("original");
                    ui.strong("adversarial");
                    ui.end_row();
                    for (row, class) in [(0, result.source), (1, target)] {
                        ui.label(format!("Grad-CAM of\n{}", imagenet_label(class)));
                        for col in 0..2 {
                            ui.add(
                                egui::Image::new(&self.maps[2 * row + col])
                                    .fit_to_exact_size(vec2(side, side)),
                            );
                        }
                        ui.end_row();
                    }
                });
            colour_bar(ui, false, 2.0 * side);
            ui.vertical(|ui| layer_changes(ui, f));
        });
    }
}

/// One bar per layer, the relative L2 change of its activation.
fn layer_changes(ui: &mut egui::Ui, f: &Fooling) {
    ui.label("How much each layer changed: L2(A_adv - A_orig) / L2(A_orig)");
    let bars: Vec<Bar> = f
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Bar::new(i as f64, f64::from(c.relative_l2))
                .name(&c.layer)
                .width(0.8)
                .fill(if c.layer == "logits" {
                    Color32::from_rgb(214, 96, 77)
                } else {
                    Color32::from_rgb(67, 147, 195)
                })
        })
        .collect();
    let names: Vec<String> = f.changes.iter().map(|c| c.layer.clone()).collect();
    Plot::new("inside-changes")
        .height(220.0)
        .include_y(0.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .x_axis_formatter(bar_names(names))
        .show(ui, |p| p.bar_chart(BarChart::new("relative change", bars)));
    if let (Some(first), Some(last)) = (f.changes.first(), f.changes.last()) {
        ui.weak(format!(
            "{}: {:.1}% changed; {}: {:.0}%",
            first.layer,
            first.relative_l2 * 100.0,
            last.layer,
            last.relative_l2 * 100.0
        ));
    }
}
