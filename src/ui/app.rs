//! The explorer window's app: owns the settings, the worker handle and the jobs in flight,
//! turns user intents (open, drop, paste, pick a model) into worker [`Command`]s and worker
//! [`Event`]s into what the panels draw. It never runs a model.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui::{self, Color32, ColorImage};

use super::attack::AttackPanel;
use super::dream::DreamPanel;
use super::explorer::{self, ExplorerState};
use super::frame_stats::FrameStats;
use super::predictions;
use super::settings::Settings;
use super::setup::{self, DownloadState, SetupAction};
use super::train::{TrainEnv, TrainPanel};
use super::widgets::Jobs;
use crate::device::DeviceChoice;
use crate::weights::{self, ModelStatus};
use crate::worker::{
    Analysis, CancelToken, Command, Event, HeadSummary, JobId, ModelSummary, PhotoSource, Worker,
    WorkerConfig,
};

/// The photo the app opens with when none is given.
pub const BUNDLED_PHOTO: &[u8] = include_bytes!("../../assets/chelsea.png");
pub const BUNDLED_PHOTO_NAME: &str = "chelsea.png";

/// How long the UI may spend draining worker events in one frame.
const EVENT_BUDGET: Duration = Duration::from_millis(10);

/// Asks the app to save a picture of its window once everything is drawn, then quit.
#[derive(Debug, Clone)]
pub struct ScreenshotRequest {
    pub path: PathBuf,
    /// Filled with the outcome before the window closes.
    pub outcome: Arc<Mutex<Option<Result<String, String>>>>,
    /// Give up (and fail) after this long.
    pub timeout: Duration,
}

/// How the app starts.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    pub worker: WorkerConfig,
    /// Photo to open first (default: the bundled cat).
    pub photo: Option<PathBuf>,
    /// Model to start with instead of the saved choice.
    pub model: Option<String>,
    /// Device to use instead of the saved choice.
    pub device: Option<DeviceChoice>,
    /// Layer to show first.
    pub layer: Option<String>,
    /// Channel of that layer to open first.
    pub channel: Option<usize>,
    /// Tab to show first.
    pub tab: Tab,
    pub screenshot: Option<ScreenshotRequest>,
}

/// A model (or device) switch in flight, with the choices to go back to if it fails.
struct ModelRequest {
    job: JobId,
    name: String,
    previous_model: Option<String>,
    previous_device: String,
}

struct PhotoJob {
    job: JobId,
    cancel: CancelToken,
    photo: PhotoSource,
}

struct DownloadJob {
    job: JobId,
    cancel: CancelToken,
    state: DownloadState,
}

struct ScreenshotState {
    request: ScreenshotRequest,
    started: Instant,
    ready_frames: u32,
    requested: bool,
    image: Arc<Mutex<Option<Arc<ColorImage>>>>,
    finished: bool,
}

/// The window's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Explore,
    Dream,
    Attack,
    Train,
}

impl Tab {
    pub const ALL: [Self; 4] = [Self::Explore, Self::Dream, Self::Attack, Self::Train];

    pub fn label(self) -> &'static str {
        match self {
            Self::Explore => "Explore",
            Self::Dream => "Dream",
            Self::Attack => "Attack",
            Self::Train => "Train",
        }
    }
}

/// What a panel asked for; applied after drawing.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    OpenDialog,
    Paste,
    UseModel(String),
    UseDevice(DeviceChoice),
    Download(String),
    CancelDownload,
    ShowModels(bool),
    DismissNotice,
}

/// The explorer window.
pub struct ExplorerApp {
    settings: Settings,
    worker: Worker,
    config: WorkerConfig,
    catalogue: Vec<ModelStatus>,
    next_job: u64,
    model: Option<ModelSummary>,
    model_job: Option<ModelRequest>,
    /// The photo shown (or, before the first analysis, the one to show first).
    photo: PhotoSource,
    photo_job: Option<PhotoJob>,
    analysis: Option<Analysis>,
    explorer: ExplorerState,
    preferred_layer: Option<String>,
    preferred_channel: Option<usize>,
    download: Option<DownloadJob>,
    show_models: bool,
    notice: Option<String>,
    dialog: Option<mpsc::Receiver<Option<PathBuf>>>,
    frame_stats: FrameStats,
    screenshot: Option<ScreenshotState>,
    tab: Tab,
    dream: DreamPanel,
    attack: AttackPanel,
    train: TrainPanel,
    /// The trained head the worker applies to photos, if any.
    head: Option<HeadSummary>,
    /// The predictions panel shows the head's classes (else ImageNet's).
    show_head: bool,
}

impl ExplorerApp {
    /// Builds the app: restores the saved settings, starts the worker, loads the model.
    pub fn new(cc: &eframe::CreationContext<'_>, options: AppOptions) -> anyhow::Result<Self> {
        let saved: Option<Settings> = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY));
        Self::with_settings(&cc.egui_ctx, saved.unwrap_or_default(), options)
    }

    /// Builds the app with `settings` (tests start from defaults).
    pub fn with_settings(
        ctx: &egui::Context,
        settings: Settings,
        options: AppOptions,
    ) -> anyhow::Result<Self> {
        let mut settings = settings.sanitised();
        if let Some(device) = options.device {
            settings.device = device.to_string();
        }
        let repaint = ctx.clone();
        let worker = Worker::spawn(
            options.worker.clone(),
            Arc::new(move || repaint.request_repaint()),
        )
        .map_err(|e| anyhow::anyhow!("cannot start the model worker thread: {e}"))?;
        let photo = match &options.photo {
            Some(path) => PhotoSource::File(path.clone()),
            None => bundled_photo(),
        };
        let mut app = Self {
            settings,
            worker,
            catalogue: weights::catalogue_status(&options.worker.weights_dir),
            config: options.worker,
            next_job: 0,
            model: None,
            model_job: None,
            photo,
            photo_job: None,
            analysis: None,
            explorer: ExplorerState::default(),
            preferred_layer: options.layer,
            preferred_channel: options.channel,
            download: None,
            show_models: false,
            notice: None,
            dialog: None,
            frame_stats: FrameStats::default(),
            screenshot: options.screenshot.map(|request| ScreenshotState {
                request,
                started: Instant::now(),
                ready_frames: 0,
                requested: false,
                image: Arc::default(),
                finished: false,
            }),
            tab: options.tab,
            dream: DreamPanel::default(),
            attack: AttackPanel::default(),
            train: TrainPanel::default(),
            head: None,
            show_head: false,
        };
        let installed = |name: &str| app.catalogue.iter().any(|m| m.name == name && m.present);
        let start_model = options
            .model
            .clone()
            .or_else(|| app.settings.model.clone().filter(|m| installed(m)))
            .or_else(|| {
                weights::best_present_model(&app.config.weights_dir).map(|s| s.name.to_string())
            });
        match start_model {
            Some(name) => app.load_model(name),
            None => tracing::info!("no weights installed: showing the models panel"),
        }
        Ok(app)
    }

    /// The analysis shown, if any.
    pub fn analysis(&self) -> Option<&Analysis> {
        self.analysis.as_ref()
    }

    /// The loaded model, if any.
    pub fn model(&self) -> Option<&ModelSummary> {
        self.model.as_ref()
    }

    /// The error or message shown at the top of the window.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// The settings as they would be saved.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Frame times recorded so far.
    pub fn frame_stats(&self) -> &FrameStats {
        &self.frame_stats
    }

    /// Whether a model or photo job is in flight.
    pub fn is_busy(&self) -> bool {
        self.model_job.is_some() || self.photo_job.is_some()
    }

    /// The tab shown.
    pub fn tab(&self) -> Tab {
        self.tab
    }

    /// The Dream tab.
    pub fn dream_panel(&self) -> &DreamPanel {
        &self.dream
    }

    /// The Attack tab.
    pub fn attack_panel(&self) -> &AttackPanel {
        &self.attack
    }

    /// The Train tab.
    pub fn train_panel(&self) -> &TrainPanel {
        &self.train
    }

    /// The trained head in use, if any.
    pub fn head(&self) -> Option<&HeadSummary> {
        self.head.as_ref()
    }

    /// Whether the predictions panel shows the trained head's classes.
    pub fn shows_head_predictions(&self) -> bool {
        self.show_head && self.analysis.as_ref().is_some_and(|a| a.head.is_some())
    }

    /// The models whose weights are in the weights folder, in catalogue order.
    fn installed_models(&self) -> Vec<String> {
        self.catalogue
            .iter()
            .filter(|m| m.present)
            .map(|m| m.name.clone())
            .collect()
    }

    /// Uses `dir` as the Train tab's folder and shows that tab.
    pub fn train_on_folder(&mut self, dir: &std::path::Path) {
        self.tab = Tab::Train;
        let heads_dir = self.heads_dir();
        let env = TrainEnv {
            model: self.model.as_ref(),
            heads_dir: &heads_dir,
            active_head: self.head.as_ref(),
            installed: &self.installed_models(),
        };
        let mut jobs = Jobs {
            worker: &self.worker,
            next: &mut self.next_job,
        };
        self.train.set_folder(&mut jobs, dir, &env);
    }

    /// Where trained heads are saved by default.
    fn heads_dir(&self) -> PathBuf {
        self.config.weights_dir.join("heads")
    }

    /// Opens `photo`: the model runs on it and, if it can be read, it replaces the photo shown.
    pub fn open_photo(&mut self, photo: PhotoSource) {
        if let Some(old) = self.photo_job.take() {
            old.cancel.cancel();
        }
        if self.model.is_none() && self.model_job.is_none() {
            // Nothing to run it on yet: show it as soon as a model is ready.
            self.notice = Some(format!(
                "{} will be shown once a model is installed.",
                photo.name()
            ));
            self.photo = photo;
            return;
        }
        let job = self.new_job();
        let cancel = CancelToken::new();
        self.worker.send(Command::Analyse {
            job,
            cancel: cancel.clone(),
            photo: photo.clone(),
        });
        self.photo_job = Some(PhotoJob { job, cancel, photo });
    }

    fn new_job(&mut self) -> JobId {
        self.next_job += 1;
        JobId(self.next_job)
    }

    fn device_choice(&self) -> DeviceChoice {
        self.settings.device.parse().unwrap_or_default()
    }

    /// Loads model `name` on the chosen device; `previous_device` is the device setting to go
    /// back to if that fails.
    fn load_model_on(&mut self, name: String, previous_device: String) {
        let job = self.new_job();
        let previous_model = self.model.as_ref().map(|m| m.name.clone());
        self.settings.model = Some(name.clone());
        self.worker.send(Command::LoadModel {
            job,
            model: name.clone(),
            device: self.device_choice(),
        });
        self.model_job = Some(ModelRequest {
            job,
            name,
            previous_model,
            previous_device,
        });
    }

    fn load_model(&mut self, name: String) {
        let device = self.settings.device.clone();
        self.load_model_on(name, device);
    }

    fn handle_event(&mut self, ctx: &egui::Context, event: Event) {
        if self.dream.on_event(ctx, &event)
            || self.attack.on_event(ctx, &event)
            || self.train.on_event(ctx, &event)
        {
            if let Some(head) = self.train.take_new_head() {
                tracing::info!(head = %head.name, backbone = %head.backbone, "head in use");
                self.head = Some(head);
                self.show_head = true;
                // Classify the photo shown with the new head too (a photo still on its way
                // is analysed after the training, with the new head already).
                if self.analysis.is_some() && self.photo_job.is_none() {
                    let photo = self.photo.clone();
                    self.open_photo(photo);
                }
            }
            return;
        }
        let job = event.job();
        let is_model_job = self.model_job.as_ref().is_some_and(|r| r.job == job);
        let is_photo_job = self.photo_job.as_ref().is_some_and(|p| p.job == job);
        let is_download = self.download.as_ref().is_some_and(|d| d.job == job);
        match event {
            Event::ModelLoaded { model, .. } if is_model_job => {
                tracing::info!(model = %model.name, device = %model.device, "model ready");
                self.model_job = None;
                self.model = Some(model);
                self.show_models = false;
                // Show the current photo through the new model.
                let photo = self.photo.clone();
                self.open_photo(photo);
            }
            Event::Analysed { analysis, .. } if is_photo_job => {
                if let Some(done) = self.photo_job.take() {
                    self.photo = done.photo;
                }
                tracing::info!(
                    photo = %analysis.photo_name,
                    forward_ms = analysis.forward_ms,
                    total_ms = analysis.total_ms,
                    "analysed"
                );
                let prefer = self.preferred_layer.take();
                if let Some(channel) = self.preferred_channel.take() {
                    self.explorer.channel = Some(channel);
                }
                self.explorer.set_analysis(
                    ctx,
                    self.analysis.as_ref(),
                    &analysis,
                    prefer.as_deref(),
                );
                self.analysis = Some(*analysis);
                if self
                    .notice
                    .as_deref()
                    .is_some_and(|n| n.starts_with("Could not open"))
                {
                    self.notice = None;
                }
            }
            Event::DownloadProgress { done, total, .. } if is_download => {
                if let Some(d) = &mut self.download {
                    d.state.done = done;
                    d.state.total = total;
                }
            }
            Event::Downloaded { model, path, .. } if is_download => {
                tracing::info!(%model, path = %path.display(), "downloaded");
                self.download = None;
                self.catalogue = weights::catalogue_status(&self.config.weights_dir);
                self.notice = None;
                if self.model.is_none() || self.settings.model.as_deref() == Some(&model) {
                    self.load_model(model);
                } else {
                    self.notice = Some(format!(
                        "{model} is installed: choose it in the Model menu."
                    ));
                }
            }
            Event::Cancelled { .. } if is_photo_job => self.photo_job = None,
            Event::Cancelled { .. } if is_download => {
                self.download = None;
                self.notice = Some("Download cancelled.".into());
            }
            Event::Failed { error, .. } => {
                let failed_model = if is_model_job {
                    self.model_job.take()
                } else {
                    None
                };
                if let Some(request) = failed_model {
                    // The worker keeps the model it had: so do the choices.
                    self.settings.model = request.previous_model;
                    self.settings.device = request.previous_device;
                    let kept = match &self.model {
                        Some(m) => format!(" Still using {} on {}.", m.name, m.device),
                        None => String::new(),
                    };
                    self.notice = Some(format!("Could not load {}: {error}{kept}", request.name));
                } else if is_photo_job {
                    let name = self
                        .photo_job
                        .take()
                        .map(|p| p.photo.name())
                        .unwrap_or_default();
                    self.notice = Some(format!("Could not open {name}: {error}"));
                } else if is_download {
                    let name = self
                        .download
                        .take()
                        .map(|d| d.state.model)
                        .unwrap_or_default();
                    self.notice = Some(format!("Could not download {name}: {error}"));
                } else {
                    tracing::debug!(%job, %error, "failure of a job no longer shown");
                }
            }
            other => tracing::debug!(job = %other.job(), "event of a job no longer shown"),
        }
    }

    fn drain_events(&mut self, ctx: &egui::Context) {
        let started = Instant::now();
        while let Some(event) = self.worker.try_recv() {
            self.handle_event(ctx, event);
            if started.elapsed() > EVENT_BUDGET {
                ctx.request_repaint();
                break;
            }
        }
    }

    fn apply(&mut self, ctx: &egui::Context, action: Action) {
        match action {
            Action::OpenDialog => self.open_dialog(ctx),
            Action::Paste => ctx.send_viewport_cmd(egui::ViewportCommand::RequestPaste),
            Action::UseModel(name) => {
                let present = self.catalogue.iter().any(|m| m.name == name && m.present);
                if present {
                    self.load_model(name);
                } else {
                    self.show_models = true;
                }
            }
            Action::UseDevice(device) => {
                let previous = std::mem::replace(&mut self.settings.device, device.to_string());
                if let Some(name) = self.settings.model.clone() {
                    self.load_model_on(name, previous);
                }
            }
            Action::Download(model) => {
                if self.download.is_none() {
                    let job = self.new_job();
                    let cancel = CancelToken::new();
                    self.worker.send(Command::Download {
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
            }
            Action::CancelDownload => {
                // Hugging Face downloads cannot stop mid-file: the download thread is left to
                // notice the token and clean up, and the window moves on at once.
                if let Some(d) = self.download.take() {
                    d.cancel.cancel();
                    self.notice = Some(format!("Download of {} cancelled.", d.state.model));
                }
            }
            Action::ShowModels(show) => {
                self.show_models = show;
                self.catalogue = weights::catalogue_status(&self.config.weights_dir);
            }
            Action::DismissNotice => self.notice = None,
        }
    }

    /// The native file dialog runs on its own thread: it may block for as long as it is open.
    fn open_dialog(&mut self, ctx: &egui::Context) {
        if self.dialog.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let folder = self.settings.last_folder.clone();
        let spawned = std::thread::Builder::new()
            .name("open-dialog".into())
            .spawn(move || {
                let mut dialog = rfd::FileDialog::new().set_title("Open a photo").add_filter(
                    "Images",
                    &["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"],
                );
                if let Some(folder) = folder {
                    dialog = dialog.set_directory(folder);
                }
                let _ = tx.send(dialog.pick_file());
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => self.dialog = Some(rx),
            Err(e) => self.notice = Some(format!("Cannot open the file dialog: {e}")),
        }
    }

    fn poll_dialog(&mut self) {
        let Some(rx) = &self.dialog else { return };
        match rx.try_recv() {
            Ok(picked) => {
                self.dialog = None;
                if let Some(path) = picked {
                    self.settings.last_folder = path.parent().map(|p| p.to_path_buf());
                    self.open_photo(PhotoSource::File(path));
                }
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => {
                self.dialog = None;
                self.notice = Some("The file dialog could not be shown on this desktop.".into());
            }
        }
    }

    /// Dropped files and pasted images or paths.
    fn handle_input(&mut self, ctx: &egui::Context) {
        let (dropped, events) = ctx.input(|i| (i.raw.dropped_files.clone(), i.events.clone()));
        if let Some(file) = dropped.first() {
            let path = file.path().to_path_buf();
            if dropped.len() > 1 {
                self.notice = Some(format!(
                    "{} files were dropped: showing the first, {}.",
                    dropped.len(),
                    path.display()
                ));
            }
            if path.is_file() {
                self.open_photo(PhotoSource::File(path));
            } else if path.is_dir() {
                // A folder is a training set.
                self.train_on_folder(&path);
            } else {
                // No usable path (e.g. a sandboxed drop): read the bytes instead.
                match file.bytes() {
                    Ok(bytes) => self.open_photo(PhotoSource::Encoded {
                        name: path.display().to_string(),
                        bytes: bytes.into(),
                    }),
                    Err(e) => self.notice = Some(format!("Could not open {}: {e}", path.display())),
                }
            }
        }
        for event in events {
            match event {
                egui::Event::PasteImage(image) => {
                    let rgba: Vec<u8> = image
                        .pixels
                        .iter()
                        .flat_map(|c| c.to_srgba_unmultiplied())
                        .collect();
                    self.open_photo(PhotoSource::Pixels {
                        name: "pasted image".into(),
                        width: image.size[0],
                        height: image.size[1],
                        rgba: rgba.into(),
                    });
                }
                egui::Event::Paste(text) if !ctx.egui_wants_keyboard_input() => {
                    let text = text.trim();
                    let path = PathBuf::from(text.strip_prefix("file://").unwrap_or(text));
                    if path.is_file() {
                        self.open_photo(PhotoSource::File(path));
                    } else {
                        self.notice = Some(
                            "The clipboard holds neither an image nor the path of a file.".into(),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn toolbar(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
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
                actions.push(Action::OpenDialog);
            }
            if ui
                .button("Paste")
                .on_hover_text("Paste an image or a file path (Ctrl+V)")
                .clicked()
            {
                actions.push(Action::Paste);
            }
            ui.separator();
            let current = self
                .model_job
                .as_ref()
                .map(|r| r.name.clone())
                .or_else(|| self.model.as_ref().map(|m| m.name.clone()))
                .unwrap_or_else(|| "none".into());
            let model_label = ui.label("Model");
            egui::ComboBox::from_id_salt("model")
                .selected_text(current.clone())
                .show_ui(ui, |ui| {
                    for m in &self.catalogue {
                        let text = if m.present {
                            m.name.clone()
                        } else {
                            format!("{} (not installed)", m.name)
                        };
                        if ui.selectable_label(m.name == current, text).clicked() {
                            actions.push(Action::UseModel(m.name.clone()));
                        }
                    }
                    ui.separator();
                    if ui.button("Manage models…").clicked() {
                        actions.push(Action::ShowModels(true));
                    }
                })
                .response
                .labelled_by(model_label.id);
            let device = self.device_choice();
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
                            actions.push(Action::UseDevice(choice));
                        }
                    }
                })
                .response
                .labelled_by(device_label.id);
            if let Some(m) = &self.model {
                ui.weak(format!("on {}", m.device));
            }
        });
    }

    fn status_bar(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if let Some(request) = &self.model_job {
                busy_indicator(ui);
                ui.label(format!("Loading {}…", request.name));
            } else if let Some(p) = &self.photo_job {
                busy_indicator(ui);
                ui.label(format!("Running the model on {}…", p.photo.name()));
            } else if let Some(a) = &self.analysis {
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

    fn photo_panel(&mut self, ui: &mut egui::Ui) {
        let Some(a) = &self.analysis else {
            ui.weak("No photo yet.");
            return;
        };
        ui.heading(&a.photo_name);
        if let Some(photo) = self.explorer.photo_texture() {
            let side = ui.available_width().min(320.0);
            ui.add(egui::Image::new(photo).fit_to_exact_size(egui::vec2(side, side)))
                .on_hover_text("What the network sees: resized to 256 and centre-cropped to 224, as in torchvision");
        }
        ui.weak(format!(
            "{}×{} network view of a {}×{} photo",
            a.network_view.width, a.network_view.height, a.original_width, a.original_height
        ));
        ui.add_space(8.0);
        ui.strong("Predictions");
        let mut show_head = self.show_head;
        if let Some(h) = &a.head {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut show_head, false, "ImageNet")
                    .on_hover_text("The network's own 1000 ImageNet classes");
                ui.selectable_value(&mut show_head, true, format!("Head: {}", h.head))
                    .on_hover_text("The classes of the head trained in the Train tab");
            });
        }
        match &a.head {
            Some(h) if show_head => predictions::show_classes(ui, &h.top, "head class"),
            _ => predictions::show(ui, &a.top5),
        }
        if let Some(note) = &a.head_note {
            ui.weak(note);
        }
        self.show_head = show_head;
    }

    fn drop_highlight(&self, ctx: &egui::Context) {
        let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
        if !hovering {
            return;
        }
        let painter = ctx.layer_painter(egui::LayerId::new(
            egui::Order::Foreground,
            egui::Id::unique("drop"),
        ));
        let rect = ctx.content_rect().shrink(6.0);
        painter.rect_filled(rect, 12.0, Color32::from_black_alpha(160));
        painter.rect_stroke(
            rect,
            12.0,
            egui::Stroke::new(3.0, ctx.global_style().visuals.selection.bg_fill),
            egui::StrokeKind::Inside,
        );
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            "Drop the photo to see what the network makes of it",
            egui::FontId::proportional(24.0),
            Color32::WHITE,
        );
    }

    fn screenshot_step(&mut self, ctx: &egui::Context) {
        let busy = self.is_busy();
        let drawn =
            self.analysis.is_some() && (self.tab != Tab::Explore || self.explorer.layer_drawn());
        let no_model = self.model.is_none() && self.model_job.is_none() && self.download.is_none();
        let notice = self.notice.clone();
        let summary = self.frame_stats.busy_summary();
        let Some(shot) = &mut self.screenshot else {
            return;
        };
        if shot.finished {
            return;
        }
        let finish = |shot: &mut ScreenshotState, outcome: Result<String, String>| {
            *shot
                .request
                .outcome
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(outcome);
            shot.finished = true;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        };
        let taken = shot.image.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(image) = taken {
            let outcome = save_png(&image, &shot.request.path).map(|()| {
                let mut text = format!(
                    "saved a {}x{} screenshot to {}",
                    image.size[0],
                    image.size[1],
                    shot.request.path.display()
                );
                if let Some(s) = summary {
                    text.push_str(&format!("\nUI frame time: {s}"));
                }
                text
            });
            finish(shot, outcome);
            return;
        }
        if shot.started.elapsed() > shot.request.timeout {
            let why = notice.unwrap_or_else(|| "the photo was not analysed in time".into());
            finish(shot, Err(format!("no screenshot: {why}")));
            return;
        }
        if no_model && !busy {
            let why = notice.unwrap_or_else(|| "no model is installed".into());
            finish(shot, Err(format!("no screenshot: {why}")));
            return;
        }
        if !shot.requested {
            if drawn && !busy {
                shot.ready_frames += 1;
            }
            // A few frames after everything arrived, so layout and textures have settled.
            if shot.ready_frames >= 5 {
                shot.requested = true;
                let slot = shot.image.clone();
                let repaint = ctx.clone();
                ctx.request_screenshot(move |image| {
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(image);
                    repaint.request_repaint();
                });
            }
        }
        ctx.request_repaint_after(Duration::from_millis(50));
    }
}

/// A turning arc that asks for about 30 frames a second while shown (egui's spinner asks for
/// every frame, which without vsync takes a whole core from the models).
fn busy_indicator(ui: &mut egui::Ui) {
    let size = ui.spacing().interact_size.y;
    let (rect, response) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    response
        .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ProgressIndicator, true, "working"));
    let t = ui.input(|i| i.time) as f32;
    let radius = rect.height() * 0.35;
    let points: Vec<egui::Pos2> = (0..=24)
        .map(|i| {
            let angle = t * 6.0 + i as f32 / 24.0 * std::f32::consts::PI * 1.5;
            rect.center() + radius * egui::vec2(angle.cos(), angle.sin())
        })
        .collect();
    ui.painter().add(egui::Shape::line(
        points,
        egui::Stroke::new(2.0, ui.visuals().strong_text_color()),
    ));
    ui.ctx().request_repaint_after(Duration::from_millis(33));
}

/// The devices this build can use.
pub fn device_choices() -> Vec<DeviceChoice> {
    let mut choices = vec![DeviceChoice::Auto, DeviceChoice::Cpu];
    if cfg!(feature = "cuda") {
        choices.push(DeviceChoice::Cuda);
    }
    if cfg!(feature = "metal") {
        choices.push(DeviceChoice::Metal);
    }
    choices
}

/// The bundled cat photo.
pub fn bundled_photo() -> PhotoSource {
    PhotoSource::Encoded {
        name: BUNDLED_PHOTO_NAME.into(),
        bytes: BUNDLED_PHOTO.into(),
    }
}

fn save_png(image: &ColorImage, path: &std::path::Path) -> Result<(), String> {
    let [w, h] = image.size;
    let rgba: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|c| c.to_srgba_unmultiplied())
        .collect();
    let buffer = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
        .ok_or_else(|| "the screenshot has the wrong number of pixels".to_string())?;
    buffer
        .save(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl eframe::App for ExplorerApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        // Frames drawn while the model runs on a photo are the ones that must stay smooth.
        self.frame_stats
            .record(frame.info().cpu_usage, self.photo_job.is_some());
        self.drain_events(&ctx);
        self.poll_dialog();
        self.handle_input(&ctx);
        if let Some(a) = &self.analysis {
            explorer::handle_keys(&ctx, &mut self.explorer, a, self.settings.channel_order);
        }
        let mut actions = Vec::new();
        egui::Panel::top("toolbar").show(ui, |ui| {
            ui.add_space(4.0);
            self.toolbar(ui, &mut actions);
            if let Some(notice) = &self.notice {
                ui.horizontal(|ui| {
                    ui.colored_label(ui.visuals().warn_fg_color, notice);
                    if ui.small_button("Dismiss").clicked() {
                        actions.push(Action::DismissNotice);
                    }
                });
            }
            ui.add_space(2.0);
        });
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        let setup_needed = self.show_models
            || (self.model.is_none() && self.model_job.is_none() && self.analysis.is_none());
        if setup_needed {
            egui::CentralPanel::default().show(ui, |ui| {
                let first_run = !self.catalogue.iter().any(|m| m.present);
                let action = setup::show(
                    ui,
                    &self.catalogue,
                    self.download.as_ref().map(|d| &d.state),
                    first_run,
                    &self.config.weights_dir,
                );
                match action {
                    Some(SetupAction::Download(m)) => actions.push(Action::Download(m)),
                    Some(SetupAction::CancelDownload) => actions.push(Action::CancelDownload),
                    Some(SetupAction::Use(m)) => actions.push(Action::UseModel(m)),
                    Some(SetupAction::Close) => actions.push(Action::ShowModels(false)),
                    None => {}
                }
            });
        } else if self.tab == Tab::Dream {
            let mut jobs = Jobs {
                worker: &self.worker,
                next: &mut self.next_job,
            };
            let photo = self.photo.clone();
            egui::Panel::left("dream-controls")
                .resizable(true)
                .default_size(300.0)
                .size_range(240.0..=480.0)
                .show(ui, |ui| self.dream.controls(ui, &mut jobs, &photo));
            egui::CentralPanel::default().show(ui, |ui| self.dream.view(ui));
        } else if self.tab == Tab::Train {
            let heads_dir = self.heads_dir();
            let installed = self.installed_models();
            let env = TrainEnv {
                model: self.model.as_ref(),
                heads_dir: &heads_dir,
                active_head: self.head.as_ref(),
                installed: &installed,
            };
            let mut jobs = Jobs {
                worker: &self.worker,
                next: &mut self.next_job,
            };
            egui::Panel::left("train-controls")
                .resizable(true)
                .default_size(330.0)
                .size_range(260.0..=520.0)
                .show(ui, |ui| self.train.controls(ui, &mut jobs, &env));
            egui::CentralPanel::default().show(ui, |ui| self.train.view(ui));
        } else if self.tab == Tab::Attack {
            let mut jobs = Jobs {
                worker: &self.worker,
                next: &mut self.next_job,
            };
            let photo = self.photo.clone();
            egui::Panel::left("attack-controls")
                .resizable(true)
                .default_size(300.0)
                .size_range(240.0..=480.0)
                .show(ui, |ui| self.attack.controls(ui, &mut jobs, &photo));
            egui::CentralPanel::default().show(ui, |ui| self.attack.view(ui));
        } else {
            egui::Panel::left("photo")
                .resizable(true)
                .default_size(300.0)
                .size_range(220.0..=520.0)
                .show(ui, |ui| self.photo_panel(ui));
            if let Some(a) = &self.analysis {
                egui::Panel::left("layers")
                    .resizable(true)
                    .default_size(190.0)
                    .size_range(150.0..=360.0)
                    .show(ui, |ui| {
                        ui.strong("Layers");
                        explorer::layer_list(ui, &mut self.explorer, a);
                    });
            }
            egui::CentralPanel::default().show(ui, |ui| match &self.analysis {
                Some(a) => explorer::show(ui, &mut self.explorer, a, &mut self.settings),
                None => {
                    ui.horizontal(|ui| {
                        busy_indicator(ui);
                        ui.label("Working…");
                    });
                }
            });
        }
        for action in actions {
            self.apply(&ctx, action);
        }
        if let Some(path) = self.train.take_open_request() {
            self.tab = Tab::Explore;
            self.open_photo(PhotoSource::File(path));
        }
        if let Some((layer, channel)) = self.explorer.dream_request.take() {
            self.dream.aim_at_channel(layer, channel);
            self.tab = Tab::Dream;
            let mut jobs = Jobs {
                worker: &self.worker,
                next: &mut self.next_job,
            };
            self.dream.start(&mut jobs, &self.photo);
        }
        self.drop_highlight(&ctx);
        self.screenshot_step(&ctx);
        if self.download.is_some() {
            // The download's speed and the spinner move even between progress events.
            ctx.request_repaint_after(Duration::from_millis(250));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}
