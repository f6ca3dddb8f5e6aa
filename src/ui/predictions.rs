//! The predictions panel: the photo's top-5 classes (ImageNet's, or a trained head's) with
//! probability bars.

use eframe::egui;

use crate::worker::ClassScore;

/// Draws `top5` ImageNet classes (most likely first) as labelled bars.
pub fn show(ui: &mut egui::Ui, top5: &[ClassScore]) {
    show_classes(ui, top5, "ImageNet class");
}

/// Draws `top` (most likely first) as labelled bars; `what` names the index on hover.
pub fn show_classes(ui: &mut egui::Ui, top5: &[ClassScore], what: &str) {
    if top5.is_empty() {
        ui.weak("No predictions.");
        return;
    }
    for (rank, p) in top5.iter().enumerate() {
        ui.horizontal(|ui| {
            let label = format!("{}. {}", rank + 1, p.label);
            let text = egui::RichText::new(label);
            ui.label(if rank == 0 { text.strong() } else { text })
                .on_hover_text(format!("{what} {}", p.index));
        });
        ui.add(
            egui::ProgressBar::new(p.prob.clamp(0.0, 1.0))
                .desired_height(10.0)
                .text(egui::RichText::new(format!("{:.1}%", p.prob * 100.0)).small()),
        );
    }
}
