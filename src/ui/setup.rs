//! The models panel: what is installed, and downloads with a progress bar and a Cancel
//! button. On first run (no weights at all) it is the whole window.

use std::path::Path;
use std::time::Instant;

use eframe::egui;

use super::command::{AppCommand, Commands};
use super::message::message;
use crate::weights::ModelStatus;

/// A download the window is following.
#[derive(Debug, Clone)]
pub struct DownloadState {
    pub model: String,
    pub done: u64,
    pub total: Option<u64>,
    pub started: Instant,
}

fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// The two models a newcomer should choose between: (name, what the button says first, why).
const RECOMMENDED: [(&str, &str, &str); 2] = [
    (
        "efficientnet-lite0",
        "Quick start",
        "Small and fast: you are exploring in seconds, on any computer.",
    ),
    (
        "vgg16",
        "The lesson's network",
        "The classic 16-layer network the lesson uses: a large download, slower on a CPU.",
    ),
];

/// The recommended models as large buttons with a line on why, for the first run.
fn recommended(ui: &mut egui::Ui, catalogue: &[ModelStatus], busy: bool, commands: &mut Commands) {
    for (name, title, why) in RECOMMENDED {
        let Some(m) = catalogue.iter().find(|m| m.name == name && !m.present) else {
            continue;
        };
        let text = format!("{title}: {}, {}", m.arch, megabytes(m.size_bytes));
        ui.horizontal(|ui| {
            let button = egui::Button::new(egui::RichText::new(text).size(16.0))
                .min_size(egui::vec2(340.0, 34.0));
            if ui.add_enabled(!busy, button).clicked() {
                commands.push(AppCommand::Download(m.name.clone()));
            }
            ui.label(why);
        });
    }
}

/// Draws the panel; `first_run` when no model is installed at all.
pub fn show(
    ui: &mut egui::Ui,
    catalogue: &[ModelStatus],
    download: Option<&DownloadState>,
    first_run: bool,
    weights_dir: &Path,
    commands: &mut Commands,
) {
    ui.vertical(|ui| {
        ui.set_max_width(720.0);
        if first_run {
            ui.heading("Welcome to cnn-explorer");
            ui.label(
                "No model is installed yet. Choose one to download: its pretrained ImageNet \
                 weights are fetched once and kept in the weights folder, and the bundled \
                 cat photo opens in Explore.",
            );
            ui.add_space(8.0);
            recommended(ui, catalogue, download.is_some(), commands);
            ui.add_space(8.0);
            ui.strong("All models");
        } else {
            ui.horizontal(|ui| {
                ui.heading("Models");
                if ui.button("Close").clicked() {
                    commands.push(AppCommand::ShowModels(false));
                }
            });
        }
        let weak = ui.visuals().weak_text_color();
        message(
            ui,
            &format!("Weights folder: {}", weights_dir.display()),
            Some(weak),
        );
        ui.add_space(8.0);
        egui::Grid::new("models")
            .num_columns(4)
            .spacing([16.0, 8.0])
            .striped(true)
            .show(ui, |ui| {
                ui.strong("Model");
                ui.strong("Size");
                ui.strong("Source");
                ui.strong("");
                ui.end_row();
                for m in catalogue {
                    ui.label(format!("{} ({})", m.name, m.arch));
                    ui.label(megabytes(m.size_bytes));
                    ui.label(&m.source);
                    if m.present {
                        if ui.button(format!("Use {}", m.name)).clicked() {
                            commands.push(AppCommand::UseModel(m.name.clone()));
                        }
                    } else {
                        let busy = download.is_some();
                        let button = ui
                            .add_enabled(!busy, egui::Button::new(format!("Download {}", m.name)));
                        if button.clicked() {
                            commands.push(AppCommand::Download(m.name.clone()));
                        }
                    }
                    ui.end_row();
                }
            });
        if let Some(d) = download {
            ui.add_space(12.0);
            ui.strong(format!("Downloading {}…", d.model));
            let fraction = d.total.filter(|&t| t > 0).map(|t| d.done as f32 / t as f32);
            let seconds = d.started.elapsed().as_secs_f64().max(1e-3);
            let speed = d.done as f64 / seconds / 1e6;
            let text = match d.total {
                Some(t) => format!(
                    "{} of {} ({speed:.1} MB/s)",
                    megabytes(d.done),
                    megabytes(t)
                ),
                None => format!("{} ({speed:.1} MB/s)", megabytes(d.done)),
            };
            let bar = match fraction {
                Some(f) => egui::ProgressBar::new(f.clamp(0.0, 1.0)).show_percentage(),
                None => egui::ProgressBar::new(0.0).animate(true),
            };
            ui.add(bar.text(text));
            if ui.button("Cancel download").clicked() {
                commands.push(AppCommand::CancelDownload);
            }
        }
    });
}
