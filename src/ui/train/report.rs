//! The Train tab's view: the comparison's table, the live curves, and after training the
//! confusion matrix, per-class accuracy and the misclassified photos (a click opens one in
//! Explore).

use eframe::egui::{self, Color32};
use egui_plot::{Legend, Line, Plot, VLine};

use super::{best_epoch, TrainPanel};
use crate::ui::command::{AppCommand, Commands};
use crate::ui::panel::Tab;
use crate::worker::{EpochMetrics, PhotoSource};

impl TrainPanel {
    /// The curves, and after training the confusion matrix, per-class accuracy and mistakes.
    pub(super) fn results(&mut self, ui: &mut egui::Ui, commands: &mut Commands) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            if !self.compare.rows().is_empty() {
                self.compare.view(ui);
                ui.separator();
            }
            self.curves(ui);
            let Some(finished) = &mut self.finished else {
                if self.running.is_none() && self.epoch_rows.is_empty() {
                    ui.add_space(12.0);
                    ui.weak(
                        "Choose a folder with one sub-folder per class (or Oxford-IIIT Pet's \
                         images/, or Cats-vs-Dogs' PetImages/), then press Start training.",
                    );
                }
                return;
            };
            let r = &finished.report;
            ui.add_space(8.0);
            ui.heading(format!(
                "Validation accuracy {:.1}% (best epoch {})",
                r.val_accuracy * 100.0,
                r.best_epoch
            ));
            let features = if r.features_computed > 0 {
                format!(
                    "{} features computed at {:.1} images/s, {} from the cache",
                    r.features_computed, r.images_per_s, r.features_from_cache
                )
            } else {
                format!("all {} features from the cache", r.features_from_cache)
            };
            ui.label(format!(
                "{} training and {} validation photos; {features}.",
                r.train_count, r.val_count
            ));
            if !r.unreadable.is_empty() {
                let listed: Vec<String> = r
                    .unreadable
                    .iter()
                    .take(12)
                    .map(|(p, why)| format!("{}: {why}", p.display()))
                    .collect();
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "{} files were skipped (unreadable photos, links, shared files; \
                         hover for each reason)",
                        r.unreadable.len()
                    ),
                )
                .on_hover_text(listed.join("\n"));
            }
            ui.add_space(6.0);
            ui.columns(2, |cols| {
                cols[0].strong("Confusion matrix (rows: true class, columns: predicted)");
                let chosen = finished.review.cell;
                if let Some(cell) =
                    confusion_heatmap(&mut cols[0], &r.classes, &r.confusion, chosen)
                {
                    finished.review.cell = Some(cell);
                }
                cols[1].strong("Per class");
                per_class_accuracy(&mut cols[1], &r.classes, &r.confusion);
                most_confused(&mut cols[1], &r.classes, &r.confusion);
            });
            ui.add_space(8.0);
            let on_map = super::map::dataset_map(
                ui,
                &mut finished.map,
                &r.classes,
                &r.map,
                finished.review.textures(),
                commands,
            );
            if let Some(path) = &on_map.hovered {
                finished.review.want(path, commands);
            }
            ui.add_space(8.0);
            let open = finished.review.view(ui, r, commands).or(on_map.open);
            if let Some(path) = open {
                commands.push(AppCommand::ShowTab(Tab::Explore));
                commands.push(AppCommand::OpenPhoto(PhotoSource::File(path)));
            }
        });
    }

    fn curves(&self, ui: &mut egui::Ui) {
        let best = self
            .finished
            .as_ref()
            .map(|f| f.report.best_epoch)
            .or_else(|| best_epoch(&self.epoch_rows));
        let series = |f: fn(&EpochMetrics) -> f32| -> Vec<[f64; 2]> {
            self.epoch_rows
                .iter()
                .map(|r| [r.epoch as f64, f64::from(f(r))])
                .collect()
        };
        let height = 180.0;
        let steps = self.steps.clone();
        ui.columns(3, |cols| {
            cols[0].strong("Loss per step");
            Plot::new("train-steps")
                .height(height)
                .include_y(0.0)
                .allow_drag(false)
                .allow_zoom(false)
                .show(&mut cols[0], |p| {
                    p.line(Line::new("mini-batch loss", steps))
                });
            cols[1].strong("Loss per epoch");
            Plot::new("train-loss")
                .height(height)
                .include_y(0.0)
                .legend(Legend::default())
                .allow_drag(false)
                .allow_zoom(false)
                .show(&mut cols[1], |p| {
                    p.line(Line::new("train", series(|r| r.train_loss)));
                    p.line(Line::new("validation", series(|r| r.val_loss)));
                    if let Some(b) = best {
                        p.vline(VLine::new("best epoch", b as f64));
                    }
                });
            cols[2].strong("Accuracy per epoch");
            Plot::new("train-acc")
                .height(height)
                .include_y(0.0)
                .include_y(1.0)
                .legend(Legend::default())
                .allow_drag(false)
                .allow_zoom(false)
                .show(&mut cols[2], |p| {
                    p.line(Line::new("train", series(|r| r.train_acc)));
                    p.line(Line::new("validation", series(|r| r.val_acc)));
                    if let Some(b) = best {
                        p.vline(VLine::new("best epoch", b as f64));
                    }
                });
        });
    }
}

/// The confusion matrix as a heatmap: each row coloured by the share of its true class that
/// went to each prediction, counts written in cells large enough, class names on the rows;
/// `chosen` outlined. Returns the cell `(true, predicted)` clicked.
fn confusion_heatmap(
    ui: &mut egui::Ui,
    classes: &[String],
    confusion: &[Vec<usize>],
    chosen: Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    let k = classes.len().min(confusion.len());
    if k == 0 {
        return None;
    }
    let label_width = 110.0;
    let header = 16.0;
    let cell = ((ui.available_width() - label_width) / k as f32).clamp(6.0, 40.0);
    let size = egui::vec2(label_width + cell * k as f32, header + cell * k as f32);
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::click());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Grid, true, "confusion matrix"));
    let painter = ui.painter_at(rect);
    let visuals = ui.visuals();
    let (low, high) = (visuals.extreme_bg_color, visuals.selection.bg_fill);
    let text_colour = visuals.strong_text_color();
    let font = egui::FontId::proportional((cell * 0.45).clamp(8.0, 13.0));
    let origin = rect.min + egui::vec2(label_width, header);
    for (t, row) in confusion.iter().take(k).enumerate() {
        let total: usize = row.iter().sum();
        let y = origin.y + t as f32 * cell;
        painter.text(
            egui::pos2(origin.x - 4.0, y + cell / 2.0),
            egui::Align2::RIGHT_CENTER,
            truncate(&classes[t], 16),
            egui::FontId::proportional(cell.clamp(8.0, 13.0)),
            visuals.text_color(),
        );
        for (p, &n) in row.iter().take(k).enumerate() {
            let share = if total > 0 {
                n as f32 / total as f32
            } else {
                0.0
            };
            let cell_rect = egui::Rect::from_min_size(
                egui::pos2(origin.x + p as f32 * cell, y),
                egui::vec2(cell, cell),
            )
            .shrink(0.5);
            painter.rect_filled(cell_rect, 1.0, lerp_colour(low, high, share));
            if cell >= 18.0 && n > 0 {
                painter.text(
                    cell_rect.center(),
                    egui::Align2::CENTER_CENTER,
                    n.to_string(),
                    font.clone(),
                    text_colour,
                );
            }
        }
    }
    if cell >= 14.0 {
        for (p, name) in classes.iter().take(k).enumerate() {
            painter.text(
                egui::pos2(
                    origin.x + (p as f32 + 0.5) * cell,
                    rect.min.y + header / 2.0,
                ),
                egui::Align2::CENTER_CENTER,
                truncate(name, (cell / 7.0) as usize),
                egui::FontId::proportional(10.0),
                visuals.weak_text_color(),
            );
        }
    }
    let origin_cell = |pos: egui::Pos2| {
        let rel = pos - origin;
        let (p, t) = ((rel.x / cell) as usize, (rel.y / cell) as usize);
        (rel.x >= 0.0 && rel.y >= 0.0 && p < k && t < k).then_some((t, p))
    };
    if let Some((t, p)) = chosen.filter(|&(t, p)| t < k && p < k) {
        let at = egui::pos2(origin.x + p as f32 * cell, origin.y + t as f32 * cell);
        painter.rect_stroke(
            egui::Rect::from_min_size(at, egui::vec2(cell, cell)),
            1.0,
            egui::Stroke::new(2.0, visuals.strong_text_color()),
            egui::StrokeKind::Inside,
        );
    }
    let clicked = response
        .interact_pointer_pos()
        .filter(|_| response.clicked())
        .and_then(origin_cell);
    if let Some((t, p)) = response.hover_pos().and_then(origin_cell) {
        let n = confusion[t][p];
        response.on_hover_text_at_pointer(format!(
            "true {}, predicted {}: {n} photo{}\nClick to see them",
            classes[t],
            classes[p],
            if n == 1 { "" } else { "s" }
        ));
    }
    clicked
}

/// Each class's validation scores from the confusion matrix: recall (the diagonal over its
/// row: the class's accuracy) as a bar with the photos right, then precision and F1.
fn per_class_accuracy(ui: &mut egui::Ui, classes: &[String], confusion: &[Vec<usize>]) {
    let scores = crate::train::metrics::per_class(confusion);
    egui::Grid::new("per-class-accuracy")
        .striped(true)
        .show(ui, |ui| {
            ui.label("");
            ui.label("right");
            ui.label("recall")
                .on_hover_text("the share of the class's photos found");
            ui.label("precision")
                .on_hover_text("the share of the photos called this class that are");
            ui.label("F1")
                .on_hover_text("the harmonic mean of precision and recall");
            ui.end_row();
            for (t, (name, row)) in classes.iter().zip(confusion).enumerate() {
                let total = scores.support.get(t).copied().unwrap_or(0);
                let right = row.get(t).copied().unwrap_or(0);
                let score = |v: &[f32]| v.get(t).copied().unwrap_or(0.0);
                let recall = score(&scores.recall);
                ui.label(name);
                ui.label(format!("{right}/{total}"));
                ui.add(
                    egui::ProgressBar::new(recall)
                        .desired_width(100.0)
                        .text(format!("{:.0}%", recall * 100.0)),
                );
                ui.label(format!("{:.0}%", score(&scores.precision) * 100.0));
                ui.label(format!("{:.2}", score(&scores.f1)));
                ui.end_row();
            }
        });
}

/// The five most confused pairs of classes, as "true -> predicted: count".
fn most_confused(ui: &mut egui::Ui, classes: &[String], confusion: &[Vec<usize>]) {
    let pairs = crate::train::metrics::most_confused(confusion, 5);
    if pairs.is_empty() {
        return;
    }
    ui.add_space(6.0);
    ui.strong("Most confused (true, seen as)");
    let name = |c: usize| classes.get(c).map_or("?", String::as_str);
    for p in pairs {
        ui.label(format!(
            "{}, seen as {}: {} photo{}",
            name(p.truth),
            name(p.predicted),
            p.count,
            if p.count == 1 { "" } else { "s" }
        ));
    }
}

fn lerp_colour(a: Color32, b: Color32, t: f32) -> Color32 {
    let mix = |x: u8, y: u8| (f32::from(x) + (f32::from(y) - f32::from(x)) * t).round() as u8;
    Color32::from_rgb(mix(a.r(), b.r()), mix(a.g(), b.g()), mix(a.b(), b.b()))
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_with_an_ellipsis() {
        assert_eq!(truncate("Abyssinian", 20), "Abyssinian");
        assert_eq!(truncate("Abyssinian", 5), "Abys…");
    }
}
