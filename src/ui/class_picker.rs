//! A searchable ImageNet class picker: type part of a name (or an index), click a match.

use eframe::egui;

use crate::labels::{imagenet_classes, imagenet_label};

/// The picker's search text (the chosen class belongs to the panel's settings).
#[derive(Debug, Clone, Default)]
pub struct ClassPicker {
    pub query: String,
}

impl ClassPicker {
    /// Draws the search box and up to `rows` matches, a click choosing into `chosen`; `id`
    /// keeps two pickers apart.
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        id: &str,
        label: &str,
        rows: usize,
        chosen: &mut Option<usize>,
    ) {
        let heading = ui.label(label);
        ui.add(
            egui::TextEdit::singleline(&mut self.query)
                .id_salt((id, "search"))
                .hint_text("search: name or index"),
        )
        .labelled_by(heading.id);
        let query = self.query.trim().to_lowercase();
        let matches: Vec<usize> = imagenet_classes()
            .iter()
            .enumerate()
            .filter(|(i, name)| {
                query.is_empty() || name.to_lowercase().contains(&query) || i.to_string() == query
            })
            .map(|(i, _)| i)
            .collect();
        egui::ScrollArea::vertical()
            .id_salt((id, "matches"))
            .max_height(rows as f32 * 20.0)
            .show(ui, |ui| {
                for &i in matches.iter().take(200) {
                    let text = format!("{i}: {}", imagenet_label(i));
                    if ui.selectable_label(*chosen == Some(i), text).clicked() {
                        *chosen = Some(i);
                    }
                }
                if matches.is_empty() {
                    ui.weak("No class matches.");
                }
            });
        match *chosen {
            Some(c) => ui.label(format!("Chosen: {} ({c})", imagenet_label(c))),
            None => ui.weak("Choose a class."),
        };
    }
}
