//! The explorer window's app shell: it owns the worker handle, the job ids, the saved
//! settings, the model choice and the four tabs ([`Tab`]), and each frame drains the
//! worker's events ([`events`]), reads dropped and pasted files ([`input`]), draws the
//! toolbar ([`toolbar`]) and the tab shown, then applies what the panels asked for
//! ([`commands`]). It never runs a model.

mod commands;
mod events;
mod input;
mod models;
pub mod screenshot;
mod toolbar;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eframe::egui;

use self::models::Models;
use self::screenshot::{Readiness, Screenshotter};
use super::attack::AttackPanel;
use super::command::{Commands, JobIds, Notice};
use super::dream::DreamPanel;
use super::explore::ExplorePanel;
use super::frame_stats::FrameStats;
use super::panel::{self, Panel, PanelEnv};
use super::settings::Settings;
use super::train::TrainPanel;
use super::widgets::PendingPick;
use crate::device::DeviceChoice;
use crate::worker::{Analysis, HeadSummary, ModelSummary, PhotoSource, Worker, WorkerConfig};

pub use super::panel::Tab;
pub use screenshot::ScreenshotRequest;

/// The photo the app opens with when none is given.
pub const BUNDLED_PHOTO: &[u8] = include_bytes!("../../../assets/chelsea.png");
pub const BUNDLED_PHOTO_NAME: &str = "chelsea.png";

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
    /// Open the Dream tab's DeepDream section (and that tab) and dream the photo at once.
    pub deepdream: bool,
    /// Open the Dream tab and dream its target at once with the saved settings.
    pub dream: bool,
    /// Open the Attack tab and attack the photo at once with the saved settings.
    pub attack: bool,
    /// Open the Train tab and train a head on this folder at once with the saved settings.
    pub train: Option<std::path::PathBuf>,
    /// Dream the first layer's gallery at start (Explore).
    pub gallery: bool,
    /// Show Explore's "Where it looks" with this method (`Some(None)`: all side by side).
    pub explain: Option<Option<crate::worker::Method>>,
    pub screenshot: Option<ScreenshotRequest>,
}

/// The explorer window.
pub struct ExplorerApp {
    worker: Worker,
    /// Every job id of the window comes from here.
    jobs: JobIds,
    config: WorkerConfig,
    models: Models,
    /// The photo shown (or, before the first analysis, the one to show first).
    photo: PhotoSource,
    /// The trained head the worker applies to photos, if any.
    head: Option<HeadSummary>,
    notice: Option<Notice>,
    /// Whether the keys overlay (F1 or ?) is shown.
    help_open: bool,
    /// Where the last photo was opened from, for the next "Open…".
    last_folder: Option<PathBuf>,
    open_dialog: Option<PendingPick>,
    tab: Tab,
    explore: ExplorePanel,
    dream: DreamPanel,
    attack: AttackPanel,
    train: TrainPanel,
    frame_stats: FrameStats,
    screenshot: Option<Screenshotter>,
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
        let settings = settings.sanitised();
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
        let device = options.device.unwrap_or(settings.device);
        let mut app = Self {
            worker,
            jobs: JobIds::default(),
            models: Models::new(&options.worker.weights_dir, settings.model, device),
            config: options.worker,
            photo,
            head: None,
            notice: None,
            help_open: false,
            last_folder: settings.last_folder,
            open_dialog: None,
            tab: if options.deepdream || options.dream {
                Tab::Dream
            } else if options.attack {
                Tab::Attack
            } else {
                options.tab
            },
            explore: ExplorePanel::new(
                settings.explore,
                options.layer,
                options.channel,
                options.gallery,
            ),
            dream: DreamPanel::new(settings.dream),
            attack: AttackPanel::new(settings.attack),
            train: TrainPanel::new(settings.train),
            frame_stats: FrameStats::default(),
            screenshot: options.screenshot.map(Screenshotter::new),
        };
        if let Some(method) = options.explain {
            app.explore.explain_at_start(method);
        }
        if options.deepdream {
            app.dream.deepdream_mut().start_when_ready();
        }
        if options.dream {
            app.dream.start_when_ready();
        }
        if options.attack {
            app.attack.start_when_ready();
        }
        if let Some(dir) = &options.train {
            let mut commands = app.commands();
            commands.push(super::command::AppCommand::TrainOnFolder(dir.clone()));
            app.apply_all(ctx, commands.into_queue());
            app.train.start_when_ready();
        }
        match app
            .models
            .first_model(options.model, &app.config.weights_dir)
        {
            Some(name) => {
                let mut commands = app.commands();
                app.models.load(name, &mut commands);
                app.apply_all(ctx, commands.into_queue());
            }
            None => tracing::info!("no weights installed: showing the models panel"),
        }
        Ok(app)
    }

    /// The analysis shown, if any.
    pub fn analysis(&self) -> Option<&Analysis> {
        self.explore.analysis()
    }

    /// The loaded model, if any.
    pub fn model(&self) -> Option<&ModelSummary> {
        self.models.loaded()
    }

    /// The error or message shown at the top of the window.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_ref().map(|n| n.text.as_str())
    }

    /// The settings as they would be saved.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::default();
        s.model = self.models.chosen().map(str::to_string);
        s.device = self.models.device();
        s.last_folder = self.last_folder.clone();
        s.explore = self.explore.settings().clone();
        s.dream = self.dream.settings().clone();
        s.attack = self.attack.settings().clone();
        s.train = self.train.settings().clone();
        s
    }

    /// Frame times recorded so far.
    pub fn frame_stats(&self) -> &FrameStats {
        &self.frame_stats
    }

    /// Whether a model or photo job is in flight.
    pub fn is_busy(&self) -> bool {
        self.models.is_loading() || self.explore.analysing().is_some()
    }

    /// The tab shown.
    pub fn tab(&self) -> Tab {
        self.tab
    }

    /// The Explore tab.
    pub fn explore_panel(&self) -> &ExplorePanel {
        &self.explore
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
        self.explore.shows_head_predictions()
    }

    /// The files the window has open: the photo, the head and its description, the model's
    /// weights. No save from the window may write over one ([`super::widgets::set_open_files`]).
    pub fn open_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let PhotoSource::File(path) = &self.photo {
            files.push(path.clone());
        }
        if let Some(head) = &self.head {
            files.push(head.path.clone());
            files.push(head.path.with_extension("json"));
        }
        if let Some(model) = self.models.loaded() {
            files.push(model.weights.clone());
        }
        files
    }

    /// An empty command queue numbering jobs with the window's ids.
    fn commands(&self) -> Commands {
        Commands::new(self.jobs.clone())
    }

    /// Where trained heads are saved by default.
    fn heads_dir(&self) -> PathBuf {
        self.config.heads_dir.clone()
    }

    /// The models screen replaces the tabs: asked for, or nothing to show without it.
    fn models_screen_shown(&self) -> bool {
        self.models.screen_requested()
            || (self.models.loaded().is_none()
                && !self.models.is_loading()
                && self.explore.analysis().is_none())
    }

    /// Draws the tab shown (or the models screen) and returns what it asked for.
    fn central(&mut self, ui: &mut egui::Ui) -> Vec<super::command::AppCommand> {
        let show_models = self.models_screen_shown();
        let installed = self.models.installed();
        let heads_dir = self.heads_dir();
        let mut commands = self.commands();
        let dataset = self.train.scanned().map(|s| s.root.clone());
        if show_models {
            egui::CentralPanel::default().show(ui, |ui| {
                self.models
                    .screen(ui, &self.config.weights_dir, &mut commands);
            });
            return commands.into_queue();
        }
        let env = PanelEnv {
            photo: &self.photo,
            model: self.models.loaded(),
            head: self.head.as_ref(),
            installed: &installed,
            heads_dir: &heads_dir,
            dataset: dataset.as_deref(),
        };
        let shown: &mut dyn Panel = match self.tab {
            Tab::Explore => &mut self.explore,
            Tab::Dream => &mut self.dream,
            Tab::Attack => &mut self.attack,
            Tab::Train => &mut self.train,
        };
        panel::show(ui, (self.tab, shown), &env, &mut commands);
        commands.into_queue()
    }

    fn screenshot_step(&mut self, ctx: &egui::Context) {
        let ready = Readiness {
            busy: self.is_busy()
                || self.dream.deepdream().is_busy()
                || self.dream.is_running()
                || self.attack.is_running()
                || self.train.is_running()
                || self.train.is_reviewing()
                || self
                    .train
                    .map_view()
                    .is_some_and(|m| m.tsne_progress().is_some()),
            drawn: self.explore.analysis().is_some()
                && (self.tab != Tab::Explore || self.explore.layer_drawn()),
            no_model: self.models.loaded().is_none()
                && !self.models.is_loading()
                && !self.models.is_downloading(),
            notice: self.notice().map(str::to_string),
            frame_summary: self.frame_stats.busy_summary(),
        };
        if let Some(shot) = &mut self.screenshot {
            shot.step(ctx, ready);
        }
    }
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

impl eframe::App for ExplorerApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        // Frames drawn while the model runs on a photo are the ones that must stay smooth.
        self.frame_stats
            .record(frame.info().cpu_usage, self.explore.analysing().is_some());
        self.drain_events(&ctx);
        self.poll_open_dialog(&ctx);
        self.handle_input(&ctx);
        self.explore.handle_keys(&ctx);
        super::widgets::set_open_files(&ctx, self.open_files());
        let mut commands = self.toolbar(ui);
        commands.extend(self.central(ui));
        super::lesson::help_overlay(&ctx, &mut self.help_open);
        self.apply_all(&ctx, commands);
        input::drop_highlight(&ctx);
        self.screenshot_step(&ctx);
        if self.models.is_downloading() {
            // The download's speed and the spinner move even between progress events.
            ctx.request_repaint_after(Duration::from_millis(250));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings());
    }
}
