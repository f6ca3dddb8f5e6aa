//! The "Train" tab: pick a folder of labelled photos, see its classes, set up and train a new
//! classifier head on the frozen backbone's features with live curves, then inspect it (best
//! epoch, confusion matrix, per-class accuracy, misclassified photos that open in Explore) and
//! use it in the predictions panel.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use eframe::egui::{self, Color32, TextureHandle, TextureOptions};
use egui_plot::{Legend, Line, Plot, VLine};

use super::compare::ComparePanel;
use super::widgets::{texture, Jobs};
use crate::worker::{
    CancelToken, Command, DatasetSummary, EpochRow, Event, HeadSummary, JobId, ModelSummary,
    TrainReport, TrainRequest,
};

/// What the Train tab needs to know about the rest of the window.
pub struct TrainEnv<'a> {
    /// The loaded model (its features are what the head learns from).
    pub model: Option<&'a ModelSummary>,
    /// Where heads are saved by default.
    pub heads_dir: &'a Path,
    /// The head the predictions panel uses now.
    pub active_head: Option<&'a HeadSummary>,
    /// Models whose weights are installed (what a comparison can use).
    pub installed: &'a [String],
}

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
    thumbnails: Vec<TextureHandle>,
}

/// The Train tab's state.
pub struct TrainPanel {
    folder: String,
    cats_vs_dogs: bool,
    val_percent: f64,
    epochs: usize,
    lr: f64,
    weight_decay: f64,
    batch_size: usize,
    seed: u64,
    mlp: bool,
    hidden: usize,
    dropout: f32,
    flip: bool,
    fine_tune: bool,
    /// The block's learning rate over the head's.
    fine_tune_factor: f64,
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
    epoch_rows: Vec<EpochRow>,
    finished: Option<Finished>,
    status: String,
    folder_dialog: Option<mpsc::Receiver<Option<PathBuf>>>,
    head_dialog: Option<mpsc::Receiver<Option<PathBuf>>>,
    head_job: Option<JobId>,
    new_head: Option<HeadSummary>,
    open_request: Option<PathBuf>,
    compare: ComparePanel,
}

impl Default for TrainPanel {
    fn default() -> Self {
        Self {
            folder: String::new(),
            cats_vs_dogs: false,
            val_percent: 20.0,
            epochs: 10,
            lr: 1e-3,
            weight_decay: 1e-4,
            batch_size: 32,
            seed: 0,
            mlp: false,
            hidden: 256,
            dropout: 0.5,
            flip: false,
            fine_tune: false,
            fine_tune_factor: 0.1,
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
            new_head: None,
            open_request: None,
            compare: ComparePanel::default(),
        }
    }
}

impl TrainPanel {
    pub fn is_running(&self) -> bool {
        self.running.is_some() || self.compare.is_running()
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

    /// Epochs reported so far by the training in progress (or the last one).
    pub fn epoch_rows(&self) -> &[EpochRow] {
        &self.epoch_rows
    }

    /// The status line.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// A head that became ready (trained or loaded) since the last call.
    pub fn take_new_head(&mut self) -> Option<HeadSummary> {
        self.new_head.take()
    }

    /// A photo the user asked to open in Explore since the last call.
    pub fn take_open_request(&mut self) -> Option<PathBuf> {
        self.open_request.take()
    }

    /// Uses `dir` as the training folder and reads its classes.
    pub fn set_folder(&mut self, jobs: &mut Jobs, dir: &Path, env: &TrainEnv) {
        self.folder = dir.display().to_string();
        if !self.output_edited {
            self.output = default_output(dir, env).display().to_string();
        }
        self.scan(jobs);
    }

    fn scan(&mut self, jobs: &mut Jobs) {
        let dir = PathBuf::from(self.folder.trim());
        let cats_vs_dogs = self.cats_vs_dogs;
        self.scanned = None;
        self.scan_error = None;
        self.scanned_dir = Some(dir.clone());
        self.scan_job = Some(jobs.send(|job| Command::ScanFolder {
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
    pub fn start(&mut self, jobs: &mut Jobs, env: &TrainEnv) {
        if let Some(r) = self.running.take() {
            r.cancel.cancel();
        }
        let request = self.request(env);
        if self.output.trim().is_empty() {
            self.output = request.output.display().to_string();
        }
        let cancel = CancelToken::new();
        let job = jobs.send(|job| Command::Train {
            job,
            cancel: cancel.clone(),
            request: Box::new(request),
        });
        self.running = Some(Running {
            job,
            cancel,
            epochs: self.epochs,
            fine_tune: self.fine_tune,
        });
        self.features = None;
        self.steps.clear();
        self.epoch_rows.clear();
        self.finished = None;
        self.status = "Reading the folder…".into();
    }

    /// Training on the scanned folder with the current settings (an empty save path means the
    /// default one).
    fn request(&self, env: &TrainEnv) -> TrainRequest {
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
            cats_vs_dogs: self.cats_vs_dogs,
            val_fraction: self.val_percent / 100.0,
            epochs: self.epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            seed: self.seed,
            mlp_hidden: self.mlp.then_some(self.hidden),
            dropout: self.dropout,
            flip: self.flip,
            fine_tune: self.fine_tune,
            fine_tune_lr_factor: self.fine_tune_factor,
            output,
        }
    }

    /// Stops the training in progress (features computed so far stay cached).
    pub fn cancel(&mut self) {
        if let Some(r) = &self.running {
            r.cancel.cancel();
            self.status = "Cancelling…".into();
        }
    }

    /// Takes the worker's events for this panel's jobs; true if it was one.
    pub fn on_event(&mut self, ctx: &egui::Context, event: &Event) -> bool {
        if self.compare.on_event(event) {
            return true;
        }
        let job = event.job();
        if self.scan_job == Some(job) {
            self.scan_job = None;
            match event {
                Event::FolderScanned { summary, .. } => self.scanned = Some(summary.clone()),
                Event::Failed { error, .. } => self.scan_error = Some(error.clone()),
                _ => {}
            }
            return true;
        }
        if self.head_job == Some(job) {
            self.head_job = None;
            match event {
                Event::HeadLoaded { head, .. } => {
                    self.status = format!(
                        "Using {} ({} classes, {} features) in the predictions panel.",
                        head.name,
                        head.classes.len(),
                        head.backbone
                    );
                    self.new_head = Some(head.clone());
                }
                Event::Failed { error, .. } => self.status = format!("Could not load: {error}"),
                _ => {}
            }
            return true;
        }
        let Some(running) = &self.running else {
            return false;
        };
        if running.job != job {
            return false;
        }
        match event {
            Event::TrainScanned { summary, .. } => {
                self.scanned = Some(summary.clone());
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
                    done: *done,
                    total: *total,
                    cached: *cached,
                    images_per_s: *images_per_s,
                    eta_s: *eta_s,
                });
                if done == total {
                    self.status = "Training the head…".into();
                }
            }
            Event::TrainStep { step, loss, .. } => {
                self.steps.push([*step as f64, f64::from(*loss)]);
            }
            Event::TrainEpoch { row, .. } => {
                self.status = format!(
                    "Epoch {}/{}: validation accuracy {:.1}%",
                    row.epoch,
                    running.epochs,
                    row.val_acc * 100.0
                );
                self.epoch_rows.push(*row);
            }
            Event::TrainFinished { report, head, .. } => {
                self.running = None;
                let thumbnails = report
                    .mistakes
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        texture(
                            ctx,
                            &format!("mistake-{i}"),
                            &m.thumbnail,
                            TextureOptions::LINEAR,
                        )
                    })
                    .collect();
                self.status = format!(
                    "Done: {:.1}% validation accuracy (epoch {}), saved to {}; the predictions \
                     panel can now use it.",
                    report.val_accuracy * 100.0,
                    report.best_epoch,
                    report.saved_to.display()
                );
                self.epoch_rows = report.epochs.clone();
                self.new_head = Some(head.clone());
                self.finished = Some(Finished {
                    report: (**report).clone(),
                    thumbnails,
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
            _ => {}
        }
        true
    }

    /// The settings, the folder's classes, and the run's progress.
    pub fn controls(&mut self, ui: &mut egui::Ui, jobs: &mut Jobs, env: &TrainEnv) {
        self.poll_dialogs(jobs, env);
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
            self.folder_controls(ui, jobs, env);
            ui.separator();
            self.settings_controls(ui, env);
            ui.separator();
            self.run_controls(ui, jobs, env);
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
            self.compare.controls(ui, jobs, env.installed, request);
            ui.separator();
            ui.strong("Head in use");
            match env.active_head {
                Some(h) => {
                    let acc = h
                        .val_accuracy
                        .map(|a| format!(", {:.1}% validation", a * 100.0))
                        .unwrap_or_default();
                    ui.label(format!(
                        "{} ({}, {} classes, {}{acc})",
                        h.name,
                        h.kind,
                        h.classes.len(),
                        h.backbone
                    ))
                    .on_hover_text(h.path.display().to_string());
                }
                None => {
                    ui.weak("None: the predictions panel shows ImageNet's classes.");
                }
            }
            let loading = self.head_dialog.is_some() || self.head_job.is_some();
            if ui
                .add_enabled(!loading, egui::Button::new("Load head…"))
                .on_hover_text("Use a head saved earlier (.safetensors with its .json)")
                .clicked()
            {
                self.head_dialog = Some(pick_in_thread(ui.ctx(), env.heads_dir, true));
            }
        });
    }

    fn folder_controls(&mut self, ui: &mut egui::Ui, jobs: &mut Jobs, env: &TrainEnv) {
        ui.strong("Photos");
        ui.horizontal(|ui| {
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.folder)
                    .hint_text("a folder of class folders")
                    .desired_width(ui.available_width() - 80.0),
            );
            if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                let dir = PathBuf::from(self.folder.trim());
                self.set_folder(jobs, &dir, env);
            }
            if ui
                .add_enabled(self.folder_dialog.is_none(), egui::Button::new("Choose…"))
                .on_hover_text("Pick the folder (or drop it on the window)")
                .clicked()
            {
                self.folder_dialog = Some(pick_in_thread(ui.ctx(), env.heads_dir, false));
            }
        });
        if ui
            .checkbox(&mut self.cats_vs_dogs, "Oxford-IIIT Pet: cat vs dog")
            .on_hover_text("Group Oxford-IIIT Pet's 37 breeds into cat (capitalised names) and dog")
            .changed()
            && !self.folder.trim().is_empty()
        {
            self.scan(jobs);
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

    fn settings_controls(&mut self, ui: &mut egui::Ui, env: &TrainEnv) {
        let idle = self.running.is_none();
        ui.add_enabled_ui(idle, |ui| {
            ui.strong("Head");
            ui.horizontal(|ui| {
                ui.radio_value(&mut self.mlp, false, "Linear");
                ui.radio_value(&mut self.mlp, true, "MLP");
            });
            egui::Grid::new("train-settings")
                .num_columns(2)
                .show(ui, |ui| {
                    if self.mlp {
                        ui.label("Hidden units");
                        ui.add(egui::DragValue::new(&mut self.hidden).range(2..=4096));
                        ui.end_row();
                        ui.label("Dropout");
                        ui.add(egui::Slider::new(&mut self.dropout, 0.0..=0.9));
                        ui.end_row();
                    }
                    ui.label("Epochs");
                    ui.add(egui::DragValue::new(&mut self.epochs).range(1..=1000));
                    ui.end_row();
                    ui.label("Validation");
                    ui.add(egui::Slider::new(&mut self.val_percent, 5.0..=50.0).suffix(" %"));
                    ui.end_row();
                    ui.label("Learning rate");
                    ui.add(
                        egui::DragValue::new(&mut self.lr)
                            .range(1e-6..=1.0)
                            .speed(1e-5)
                            .custom_formatter(|v, _| format!("{v:.0e}")),
                    );
                    ui.end_row();
                    ui.label("Weight decay");
                    ui.add(
                        egui::DragValue::new(&mut self.weight_decay)
                            .range(0.0..=1.0)
                            .speed(1e-5)
                            .custom_formatter(|v, _| format!("{v:.0e}")),
                    );
                    ui.end_row();
                    ui.label("Batch size");
                    ui.add(egui::DragValue::new(&mut self.batch_size).range(1..=1024));
                    ui.end_row();
                    ui.label("Seed");
                    ui.add(egui::DragValue::new(&mut self.seed));
                    ui.end_row();
                });
            ui.checkbox(&mut self.flip, "Flip augmentation")
                .on_hover_text("Also train on each photo mirrored left-right");
            let block = env.model.map(|m| m.last_block.clone());
            if let Some(None) = block {
                self.fine_tune = false;
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
                egui::Checkbox::new(&mut self.fine_tune, "Fine-tune the last block"),
            )
            .on_hover_text(hover.as_str())
            .on_disabled_hover_text(hover.as_str());
            if self.fine_tune {
                ui.horizontal(|ui| {
                    ui.label("Block learning rate ×");
                    ui.add(
                        egui::DragValue::new(&mut self.fine_tune_factor)
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

    fn run_controls(&mut self, ui: &mut egui::Ui, jobs: &mut Jobs, env: &TrainEnv) {
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
                    self.start(jobs, env);
                }
            }
        }
        if !self.status.is_empty() {
            ui.label(&self.status);
        }
    }

    fn poll_dialogs(&mut self, jobs: &mut Jobs, env: &TrainEnv) {
        if let Some(picked) = poll(&mut self.folder_dialog, &mut self.status) {
            self.set_folder(jobs, &picked, env);
        }
        if let Some(path) = poll(&mut self.head_dialog, &mut self.status) {
            self.head_job = Some(jobs.send(|job| Command::LoadHead { job, path }));
        }
    }

    /// The curves, and after training the confusion matrix, per-class accuracy and mistakes.
    pub fn view(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            if !self.compare.rows().is_empty() {
                self.compare.view(ui);
                ui.separator();
            }
            self.curves(ui);
            let Some(finished) = &self.finished else {
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
                        "{} photos could not be read and were skipped",
                        r.unreadable.len()
                    ),
                )
                .on_hover_text(listed.join("\n"));
            }
            ui.add_space(6.0);
            ui.columns(2, |cols| {
                cols[0].strong("Confusion matrix (rows: true class, columns: predicted)");
                confusion_heatmap(&mut cols[0], &r.classes, &r.confusion);
                cols[1].strong("Per-class accuracy");
                per_class_accuracy(&mut cols[1], &r.classes, &r.confusion);
            });
            ui.add_space(8.0);
            ui.strong(format!(
                "Misclassified validation photos ({}{})",
                r.mistakes_total,
                if r.mistakes_total > r.mistakes.len() {
                    format!(", first {} shown", r.mistakes.len())
                } else {
                    String::new()
                }
            ));
            if r.mistakes.is_empty() {
                ui.weak("None.");
            }
            let mut open = None;
            ui.horizontal_wrapped(|ui| {
                for (m, tex) in r.mistakes.iter().zip(&finished.thumbnails) {
                    let name = |c: usize| r.classes.get(c).map_or("?", String::as_str);
                    let caption = format!("{}, seen as {}", name(m.truth), name(m.predicted));
                    let image = egui::Image::new(tex).fit_to_exact_size(egui::vec2(72.0, 72.0));
                    let button = egui::Button::image_and_text(image, caption);
                    if ui
                        .add(button)
                        .on_hover_text(format!(
                            "{}\ntrue: {}, predicted: {}\nClick to open it in Explore",
                            m.path.display(),
                            name(m.truth),
                            name(m.predicted)
                        ))
                        .clicked()
                    {
                        open = Some(m.path.clone());
                    }
                }
            });
            if open.is_some() {
                self.open_request = open;
            }
        });
    }

    fn curves(&self, ui: &mut egui::Ui) {
        let best = self
            .finished
            .as_ref()
            .map(|f| f.report.best_epoch)
            .or_else(|| best_epoch(&self.epoch_rows));
        let series = |f: fn(&EpochRow) -> f32| -> Vec<[f64; 2]> {
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

/// The epoch the training keeps: highest validation accuracy, ties to the lower loss.
fn best_epoch(rows: &[EpochRow]) -> Option<usize> {
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
fn default_output(dir: &Path, env: &TrainEnv) -> PathBuf {
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "photos".into());
    let model = env.model.map_or("model", |m| m.name.as_str());
    env.heads_dir.join(format!("{folder}-{model}.safetensors"))
}

/// Runs the native folder (or head file) picker on its own thread: it blocks while open.
fn pick_in_thread(
    ctx: &egui::Context,
    start: &Path,
    head_file: bool,
) -> mpsc::Receiver<Option<PathBuf>> {
    let (tx, rx) = mpsc::channel();
    let ctx = ctx.clone();
    let start = start.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("train-dialog".into())
        .spawn(move || {
            let picked = if head_file {
                let mut dialog = rfd::FileDialog::new()
                    .set_title("Load a trained head")
                    .add_filter("Head", &["safetensors"]);
                if start.is_dir() {
                    dialog = dialog.set_directory(&start);
                }
                dialog.pick_file()
            } else {
                rfd::FileDialog::new()
                    .set_title("Choose a folder of labelled photos")
                    .pick_folder()
            };
            let _ = tx.send(picked);
            ctx.request_repaint();
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot open the dialog: {e}");
    }
    rx
}

/// The dialog's answer once it is closed; a dialog that cannot be shown says so in `status`.
fn poll(
    dialog: &mut Option<mpsc::Receiver<Option<PathBuf>>>,
    status: &mut String,
) -> Option<PathBuf> {
    let rx = dialog.as_ref()?;
    match rx.try_recv() {
        Ok(picked) => {
            *dialog = None;
            picked
        }
        Err(mpsc::TryRecvError::Empty) => None,
        Err(mpsc::TryRecvError::Disconnected) => {
            *dialog = None;
            *status = "The file dialog could not be shown on this desktop: type the path.".into();
            None
        }
    }
}

/// The confusion matrix as a heatmap: each row coloured by the share of its true class that
/// went to each prediction, counts written in cells large enough, class names on the rows.
fn confusion_heatmap(ui: &mut egui::Ui, classes: &[String], confusion: &[Vec<usize>]) {
    let k = classes.len().min(confusion.len());
    if k == 0 {
        return;
    }
    let label_width = 110.0;
    let header = 16.0;
    let cell = ((ui.available_width() - label_width) / k as f32).clamp(6.0, 40.0);
    let size = egui::vec2(label_width + cell * k as f32, header + cell * k as f32);
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
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
    if let Some(pos) = response.hover_pos() {
        let rel = pos - origin;
        if rel.x >= 0.0 && rel.y >= 0.0 {
            let (p, t) = ((rel.x / cell) as usize, (rel.y / cell) as usize);
            if p < k && t < k {
                let n = confusion[t][p];
                response.on_hover_text_at_pointer(format!(
                    "true {}, predicted {}: {n} photo{}",
                    classes[t],
                    classes[p],
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
    }
}

/// Each class's validation accuracy (the confusion matrix's diagonal over its row).
fn per_class_accuracy(ui: &mut egui::Ui, classes: &[String], confusion: &[Vec<usize>]) {
    egui::Grid::new("per-class-accuracy")
        .striped(true)
        .show(ui, |ui| {
            for (t, (name, row)) in classes.iter().zip(confusion).enumerate() {
                let total: usize = row.iter().sum();
                let right = row.get(t).copied().unwrap_or(0);
                let acc = if total > 0 {
                    right as f32 / total as f32
                } else {
                    0.0
                };
                ui.label(name);
                ui.label(format!("{right}/{total}"));
                ui.add(
                    egui::ProgressBar::new(acc)
                        .desired_width(120.0)
                        .text(format!("{:.0}%", acc * 100.0)),
                );
                ui.end_row();
            }
        });
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

    fn row(epoch: usize, val_acc: f32, val_loss: f32) -> EpochRow {
        EpochRow {
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

    #[test]
    fn long_names_are_shortened_with_an_ellipsis() {
        assert_eq!(truncate("Abyssinian", 20), "Abyssinian");
        assert_eq!(truncate("Abyssinian", 5), "Abys…");
    }
}
