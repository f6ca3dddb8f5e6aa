//! The model the window uses: the catalogue and what of it is installed, the model chosen
//! and the device (both saved), the load in flight (with the choices to go back to if it
//! fails), downloads, and the models screen.

use std::path::Path;
use std::time::Instant;

use eframe::egui;

use super::ExplorerApp;
use crate::device::DeviceChoice;
use crate::ui::command::{AppCommand, Commands, Notice, NoticeKind};
use crate::ui::setup::{self, DownloadState};
use crate::weights::{self, ModelStatus};
use crate::worker::{CancelToken, Command, Event, JobId, ModelSummary};

/// A model (or device) switch in flight, with the choices to go back to if it fails.
struct ModelRequest {
    job: JobId,
    name: String,
    previous_model: Option<String>,
    previous_device: DeviceChoice,
}

struct DownloadJob {
    job: JobId,
    cancel: CancelToken,
    state: DownloadState,
}

/// The model side of the window.
pub(super) struct Models {
    catalogue: Vec<ModelStatus>,
    loaded: Option<ModelSummary>,
    request: Option<ModelRequest>,
    download: Option<DownloadJob>,
    show_screen: bool,
    /// The model last chosen (saved).
    chosen: Option<String>,
    /// The device chosen (saved).
    device: DeviceChoice,
}

impl Models {
    pub fn new(weights_dir: &Path, chosen: Option<String>, device: DeviceChoice) -> Self {
        Self {
            catalogue: weights::catalogue_status(weights_dir),
            loaded: None,
            request: None,
            download: None,
            show_screen: false,
            chosen,
            device,
        }
    }

    /// The model to start with: `asked` (the command line), else the saved choice if it is
    /// installed, else the best installed one.
    pub fn first_model(&self, asked: Option<String>, weights_dir: &Path) -> Option<String> {
        asked
            .or_else(|| self.chosen.clone().filter(|m| self.is_installed(m)))
            .or_else(|| weights::best_present_model(weights_dir).map(|s| s.name.to_string()))
    }

    pub fn loaded(&self) -> Option<&ModelSummary> {
        self.loaded.as_ref()
    }

    pub fn chosen(&self) -> Option<&str> {
        self.chosen.as_deref()
    }

    pub fn device(&self) -> DeviceChoice {
        self.device
    }

    pub fn is_loading(&self) -> bool {
        self.request.is_some()
    }

    pub fn is_downloading(&self) -> bool {
        self.download.is_some()
    }

    /// The name of the model loading, else of the one loaded.
    pub fn current_name(&self) -> Option<&str> {
        self.request
            .as_ref()
            .map(|r| r.name.as_str())
            .or_else(|| self.loaded.as_ref().map(|m| m.name.as_str()))
    }

    /// The model loading, if one is.
    pub fn loading(&self) -> Option<&str> {
        self.request.as_ref().map(|r| r.name.as_str())
    }

    pub fn catalogue(&self) -> &[ModelStatus] {
        &self.catalogue
    }

    /// The models screen was asked for (from the Model menu).
    pub fn screen_requested(&self) -> bool {
        self.show_screen
    }

    fn is_installed(&self, name: &str) -> bool {
        self.catalogue.iter().any(|m| m.name == name && m.present)
    }

    /// The models whose weights are in the weights folder, in catalogue order.
    pub fn installed(&self) -> Vec<String> {
        self.catalogue
            .iter()
            .filter(|m| m.present)
            .map(|m| m.name.clone())
            .collect()
    }

    /// Loads model `name` on the chosen device.
    pub fn load(&mut self, name: String, commands: &mut Commands) {
        let previous_device = self.device;
        self.load_on(name, previous_device, commands);
    }

    /// Loads model `name` on the chosen device; `previous_device` is the device to go back to
    /// if that fails.
    fn load_on(&mut self, name: String, previous_device: DeviceChoice, commands: &mut Commands) {
        let previous_model = self.loaded.as_ref().map(|m| m.name.clone());
        self.chosen = Some(name.clone());
        let device = self.device;
        let job = commands.start_job(|job| Command::LoadModel {
            job,
            model: name.clone(),
            device,
        });
        self.request = Some(ModelRequest {
            job,
            name,
            previous_model,
            previous_device,
        });
    }

    /// Loads `name` if it is installed, else shows the models screen.
    pub fn use_model(&mut self, name: String, commands: &mut Commands) {
        if self.is_installed(&name) {
            self.load(name, commands);
        } else {
            self.show_screen = true;
        }
    }

    /// Reloads the chosen model on `device`.
    pub fn use_device(&mut self, device: DeviceChoice, commands: &mut Commands) {
        let previous = std::mem::replace(&mut self.device, device);
        if let Some(name) = self.chosen.clone() {
            self.load_on(name, previous, commands);
        }
    }

    /// Starts downloading `model` (unless a download runs).
    pub fn download(&mut self, model: String, commands: &mut Commands) {
        if self.download.is_some() {
            return;
        }
        let cancel = CancelToken::new();
        let job = commands.start_job(|job| Command::Download {
            job,
            cancel: cancel.clone(),
            model: model.clone(),
        });
        self.download = Some(DownloadJob {
            job,
            cancel,
            state: DownloadState {
                model,
                done: 0,
                total: None,
                started: Instant::now(),
            },
        });
    }

    /// Stops following the download; says which one it was.
    pub fn cancel_download(&mut self) -> Option<String> {
        // Hugging Face downloads cannot stop mid-file: the download thread is left to notice
        // the token and clean up, and the window moves on at once.
        let d = self.download.take()?;
        d.cancel.cancel();
        Some(d.state.model)
    }

    /// Shows or hides the models screen (reading the weights folder again).
    pub fn show_screen(&mut self, show: bool, weights_dir: &Path) {
        self.show_screen = show;
        self.catalogue = weights::catalogue_status(weights_dir);
    }

    /// Whether `job` is the model load or the download in flight.
    pub fn owns(&self, job: JobId) -> bool {
        self.request.as_ref().is_some_and(|r| r.job == job)
            || self.download.as_ref().is_some_and(|d| d.job == job)
    }

    /// The models screen.
    pub fn screen(&self, ui: &mut egui::Ui, weights_dir: &Path, commands: &mut Commands) {
        let first_run = !self.catalogue.iter().any(|m| m.present);
        setup::show(
            ui,
            &self.catalogue,
            self.download.as_ref().map(|d| &d.state),
            first_run,
            weights_dir,
            commands,
        );
    }
}

impl ExplorerApp {
    /// An event of the model load or the download in flight.
    pub(super) fn on_models_event(&mut self, event: Event, commands: &mut Commands) {
        let job = event.job();
        let models = &mut self.models;
        let is_load = models.request.as_ref().is_some_and(|r| r.job == job);
        match event {
            Event::ModelLoaded { model, .. } if is_load => {
                tracing::info!(model = %model.name, device = %model.device, "model ready");
                models.request = None;
                models.loaded = Some(model);
                models.show_screen = false;
                // Show the current photo through the new model.
                commands.push(AppCommand::OpenPhoto(self.photo.clone()));
            }
            Event::Failed { error, .. } if is_load => {
                let Some(request) = models.request.take() else {
                    return;
                };
                // The worker keeps the model it had: so do the choices.
                models.chosen = request.previous_model;
                models.device = request.previous_device;
                let kept = match &models.loaded {
                    Some(m) => format!(" Still using {} on {}.", m.name, m.device),
                    None => String::new(),
                };
                commands.push(AppCommand::Notify(Notice::new(
                    NoticeKind::ModelFailed,
                    format!("Could not load {}: {error}{kept}", request.name),
                )));
            }
            Event::DownloadProgress { done, total, .. } => {
                if let Some(d) = &mut models.download {
                    d.state.done = done;
                    d.state.total = total;
                }
            }
            Event::Downloaded { model, path, .. } => {
                tracing::info!(%model, path = %path.display(), "downloaded");
                models.download = None;
                models.catalogue = weights::catalogue_status(&self.config.weights_dir);
                commands.push(AppCommand::DismissNotice);
                if models.loaded.is_none() || models.chosen.as_deref() == Some(&model) {
                    models.load(model, commands);
                } else {
                    commands.push(AppCommand::Notify(Notice::new(
                        NoticeKind::Download,
                        format!("{model} is installed: choose it in the Model menu."),
                    )));
                }
            }
            Event::Cancelled { .. } if !is_load => {
                models.download = None;
                commands.push(AppCommand::Notify(Notice::new(
                    NoticeKind::Download,
                    "Download cancelled.",
                )));
            }
            Event::Failed { error, .. } => {
                let name = models
                    .download
                    .take()
                    .map(|d| d.state.model)
                    .unwrap_or_default();
                commands.push(AppCommand::Notify(Notice::new(
                    NoticeKind::Download,
                    crate::ui::message::download_failure(&name, &error),
                )));
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for a model"),
        }
    }
}
