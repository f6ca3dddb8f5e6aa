//! The "Train" tab: pick a folder of labelled photos, see its classes, set up and train a new
//! classifier head on the frozen backbone's features with live curves, then inspect it (best
//! epoch, confusion matrix, per-class accuracy, misclassified photos that open in Explore) and
//! use it in the predictions panel. Beside it, [`compare`]: the same head with each backbone.
//! The settings column is drawn in [`controls`], the curves and the report in [`report`].

pub mod compare;
mod controls;
pub mod map;
mod report;
mod review;

use std::path::{Path, PathBuf};

use eframe::egui;
use serde::{Deserialize, Serialize};

use self::compare::ComparePanel;
use super::command::{AppCommand, Commands};
use super::panel::{Panel, PanelEnv, SideColumn};
use super::widgets::PendingPick;
use crate::worker::{
    CancelToken, Command, DatasetSummary, EpochMetrics, Event, JobId, TrainReport, TrainRequest,
};

/// The Train tab's settings (saved between runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    /// The head and how it learns, as the library takes them; the folder and the save path
    /// belong to one run and are filled in when it starts (they stay empty here).
    pub head: TrainRequest,
    /// The MLP's hidden width, kept while a linear head is chosen.
    pub hidden: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            head: TrainRequest {
                output: PathBuf::new(),
                ..TrainRequest::default()
            },
            hidden: TrainRequest::DEFAULT_HIDDEN,
        }
    }
}

impl TrainSettings {
    /// Keeps values read from a hand-edited file within the controls' ranges.
    pub fn sanitised(self) -> Self {
        let default = Self::default().head;
        let within =
            |v: f64, d: f64, lo: f64, hi: f64| if v.is_finite() { v.clamp(lo, hi) } else { d };
        let h = self.head;
        let hidden = self.hidden.clamp(2, 4096);
        Self {
            head: TrainRequest {
                dir: PathBuf::new(),
                output: PathBuf::new(),
                val_fraction: within(h.val_fraction, default.val_fraction, 0.05, 0.5),
                epochs: h.epochs.clamp(1, 1000),
                lr: within(h.lr, default.lr, 1e-6, 1.0),
                weight_decay: within(h.weight_decay, default.weight_decay, 0.0, 1.0),
                batch_size: h.batch_size.clamp(1, 1024),
                mlp_hidden: h.mlp_hidden.map(|_| hidden),
                dropout: super::widgets::finite_within(h.dropout, default.dropout, 0.0..=0.9),
                fine_tune_lr_factor: within(
                    h.fine_tune_lr_factor,
                    default.fine_tune_lr_factor,
                    0.001,
                    1.0,
                ),
                ..h
            },
            hidden,
        }
    }
}

const COLUMN: SideColumn = SideColumn {
    id: "train-controls",
    default_width: 330.0,
    min_width: 260.0,
    max_width: 520.0,
};

struct Running {
    job: JobId,
    cancel: CancelToken,
    epochs: usize,
    fine_tune: bool,
}

/// Feature extraction progress as last reported.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FeatureProgress {
    done: usize,
    total: usize,
    cached: usize,
    images_per_s: f32,
    eta_s: f32,
}

struct Finished {
    report: TrainReport,
    review: review::Review,
    map: map::MapView,
}

/// The Train tab's state.
pub struct TrainPanel {
    settings: TrainSettings,
    folder: String,
    output: String,
    /// The save path was typed by the user: choosing another folder keeps it.
    output_edited: bool,
    scan_job: Option<JobId>,
    /// The folder the last scan read (what training will use).
    scanned_dir: Option<PathBuf>,
    scanned: Option<DatasetSummary>,
    scan_error: Option<String>,
    running: Option<Running>,
    features: Option<FeatureProgress>,
    /// (optimiser step, mini-batch loss).
    steps: Vec<[f64; 2]>,
    epoch_rows: Vec<EpochMetrics>,
    finished: Option<Finished>,
    status: String,
    folder_dialog: Option<PendingPick>,
    head_dialog: Option<PendingPick>,
    head_job: Option<JobId>,
    export_dialog: Option<PendingPick>,
    export_job: Option<JobId>,
    compare: ComparePanel,
    /// Start training as soon as the model is loaded and the folder read (`--train`).
    start_when_ready: bool,
}

impl TrainPanel {
    /// The tab with saved `settings`.
    pub fn new(settings: TrainSettings) -> Self {
        Self {
            settings,
            folder: String::new(),
            output: String::new(),
            output_edited: false,
            scan_job: None,
            scanned_dir: None,
            scanned: None,
            scan_error: None,
            running: None,
            features: None,
            steps: Vec::new(),
            epoch_rows: Vec::new(),
            finished: None,
            status: String::new(),
            folder_dialog: None,
            head_dialog: None,
            head_job: None,
            export_dialog: None,
            export_job: None,
            compare: ComparePanel::default(),
            start_when_ready: false,
        }
    }

    /// The settings as they would be saved.
    pub fn settings(&self) -> &TrainSettings {
        &self.settings
    }

    /// Whether a training or a comparison is running, or about to start.
    pub fn is_running(&self) -> bool {
        self.running.is_some() || self.compare.is_running() || self.start_when_ready
    }

    /// Whether the review gallery still waits for pictures it asked for.
    pub fn is_reviewing(&self) -> bool {
        self.finished
            .as_ref()
            .is_some_and(|f| f.review.is_waiting())
    }

    /// Trains on the folder as soon as a model is loaded and the folder is read.
    pub fn start_when_ready(&mut self) {
        self.start_when_ready = true;
    }

    /// The backbone comparison.
    pub fn comparison(&self) -> &ComparePanel {
        &self.compare
    }

    /// The folder as last scanned.
    pub fn scanned(&self) -> Option<&DatasetSummary> {
        self.scanned.as_ref()
    }

    /// Why the folder cannot be trained on, if it cannot.
    pub fn scan_error(&self) -> Option<&str> {
        self.scan_error.as_deref()
    }

    /// The last finished training.
    pub fn report(&self) -> Option<&TrainReport> {
        self.finished.as_ref().map(|f| &f.report)
    }

    /// The dataset map's state (projection, t-SNE progress) after a training.
    pub fn map_view(&self) -> Option<&map::MapView> {
        self.finished.as_ref().map(|f| &f.map)
    }

    /// The validation photos the review gallery shows now (a clicked confusion cell's, else
    /// the top losses), and whether each has its thumbnail.
    pub fn review_shown(&self) -> Vec<(PathBuf, bool)> {
        self.finished
            .as_ref()
            .map(|f| f.review.shown_paths(&f.report.predictions))
            .unwrap_or_default()
    }

    /// Epochs reported so far by the training in progress (or the last one).
    pub fn epoch_rows(&self) -> &[EpochMetrics] {
        &self.epoch_rows
    }

    /// The status line.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// Uses `dir` as the training folder and reads its classes.
    pub fn set_folder(&mut self, dir: &Path, env: &PanelEnv, commands: &mut Commands) {
        self.folder = dir.display().to_string();
        if !self.output_edited {
            self.output = default_output(dir, env).display().to_string();
        }
        self.scan(commands);
    }

    fn scan(&mut self, commands: &mut Commands) {
        let dir = PathBuf::from(self.folder.trim());
        let cats_vs_dogs = self.settings.head.cats_vs_dogs;
        self.scanned = None;
        self.scan_error = None;
        self.scanned_dir = Some(dir.clone());
        self.scan_job = Some(commands.start_job(|job| Command::ScanFolder {
            job,
            dir,
            cats_vs_dogs,
        }));
    }

    /// The folder box no longer names the folder that was read.
    fn folder_edited(&self) -> bool {
        self.scanned_dir
            .as_deref()
            .is_some_and(|d| d != Path::new(self.folder.trim()))
    }

    /// Starts training with the settings shown.
    pub fn start(&mut self, env: &PanelEnv, commands: &mut Commands) {
        if let Some(r) = self.running.take() {
            r.cancel.cancel();
        }
        let request = self.request(env);
        if self.output.trim().is_empty() {
            self.output = request.output.display().to_string();
        }
        let cancel = CancelToken::new();
        let job = commands.start_job(|job| Command::Train {
            job,
            cancel: cancel.clone(),
            request: Box::new(request),
        });
        self.running = Some(Running {
            job,
            cancel,
            epochs: self.settings.head.epochs,
            fine_tune: self.settings.head.fine_tune,
        });
        self.features = None;
        self.steps.clear();
        self.epoch_rows.clear();
        if let Some(f) = self.finished.take() {
            f.map.cancel();
        }
        self.status = "Reading the folder…".into();
    }

    /// Training on the scanned folder with the current settings (an empty save path means the
    /// default one).
    fn request(&self, env: &PanelEnv) -> TrainRequest {
        let dir = self
            .scanned_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(self.folder.trim()));
        let output = if self.output.trim().is_empty() {
            default_output(&dir, env)
        } else {
            PathBuf::from(self.output.trim())
        };
        TrainRequest {
            dir,
            output,
            ..self.settings.head.clone()
        }
    }

    /// Stops the training in progress (features computed so far stay cached).
    pub fn cancel(&mut self) {
        if let Some(r) = &self.running {
            r.cancel.cancel();
            self.status = "Cancelling…".into();
        }
    }

    fn on_scan(&mut self, event: Event) {
        self.scan_job = None;
        match event {
            Event::FolderScanned { summary, .. } => self.scanned = Some(summary),
            Event::Failed { error, .. } => self.scan_error = Some(error),
            other => tracing::debug!(job = %other.job(), "unexpected event for a scan"),
        }
    }

    fn on_head_loaded(&mut self, event: Event, commands: &mut Commands) {
        self.head_job = None;
        match event {
            Event::HeadLoaded { head, .. } => {
                self.status = format!(
                    "Using {} ({} classes, {} features) in the predictions panel.",
                    head.name,
                    head.classes.len(),
                    head.backbone
                );
                commands.push(AppCommand::UseHead(head));
            }
            Event::Failed { error, .. } => self.status = format!("Could not load: {error}"),
            other => tracing::debug!(job = %other.job(), "unexpected event for a head"),
        }
    }

    fn on_exported(&mut self, event: Event) {
        self.export_job = None;
        match event {
            Event::Exported { report, .. } => {
                let [_, _, h, w] = report.input_shape;
                self.status = format!(
                    "Exported {} ({:.1} MB): input [N, 3, {h}, {w}] normalised with mean {:?} \
                     and std {:?}, {} classes out{}.",
                    report.path.display(),
                    report.bytes as f64 / 1e6,
                    report.mean,
                    report.std,
                    report.classes.len(),
                    report
                        .timm_model
                        .map(|m| format!("; loads into timm's {m}"))
                        .unwrap_or_default()
                );
                if !report.timm_setup.is_empty() {
                    self.status.push_str(&format!(
                        " First, on the timm model: {}",
                        report.timm_setup.join("; ")
                    ));
                }
            }
            Event::Failed { error, .. } => self.status = format!("Could not export: {error}"),
            other => tracing::debug!(job = %other.job(), "unexpected event for an export"),
        }
    }

    fn on_training(&mut self, ctx: &egui::Context, event: Event, commands: &mut Commands) {
        let Some(running) = &self.running else {
            return;
        };
        match event {
            Event::TrainScanned { summary, .. } => {
                self.scanned = Some(summary);
                self.scan_error = None;
                self.status = "Computing the backbone's features…".into();
            }
            Event::TrainFeatures {
                done,
                total,
                cached,
                images_per_s,
                eta_s,
                ..
            } => {
                self.features = Some(FeatureProgress {
                    done,
                    total,
                    cached,
                    images_per_s,
                    eta_s,
                });
                if done == total {
                    self.status = "Training the head…".into();
                }
            }
            Event::TrainStep { step, loss, .. } => {
                self.steps.push([step as f64, f64::from(loss)]);
            }
            Event::TrainEpoch { row, .. } => {
                self.status = format!(
                    "Epoch {}/{}: validation accuracy {:.1}%",
                    row.epoch,
                    running.epochs,
                    row.val_acc * 100.0
                );
                self.epoch_rows.push(row);
            }
            Event::TrainFinished { report, head, .. } => {
                self.running = None;
                let review = review::Review::new(ctx, &report.thumbnails);
                self.status = format!(
                    "Done: {:.1}% validation accuracy (epoch {}), saved to {}; the predictions \
                     panel can now use it.",
                    report.val_accuracy * 100.0,
                    report.best_epoch,
                    report.saved_to.display()
                );
                self.epoch_rows = report.epochs.clone();
                commands.push(AppCommand::UseHead(head));
                let map = map::MapView::new(&report.map, commands);
                self.finished = Some(Finished {
                    report: *report,
                    review,
                    map,
                });
            }
            Event::Cancelled { .. } => {
                self.status = if running.fine_tune {
                    "Cancelled.".into()
                } else {
                    "Cancelled. Features computed so far are cached: the next run starts there."
                        .into()
                };
                self.running = None;
            }
            Event::Failed { error, .. } => {
                self.running = None;
                self.status = format!("Training failed: {error}");
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for a training"),
        }
    }
}

impl Panel for TrainPanel {
    fn columns(&self) -> &'static [SideColumn] {
        &[COLUMN]
    }

    fn column(&mut self, _: usize, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands) {
        self.controls(ui, env, commands);
        if self.start_when_ready {
            if self.scan_error.is_some() {
                self.start_when_ready = false;
            } else if env.model.is_some() && self.scanned.is_some() && self.scan_job.is_none() {
                self.start_when_ready = false;
                if !self.output_edited {
                    // Named now: the model was not loaded yet when the folder was chosen.
                    if let Some(dir) = self.scanned_dir.clone() {
                        self.output = default_output(&dir, env).display().to_string();
                    }
                }
                self.start(env, commands);
            }
        }
    }

    fn view(&mut self, ui: &mut egui::Ui, _: &PanelEnv, commands: &mut Commands) {
        self.results(ui, commands);
    }

    fn owns(&self, job: JobId) -> bool {
        self.compare.owns(job)
            || self
                .finished
                .as_ref()
                .is_some_and(|f| f.review.owns(job) || f.map.owns(job))
            || self.scan_job == Some(job)
            || self.head_job == Some(job)
            || self.export_job == Some(job)
            || self.running.as_ref().is_some_and(|r| r.job == job)
    }

    fn on_event(&mut self, ctx: &egui::Context, event: Event, commands: &mut Commands) {
        let job = event.job();
        if self.compare.owns(job) {
            self.compare.on_event(event);
        } else if let Some(f) = self.finished.as_mut().filter(|f| f.review.owns(job)) {
            f.review.on_event(ctx, event);
        } else if let Some(f) = self.finished.as_mut().filter(|f| f.map.owns(job)) {
            f.map.on_event(event);
        } else if self.scan_job == Some(job) {
            self.on_scan(event);
        } else if self.head_job == Some(job) {
            self.on_head_loaded(event, commands);
        } else if self.export_job == Some(job) {
            self.on_exported(event);
        } else {
            self.on_training(ctx, event, commands);
        }
    }
}

/// The epoch the training keeps: highest validation accuracy, ties to the lower loss.
fn best_epoch(rows: &[EpochMetrics]) -> Option<usize> {
    rows.iter()
        .min_by(|a, b| {
            b.val_acc
                .total_cmp(&a.val_acc)
                .then(a.val_loss.total_cmp(&b.val_loss))
        })
        .map(|r| r.epoch)
}

/// Where a head for `dir` goes unless the user says otherwise:
/// `HEADS/<folder name>-<model>.safetensors`.
fn default_output(dir: &Path, env: &PanelEnv) -> PathBuf {
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "photos".into());
    let model = env.model.map_or("model", |m| m.name.as_str());
    env.heads_dir.join(format!("{folder}-{model}.safetensors"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, val_acc: f32, val_loss: f32) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 0.0,
            train_acc: 0.0,
            val_loss,
            val_acc,
        }
    }

    #[test]
    fn the_best_epoch_has_the_highest_accuracy_then_the_lowest_loss() {
        assert_eq!(best_epoch(&[]), None);
        let rows = [
            row(1, 0.8, 0.5),
            row(2, 0.9, 0.4),
            row(3, 0.9, 0.3),
            row(4, 0.85, 0.1),
        ];
        assert_eq!(best_epoch(&rows), Some(3));
    }
}
