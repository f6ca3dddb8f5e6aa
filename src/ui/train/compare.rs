//! "Compare backbones" in the Train tab: tick the installed models, train the Train tab's head
//! on its folder and split with each, and see a table (validation accuracy, feature time per
//! photo, parameters, weights size) with bar charts of accuracy and speed.

use std::collections::BTreeSet;

use eframe::egui::{self, Color32};
use egui_plot::{Bar, BarChart, Plot};

use crate::ui::command::Commands;
use crate::ui::widgets::bar_names;
use crate::worker::{
    CancelToken, Command, CompareRequest, CompareRow, ComparisonRow, Event, JobId, TrainRequest,
};

/// Progress of the model being compared.
#[derive(Debug, Clone, PartialEq)]
struct Progress {
    model: String,
    index: usize,
    total: usize,
    stage: String,
    fraction: f32,
}

/// The comparison's state.
#[derive(Default)]
pub struct ComparePanel {
    /// Models ticked for the next comparison.
    selected: BTreeSet<String>,
    /// Whether the selection was filled with the installed models yet.
    initialised: bool,
    running: Option<(JobId, CancelToken)>,
    progress: Option<Progress>,
    rows: Vec<ComparisonRow>,
    status: String,
}

impl ComparePanel {
    /// Whether a comparison is running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The rows so far (every model's, once finished).
    pub fn rows(&self) -> &[ComparisonRow] {
        &self.rows
    }

    /// Whether `job` is the comparison running.
    pub fn owns(&self, job: JobId) -> bool {
        self.running.as_ref().is_some_and(|(j, _)| *j == job)
    }

    /// Handles an event of the comparison running.
    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::CompareProgress {
                model,
                index,
                total,
                stage,
                fraction,
                ..
            } => {
                self.progress = Some(Progress {
                    model,
                    index,
                    total,
                    stage,
                    fraction,
                });
            }
            Event::CompareRow { row, .. } => self.rows.push(row),
            Event::CompareFinished { rows, .. } => {
                self.rows = rows;
                self.finish("Comparison finished.".into());
            }
            Event::Cancelled { .. } => self.finish("Comparison cancelled.".into()),
            Event::Failed { error, .. } => self.finish(format!("Comparison failed: {error}")),
            other => tracing::debug!(job = %other.job(), "unexpected event for a comparison"),
        }
    }

    fn finish(&mut self, status: String) {
        self.running = None;
        self.progress = None;
        self.status = status;
    }

    /// Stops the comparison running.
    pub fn cancel(&mut self) {
        if let Some((_, cancel)) = &self.running {
            cancel.cancel();
        }
    }

    /// The model choice, the button (`request`: the Train tab's settings on its folder, or
    /// why there are none yet) and the progress.
    pub fn controls(
        &mut self,
        ui: &mut egui::Ui,
        installed: &[String],
        request: Result<TrainRequest, &str>,
        commands: &mut Commands,
    ) {
        if !self.initialised && !installed.is_empty() {
            self.selected = installed.iter().cloned().collect();
            self.initialised = true;
        }
        ui.strong("Compare backbones");
        ui.weak("The same head, settings and split with each model.");
        if installed.is_empty() {
            ui.weak("No model is installed yet.");
        }
        let idle = self.running.is_none();
        ui.add_enabled_ui(idle, |ui| {
            ui.horizontal_wrapped(|ui| {
                for name in installed {
                    let mut on = self.selected.contains(name);
                    if ui.checkbox(&mut on, name).changed() {
                        if on {
                            self.selected.insert(name.clone());
                        } else {
                            self.selected.remove(name);
                        }
                    }
                }
            });
        });
        // Only installed models take part (one may have been removed since it was ticked).
        let models: Vec<String> = installed
            .iter()
            .filter(|m| self.selected.contains(*m))
            .cloned()
            .collect();
        match (&self.running, request) {
            (Some(_), _) => {
                if ui.button("Cancel comparison").clicked() {
                    self.cancel();
                }
                if let Some(p) = &self.progress {
                    ui.add(egui::ProgressBar::new(p.fraction).text(format!(
                        "{} ({}/{}): {}",
                        p.model,
                        p.index + 1,
                        p.total,
                        p.stage
                    )));
                }
            }
            (None, Ok(train)) => {
                let why = if models.len() < 2 {
                    "Tick at least two models"
                } else {
                    "Train the head with each ticked model on this folder"
                };
                if ui
                    .add_enabled(models.len() >= 2, egui::Button::new("Compare"))
                    .on_hover_text(why)
                    .on_disabled_hover_text(why)
                    .clicked()
                {
                    let cancel = CancelToken::new();
                    let request = CompareRequest { models, train };
                    let job = commands.start_job(|job| Command::Compare {
                        job,
                        cancel: cancel.clone(),
                        request: Box::new(request),
                    });
                    self.running = Some((job, cancel));
                    self.rows.clear();
                    self.status.clear();
                }
            }
            (None, Err(why)) => {
                ui.add_enabled(false, egui::Button::new("Compare"))
                    .on_disabled_hover_text(why);
            }
        }
        if !self.status.is_empty() {
            crate::ui::message::message(ui, &self.status, None);
        }
    }

    /// The table and charts, once there is a row.
    pub fn view(&self, ui: &mut egui::Ui) {
        if self.rows.is_empty() {
            return;
        }
        ui.heading("Backbone comparison");
        egui::Grid::new("comparison-table")
            .striped(true)
            .num_columns(7)
            .show(ui, |ui| {
                for title in [
                    "model",
                    "validation accuracy",
                    "features, ms/photo",
                    "parameters",
                    "weights",
                    "features",
                    "photos (train/val)",
                ] {
                    ui.strong(title);
                }
                ui.end_row();
                let best = self
                    .rows
                    .iter()
                    .flatten()
                    .map(|r| r.val_accuracy)
                    .fold(f32::NEG_INFINITY, f32::max);
                for row in &self.rows {
                    let r = match row {
                        Ok(r) => r,
                        Err(failure) => {
                            let arch = failure.arch.map(|a| a.to_string()).unwrap_or_default();
                            ui.label(&failure.model).on_hover_text(arch);
                            ui.colored_label(ui.visuals().error_fg_color, "failed")
                                .on_hover_text(&failure.error);
                            ui.end_row();
                            continue;
                        }
                    };
                    ui.label(&r.model).on_hover_text(r.arch.to_string());
                    let acc = format!("{:.1}% (epoch {})", r.val_accuracy * 100.0, r.best_epoch);
                    if r.val_accuracy == best {
                        ui.strong(acc);
                    } else {
                        ui.label(acc);
                    }
                    ui.label(format!("{:.1}", r.feature_ms_per_image));
                    ui.label(format!("{:.1} M", r.parameters as f64 / 1e6));
                    ui.label(format!("{:.1} MB", r.weights_bytes as f64 / 1e6));
                    ui.label(r.embedding_dim.to_string());
                    ui.label(format!("{}/{}", r.train_photos, r.val_photos));
                    ui.end_row();
                }
            });
        let ok: Vec<&CompareRow> = self.rows.iter().flatten().collect();
        if ok.is_empty() {
            return;
        }
        ui.add_space(6.0);
        ui.columns(2, |cols| {
            cols[0].strong("Validation accuracy (%)");
            bar_chart(&mut cols[0], "accuracy", &ok, |r| {
                f64::from(r.val_accuracy) * 100.0
            });
            cols[1].strong("Feature time per photo (ms)");
            bar_chart(&mut cols[1], "time", &ok, |r| r.feature_ms_per_image);
        });
    }
}

/// One bar per row, named by model on the x axis.
fn bar_chart(
    ui: &mut egui::Ui,
    id: &str,
    rows: &[&CompareRow],
    value: impl Fn(&CompareRow) -> f64,
) {
    let names: Vec<String> = rows.iter().map(|r| r.model.clone()).collect();
    let bars: Vec<Bar> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Bar::new(i as f64, value(r))
                .name(&r.model)
                .width(0.6)
                .fill(Color32::from_rgb(70, 130, 180))
        })
        .collect();
    Plot::new(format!("compare-{id}"))
        .height(180.0)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .include_y(0.0)
        .x_axis_formatter(bar_names(names))
        .show(ui, |plot| plot.bar_chart(BarChart::new(id, bars)));
}
