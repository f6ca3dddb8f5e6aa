//! The Train tab's settings column: the folder and its classes, the head's settings, the run
//! (start, cancel, progress), the backbone comparison's controls and the head in use.

use std::path::PathBuf;

use eframe::egui;

use super::TrainPanel;
use crate::ui::command::Commands;
use crate::ui::panel::PanelEnv;
use crate::ui::widgets::PendingPick;
use crate::worker::{Command, HeadKind, HeadSummary};

/// What the Train tab says when the native dialog cannot be shown.
const NO_DIALOG: &str = "The file dialog could not be shown on this desktop: type the path.";

impl TrainPanel {
    /// The settings, the folder's classes, and the run's progress.
    pub fn controls(&mut self, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands) {
        self.poll_dialogs(env, commands);
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Train a head");
            match env.model {
                Some(m) => ui.weak(format!(
                    "A new classifier on {}'s frozen features, for your own photos.",
                    m.name
                )),
                None => ui.weak("Load a model first."),
            };
            ui.add_space(6.0);
            self.folder_controls(ui, env, commands);
            ui.separator();
            self.settings_controls(ui, env);
            ui.separator();
            self.run_controls(ui, env, commands);
            ui.separator();
            let request = if self.running.is_some() {
                Err("Wait for the training to finish")
            } else if self.scanned.is_none() || self.scan_error.is_some() {
                Err("Choose a folder of photos first")
            } else if self.folder_edited() {
                Err("Press Enter in the folder box to read the new folder")
            } else {
                Ok(self.request(env))
            };
            self.compare.controls(ui, env.installed, request, commands);
            ui.separator();
            ui.strong("Head in use");
            match env.head {
                Some(h) => {
                    let acc = h
                        .val_accuracy
                        .map(|a| format!(", {:.1}% validation", a * 100.0))
                        .unwrap_or_default();
                    ui.label(format!(
                        "{} ({}, {} classes, {}{acc})",
                        h.name,
                        head_kind(h),
                        h.classes.len(),
                        h.backbone
                    ))
                    .on_hover_text(h.path.display().to_string());
                }
                None => {
                    ui.weak("None: the predictions panel shows ImageNet's classes.");
                }
            }
            ui.horizontal(|ui| {
                self.load_head_button(ui, env);
                self.export_button(ui, env);
            });
        });
    }

    fn load_head_button(&mut self, ui: &mut egui::Ui, env: &PanelEnv) {
        let loading = self.head_dialog.is_some() || self.head_job.is_some();
        if ui
            .add_enabled(!loading, egui::Button::new("Load head…"))
            .on_hover_text("Use a head saved earlier (.safetensors with its .json)")
            .clicked()
        {
            let start = env.heads_dir.to_path_buf();
            self.head_dialog = self.open_dialog(ui.ctx(), move || {
                let mut dialog = rfd::FileDialog::new()
                    .set_title("Load a trained head")
                    .add_filter("Head", &["safetensors"]);
                if start.is_dir() {
                    dialog = dialog.set_directory(&start);
                }
                dialog.pick_file()
            });
        }
    }

    /// "Export…": the head in use with its backbone, as ONNX or as safetensors for timm.
    fn export_button(&mut self, ui: &mut egui::Ui, env: &PanelEnv) {
        let busy = self.export_dialog.is_some() || self.export_job.is_some();
        let Some(head) = env.head else {
            ui.add_enabled(false, egui::Button::new("Export…"))
                .on_disabled_hover_text("Train or load a head first");
            return;
        };
        let button = ui
            .add_enabled(!busy, egui::Button::new("Export…"))
            .on_hover_text(
                "The whole classifier (backbone and head) as .onnx for any ONNX runtime, or as \
                 .safetensors with timm's names (EfficientNet-Lite)",
            );
        if button.clicked() {
            let start = env.heads_dir.to_path_buf();
            let name = format!("{}.onnx", head.name);
            self.export_dialog = self.open_dialog(ui.ctx(), move || {
                let mut dialog = rfd::FileDialog::new()
                    .set_title("Export the classifier")
                    .add_filter("ONNX", &["onnx"])
                    .add_filter("safetensors (timm)", &["safetensors"])
                    .set_file_name(name);
                if start.is_dir() {
                    dialog = dialog.set_directory(&start);
                }
                dialog.save_file()
            });
        }
    }

    fn folder_controls(&mut self, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands) {
        ui.strong("Photos");
        ui.horizontal(|ui| {
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.folder)
                    .hint_text("a folder of class folders")
                    .desired_width(ui.available_width() - 80.0),
            );
            if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                let dir = PathBuf::from(self.folder.trim());
                self.set_folder(&dir, env, commands);
            }
            if ui
                .add_enabled(self.folder_dialog.is_none(), egui::Button::new("Choose…"))
                .on_hover_text("Pick the folder (or drop it on the window)")
                .clicked()
            {
                self.folder_dialog = self.open_dialog(ui.ctx(), || {
                    rfd::FileDialog::new()
                        .set_title("Choose a folder of labelled photos")
                        .pick_folder()
                });
            }
        });
        if ui
            .checkbox(
                &mut self.settings.head.cats_vs_dogs,
                "Oxford-IIIT Pet: cat vs dog",
            )
            .on_hover_text("Group Oxford-IIIT Pet's 37 breeds into cat (capitalised names) and dog")
            .changed()
            && !self.folder.trim().is_empty()
        {
            self.scan(commands);
        }
        if self.scan_job.is_some() {
            ui.weak("Reading the folder…");
        }
        if let Some(error) = &self.scan_error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
        if let Some(s) = &self.scanned {
            let total: usize = s.counts.iter().sum();
            ui.label(format!(
                "{total} photos in {} classes ({})",
                s.classes.len(),
                s.layout
            ));
            egui::ScrollArea::vertical()
                .id_salt("class-counts")
                .max_height(160.0)
                .show(ui, |ui| {
                    egui::Grid::new("class-counts-grid")
                        .striped(true)
                        .show(ui, |ui| {
                            for (name, n) in s.classes.iter().zip(&s.counts) {
                                ui.label(name);
                                ui.label(n.to_string());
                                ui.end_row();
                            }
                        });
                });
            if !s.skipped.is_empty() {
                let listed: Vec<String> = s
                    .skipped
                    .iter()
                    .take(12)
                    .map(|(p, why)| format!("{}: {why}", p.display()))
                    .collect();
                ui.weak(format!(
                    "{} files skipped (empty or not images)",
                    s.skipped.len()
                ))
                .on_hover_text(listed.join("\n"));
            }
        }
    }

    fn settings_controls(&mut self, ui: &mut egui::Ui, env: &PanelEnv) {
        let idle = self.running.is_none();
        ui.add_enabled_ui(idle, |ui| {
            ui.strong("Head");
            ui.horizontal(|ui| {
                let mut mlp = self.settings.head.mlp_hidden.is_some();
                ui.radio_value(&mut mlp, false, "Linear");
                ui.radio_value(&mut mlp, true, "MLP");
                self.settings.head.mlp_hidden = mlp.then_some(self.settings.hidden);
            });
            egui::Grid::new("train-settings")
                .num_columns(2)
                .show(ui, |ui| {
                    if self.settings.head.mlp_hidden.is_some() {
                        ui.label("Hidden units");
                        let hidden =
                            egui::DragValue::new(&mut self.settings.hidden).range(2..=4096);
                        if ui.add(hidden).changed() {
                            self.settings.head.mlp_hidden = Some(self.settings.hidden);
                        }
                        ui.end_row();
                        ui.label("Dropout");
                        ui.add(egui::Slider::new(
                            &mut self.settings.head.dropout,
                            0.0..=0.9,
                        ));
                        ui.end_row();
                    }
                    ui.label("Epochs");
                    ui.add(egui::DragValue::new(&mut self.settings.head.epochs).range(1..=1000));
                    ui.end_row();
                    ui.label("Validation");
                    ui.add(
                        egui::Slider::new(&mut self.settings.head.val_fraction, 0.05..=0.5)
                            .custom_formatter(|v, _| format!("{:.0}", v * 100.0))
                            .custom_parser(|t| t.trim().parse::<f64>().ok().map(|v| v / 100.0))
                            .suffix(" %"),
                    );
                    ui.end_row();
                    ui.label("Learning rate");
                    ui.add(
                        egui::DragValue::new(&mut self.settings.head.lr)
                            .range(1e-6..=1.0)
                            .speed(1e-5)
                            .custom_formatter(|v, _| format!("{v:.0e}")),
                    );
                    ui.end_row();
                    ui.label("Weight decay");
                    ui.add(
                        egui::DragValue::new(&mut self.settings.head.weight_decay)
                            .range(0.0..=1.0)
                            .speed(1e-5)
                            .custom_formatter(|v, _| format!("{v:.0e}")),
                    );
                    ui.end_row();
                    ui.label("Batch size");
                    ui.add(
                        egui::DragValue::new(&mut self.settings.head.batch_size).range(1..=1024),
                    );
                    ui.end_row();
                    ui.label("Seed");
                    ui.add(egui::DragValue::new(&mut self.settings.head.seed));
                    ui.end_row();
                });
            ui.checkbox(&mut self.settings.head.flip, "Flip augmentation")
                .on_hover_text("Also train on each photo mirrored left-right");
            let block = env.model.map(|m| m.last_block.clone());
            if let Some(None) = block {
                self.settings.head.fine_tune = false;
            }
            let can_fine_tune = !matches!(block, Some(None));
            let hover = match &block {
                Some(Some(what)) => format!(
                    "Also train the backbone's last block ({what}) from its pretrained \
                     weights. Slower: its inputs are computed on every run, not cached."
                ),
                Some(None) => "This model's last block cannot be fine-tuned here: its \
                               pooling comes before its last layers (MobileNetV3)."
                    .to_string(),
                None => "Also train the backbone's last convolutional block from its \
                         pretrained weights."
                    .to_string(),
            };
            ui.add_enabled(
                can_fine_tune,
                egui::Checkbox::new(
                    &mut self.settings.head.fine_tune,
                    "Fine-tune the last block",
                ),
            )
            .on_hover_text(hover.as_str())
            .on_disabled_hover_text(hover.as_str());
            if self.settings.head.fine_tune {
                ui.horizontal(|ui| {
                    ui.label("Block learning rate ×");
                    ui.add(
                        egui::DragValue::new(&mut self.settings.head.fine_tune_lr_factor)
                            .range(0.001..=1.0)
                            .speed(0.005),
                    );
                });
            }
            ui.horizontal(|ui| {
                let label = ui.label("Save to");
                if ui
                    .add(egui::TextEdit::singleline(&mut self.output).desired_width(f32::INFINITY))
                    .labelled_by(label.id)
                    .changed()
                {
                    self.output_edited = true;
                }
            });
        });
    }

    fn run_controls(&mut self, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands) {
        match &self.running {
            Some(running) => {
                let epochs = running.epochs;
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
                if let Some(p) = self.features {
                    let fraction = p.done as f32 / p.total.max(1) as f32;
                    ui.add(egui::ProgressBar::new(fraction).text(format!(
                        "features {}/{} ({} cached), {:.1} images/s, ETA {:.0} s",
                        p.done, p.total, p.cached, p.images_per_s, p.eta_s
                    )));
                }
                if !self.epoch_rows.is_empty() {
                    let done = self.epoch_rows.len();
                    ui.add(
                        egui::ProgressBar::new(done as f32 / epochs.max(1) as f32)
                            .text(format!("epoch {done}/{epochs}")),
                    );
                }
            }
            None => {
                let ready = env.model.is_some()
                    && self.scanned.is_some()
                    && self.scan_error.is_none()
                    && self.scan_job.is_none()
                    && !self.folder_edited()
                    && !self.compare.is_running();
                let why = if env.model.is_none() {
                    "Load a model first"
                } else if self.compare.is_running() {
                    "Wait for the comparison to finish (or cancel it)"
                } else if self.scanned.is_none() {
                    "Choose a folder of photos first"
                } else if self.folder_edited() {
                    "Press Enter in the folder box to read the new folder"
                } else {
                    "Compute features, then train the head"
                };
                if ui
                    .add_enabled(ready, egui::Button::new("Start training"))
                    .on_hover_text(why)
                    .on_disabled_hover_text(why)
                    .clicked()
                {
                    self.start(env, commands);
                }
            }
        }
        if !self.status.is_empty() {
            crate::ui::message::message(ui, &self.status, None);
        }
    }

    /// Opens a native dialog on its own thread; says so in the status line if it cannot.
    fn open_dialog(
        &mut self,
        ctx: &egui::Context,
        pick: impl FnOnce() -> Option<PathBuf> + Send + 'static,
    ) -> Option<PendingPick> {
        match PendingPick::start(ctx, pick) {
            Ok(pending) => Some(pending),
            Err(e) => {
                tracing::warn!("cannot open the dialog: {e}");
                self.status = NO_DIALOG.into();
                None
            }
        }
    }

    /// Takes a dialog's answer once it is closed.
    fn poll_dialogs(&mut self, env: &PanelEnv, commands: &mut Commands) {
        let mut answer = |pending: &mut Option<PendingPick>| match PendingPick::poll_slot(pending)?
        {
            Ok(picked) => picked,
            Err(e) => {
                tracing::warn!("{e}");
                self.status = NO_DIALOG.into();
                None
            }
        };
        let folder = answer(&mut self.folder_dialog);
        let head = answer(&mut self.head_dialog);
        let export = answer(&mut self.export_dialog);
        if let Some(picked) = folder {
            self.set_folder(&picked, env, commands);
        }
        if let Some(path) = head {
            self.head_job = Some(commands.start_job(|job| Command::LoadHead { job, path }));
        }
        if let Some(path) = export {
            self.status = format!("Exporting to {}…", path.display());
            self.export_job = Some(commands.start_job(|job| Command::Export { job, path }));
        }
    }
}

/// "linear", "MLP 256", and "+ fine-tuned last block" when it was.
fn head_kind(head: &HeadSummary) -> String {
    let kind = match head.kind {
        HeadKind::Linear => "linear".to_string(),
        HeadKind::Mlp { hidden, .. } => format!("MLP {hidden}"),
    };
    if head.fine_tuned {
        format!("{kind} + fine-tuned last block")
    } else {
        kind
    }
}
