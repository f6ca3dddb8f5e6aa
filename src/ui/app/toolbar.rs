//! The window's frame around the tabs: the toolbar (tabs, Open, Paste, model and device
//! pickers), the notice under it, and the status bar.

use eframe::egui;

use super::{device_choices, ExplorerApp, Tab};
use crate::ui::command::AppCommand;
use crate::ui::message::message;
use crate::ui::widgets::busy_indicator;

impl ExplorerApp {
    /// Draws the toolbar, the notice and the status bar; returns what they asked for.
    pub(super) fn toolbar(&mut self, ui: &mut egui::Ui) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        egui::Panel::top("toolbar").show(ui, |ui| {
            ui.add_space(4.0);
            self.toolbar_row(ui, &mut commands);
            if let Some(notice) = &self.notice {
                // The message wraps in the width left of the button: never off the window.
                ui.horizontal_top(|ui| {
                    let width = (ui.available_width() - 90.0).max(120.0);
                    ui.allocate_ui(egui::vec2(width, 0.0), |ui| {
                        message(ui, &notice.text, Some(ui.visuals().warn_fg_color));
                    });
                    if ui.small_button("Dismiss").clicked() {
                        commands.push(AppCommand::DismissNotice);
                    }
                });
            }
            ui.add_space(2.0);
        });
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        commands
    }

    fn toolbar_row(&mut self, ui: &mut egui::Ui, commands: &mut Vec<AppCommand>) {
        ui.horizontal(|ui| {
            for tab in Tab::ALL {
                ui.selectable_value(&mut self.tab, tab, tab.label());
            }
            ui.separator();
            if ui
                .button("Open…")
                .on_hover_text("Open a photo (or drop one on the window)")
                .clicked()
            {
                commands.push(AppCommand::OpenDialog);
            }
            if ui
                .button("Paste")
                .on_hover_text("Paste an image or a file path (Ctrl+V)")
                .clicked()
            {
                commands.push(AppCommand::Paste);
            }
            ui.separator();
            let current = self.models.current_name().unwrap_or("none").to_string();
            let model_label = ui.label("Model");
            egui::ComboBox::from_id_salt("model")
                .selected_text(current.clone())
                .show_ui(ui, |ui| {
                    for m in self.models.catalogue() {
                        let text = if m.present {
                            m.name.clone()
                        } else {
                            format!("{} (not installed)", m.name)
                        };
                        if ui.selectable_label(m.name == current, text).clicked() {
                            commands.push(AppCommand::UseModel(m.name.clone()));
                        }
                    }
                    ui.separator();
                    if ui.button("Manage models…").clicked() {
                        commands.push(AppCommand::ShowModels(true));
                    }
                })
                .response
                .labelled_by(model_label.id);
            let device = self.models.device();
            let device_label = ui.label("Device");
            egui::ComboBox::from_id_salt("device")
                .selected_text(device.to_string())
                .show_ui(ui, |ui| {
                    for choice in device_choices() {
                        if ui
                            .selectable_label(choice == device, choice.to_string())
                            .clicked()
                            && choice != device
                        {
                            commands.push(AppCommand::UseDevice(choice));
                        }
                    }
                })
                .response
                .labelled_by(device_label.id);
            if let Some(m) = self.models.loaded() {
                ui.weak(format!("on {}", m.device));
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .button("Keys")
                    .on_hover_text("The keys (F1 or ?)")
                    .clicked()
                {
                    self.help_open = !self.help_open;
                }
            });
        });
    }

    fn status_bar(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if let Some(name) = self.models.loading() {
                busy_indicator(ui);
                ui.label(format!("Loading {name}…"));
            } else if let Some(photo) = self.explore.analysing() {
                busy_indicator(ui);
                ui.label(format!("Running the model on {}…", photo.name()));
            } else if let Some(a) = self.explore.analysis() {
                ui.label(format!(
                    "{}: {}×{} photo, forward pass {:.0} ms, all layers ready in {:.0} ms",
                    a.photo_name, a.original_width, a.original_height, a.forward_ms, a.total_ms
                ));
            } else {
                ui.label("Drop a photo on the window, or use Open….");
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if let Some(ms) = self.frame_stats.last_ms {
                    ui.weak(format!("UI {ms:.1} ms/frame"));
                }
            });
        });
    }
}
