//! The "Explore" tab: the photo as the network sees it with its predictions (ImageNet's, or
//! a trained head's), the list of layers, and the selected layer's feature maps
//! ([`maps`]) or their dreams ([`gallery`]). It owns the analysis shown and the jobs that
//! make the next one and the layer's gallery.

pub mod examples;
pub mod gallery;
pub mod looks;
pub mod maps;

use eframe::egui;
use serde::{Deserialize, Serialize};

use self::examples::ExamplesState;
use self::gallery::GalleryState;
use self::looks::LooksState;
use self::maps::MapsState;
use super::command::{AppCommand, Commands, Notice, NoticeKind};
use super::panel::{Panel, PanelEnv, SideColumn};
use super::predictions;
use super::widgets::busy_indicator;
use super::widgets::finite_within;
use crate::worker::{Analysis, CancelToken, Command, Event, JobId, Method, PhotoSource};

/// What the Explore view shows of the photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExploreView {
    /// Each layer's feature maps (or their dreams).
    #[default]
    FeatureMaps,
    /// Attribution maps: where the network looks for a class.
    WhereItLooks,
}

/// The order channels are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ChannelOrder {
    /// Channel 0, 1, 2, ...
    #[default]
    Index,
    /// Highest mean activation first.
    MeanActivation,
}

impl ChannelOrder {
    pub const ALL: [Self; 2] = [Self::Index, Self::MeanActivation];

    pub fn label(self) -> &'static str {
        match self {
            Self::Index => "Channel number",
            Self::MeanActivation => "Mean activation (highest first)",
        }
    }
}

/// How the explorer looks (saved between runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExploreSettings {
    pub channel_order: ChannelOrder,
    /// Side of a channel tile in the grid, in points (the fitting one while `fit_tiles`).
    pub tile_size: f32,
    /// Whether tiles are sized to fill the pane (until the user drags the size slider).
    pub fit_tiles: bool,
    /// Opacity of a channel drawn over the photo, 0 to 1.
    pub overlay_opacity: f32,
    /// Side of each dream of a layer gallery, in pixels (32 to 256).
    pub gallery_size: u32,
    /// Gradient steps per gallery dream (1 to 512).
    pub gallery_steps: usize,
    /// "Where it looks": the method, and the map's opacity over the photo (0 to 1).
    pub looks_method: Method,
    pub looks_opacity: f32,
}

impl Default for ExploreSettings {
    fn default() -> Self {
        Self {
            channel_order: ChannelOrder::Index,
            tile_size: 72.0,
            fit_tiles: true,
            overlay_opacity: 0.6,
            gallery_size: 96,
            gallery_steps: 96,
            looks_method: Method::GradCam,
            looks_opacity: 0.5,
        }
    }
}

impl ExploreSettings {
    /// Keeps values read from a hand-edited file within range.
    pub fn sanitised(self) -> Self {
        let default = Self::default();
        Self {
            tile_size: finite_within(self.tile_size, default.tile_size, 24.0..=256.0),
            overlay_opacity: finite_within(
                self.overlay_opacity,
                default.overlay_opacity,
                0.0..=1.0,
            ),
            gallery_size: self.gallery_size.clamp(32, 256),
            gallery_steps: self.gallery_steps.clamp(1, 512),
            looks_opacity: finite_within(self.looks_opacity, default.looks_opacity, 0.0..=1.0),
            ..self
        }
    }
}

/// A photo on its way through the model.
struct PhotoJob {
    job: JobId,
    cancel: CancelToken,
    photo: PhotoSource,
}

const PHOTO_COLUMN: SideColumn = SideColumn {
    id: "photo",
    default_width: 300.0,
    min_width: 220.0,
    max_width: 520.0,
};

const LAYERS_COLUMN: SideColumn = SideColumn {
    id: "layers",
    default_width: 190.0,
    min_width: 150.0,
    max_width: 360.0,
};

/// The Explore tab's state.
pub struct ExplorePanel {
    settings: ExploreSettings,
    analysis: Option<Analysis>,
    maps: MapsState,
    gallery: GalleryState,
    examples: ExamplesState,
    photo_job: Option<PhotoJob>,
    /// The layer and channel to show once the first analysis arrives (from the command line).
    preferred_layer: Option<String>,
    preferred_channel: Option<usize>,
    /// Dream the first layer's gallery once the first analysis arrives (from the command line).
    gallery_at_start: bool,
    /// The predictions show the head's classes (else ImageNet's).
    show_head: bool,
    view: ExploreView,
    looks: LooksState,
}

impl ExplorePanel {
    /// The tab with saved `settings`, opening `layer` and `channel` first where given, and
    /// dreaming that layer's gallery at once when `gallery` is set.
    pub fn new(
        settings: ExploreSettings,
        layer: Option<String>,
        channel: Option<usize>,
        gallery: bool,
    ) -> Self {
        Self {
            settings,
            analysis: None,
            maps: MapsState::default(),
            gallery: GalleryState::default(),
            examples: ExamplesState::default(),
            photo_job: None,
            preferred_layer: layer,
            preferred_channel: channel,
            gallery_at_start: gallery,
            show_head: false,
            view: ExploreView::default(),
            looks: LooksState::default(),
        }
    }

    /// Shows "Where it looks" with `method` (all methods side by side when `None`), computed
    /// as soon as the photo is shown.
    pub fn explain_at_start(&mut self, method: Option<Method>) {
        self.view = ExploreView::WhereItLooks;
        match method {
            Some(m) => self.settings.looks_method = m,
            None => self.looks.compare_at_start(),
        }
    }

    /// What the view shows.
    pub fn view_mode(&self) -> ExploreView {
        self.view
    }

    /// The settings as they would be saved.
    pub fn settings(&self) -> &ExploreSettings {
        &self.settings
    }

    /// The analysis shown, if any.
    pub fn analysis(&self) -> Option<&Analysis> {
        self.analysis.as_ref()
    }

    /// The photo the model is running on, if one is.
    pub fn analysing(&self) -> Option<&PhotoSource> {
        self.photo_job.as_ref().map(|p| &p.photo)
    }

    /// Whether the selected layer is drawn, and its gallery when one was asked for at start
    /// (what a screenshot waits for).
    pub fn layer_drawn(&self) -> bool {
        if self.view == ExploreView::WhereItLooks {
            return self.looks.drawn();
        }
        let layer = self
            .analysis
            .as_ref()
            .and_then(|a| a.layers.get(self.maps.layer));
        let dreams_drawn = layer.is_some_and(|l| self.gallery.drawn(&l.name));
        (self.maps.layer_drawn() || dreams_drawn)
            && !self.gallery_at_start
            && !self.gallery.running()
    }

    /// Whether the predictions show the trained head's classes.
    pub fn shows_head_predictions(&self) -> bool {
        self.show_head && self.analysis.as_ref().is_some_and(|a| a.head.is_some())
    }

    /// Shows the head's classes in the predictions from now on.
    pub fn show_head_predictions(&mut self) {
        self.show_head = true;
    }

    /// Stops following the photo on its way, if any.
    pub fn cancel_analysis(&mut self) {
        if let Some(old) = self.photo_job.take() {
            old.cancel.cancel();
        }
    }

    /// Runs the model on `photo` (instead of any photo on its way).
    pub fn analyse(&mut self, photo: PhotoSource, commands: &mut Commands) {
        self.cancel_analysis();
        let cancel = CancelToken::new();
        let job = commands.start_job(|job| Command::Analyse {
            job,
            cancel: cancel.clone(),
            photo: photo.clone(),
        });
        self.photo_job = Some(PhotoJob { job, cancel, photo });
    }

    /// The explorer's keys (↑/↓ layers, ←/→ channels, Esc).
    pub fn handle_keys(&mut self, ctx: &egui::Context) {
        if let Some(a) = &self.analysis {
            maps::handle_keys(ctx, &mut self.maps, a, self.settings.channel_order);
        }
    }

    fn show_analysis(&mut self, ctx: &egui::Context, analysis: Analysis) {
        tracing::info!(
            photo = %analysis.photo_name,
            forward_ms = analysis.forward_ms,
            total_ms = analysis.total_ms,
            "analysed"
        );
        let prefer = self.preferred_layer.take();
        if let Some(channel) = self.preferred_channel.take() {
            self.maps.channel = Some(channel);
        }
        self.maps
            .set_analysis(ctx, self.analysis.as_ref(), &analysis, prefer.as_deref());
        self.analysis = Some(analysis);
    }

    /// The photo as the network sees it, and the predictions.
    fn photo_column(&mut self, ui: &mut egui::Ui) {
        let Some(a) = &self.analysis else {
            ui.weak("No photo yet.");
            return;
        };
        ui.heading(&a.photo_name);
        if let Some(photo) = self.maps.photo_texture() {
            let side = ui.available_width().min(320.0);
            // The model's own preprocessing (sizes differ: 224, 240, 260, ...).
            let seen = format!(
                "What the network sees: resized and centre-cropped to {}×{}, as in torchvision",
                a.network_view.width, a.network_view.height
            );
            ui.add(egui::Image::new(photo).fit_to_exact_size(egui::vec2(side, side)))
                .on_hover_text(seen);
        }
        ui.weak(format!(
            "{}×{} network view of a {}×{} photo",
            a.network_view.width, a.network_view.height, a.original_width, a.original_height
        ));
        ui.add_space(8.0);
        ui.strong("Predictions");
        if let Some(h) = &a.head {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.show_head, false, "ImageNet")
                    .on_hover_text("The network's own 1000 ImageNet classes");
                ui.selectable_value(&mut self.show_head, true, format!("Head: {}", h.head))
                    .on_hover_text("The classes of the head trained in the Train tab");
            });
        }
        match &a.head {
            Some(h) if self.show_head => predictions::show_classes(ui, &h.top, "head class"),
            _ => predictions::show(ui, &a.top5),
        }
        if let Some(note) = &a.head_note {
            ui.weak(note);
        }
    }
}

impl Panel for ExplorePanel {
    fn columns(&self) -> &'static [SideColumn] {
        if self.analysis.is_some() {
            &[PHOTO_COLUMN, LAYERS_COLUMN]
        } else {
            &[PHOTO_COLUMN]
        }
    }

    fn column(&mut self, index: usize, ui: &mut egui::Ui, _: &PanelEnv, _: &mut Commands) {
        match (index, &self.analysis) {
            (0, _) => self.photo_column(ui),
            (_, Some(a)) => {
                ui.strong("Layers");
                maps::layer_list(ui, &mut self.maps, a);
            }
            (_, None) => {}
        }
    }

    fn view(&mut self, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands) {
        self.gallery.set_model(env.model.map(|m| m.name.as_str()));
        self.examples.set_model(env.model.map(|m| m.name.as_str()));
        if self.analysis.is_some() {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.view, ExploreView::FeatureMaps, "What it computes")
                    .on_hover_text("What each layer computes for the photo");
                ui.selectable_value(&mut self.view, ExploreView::WhereItLooks, "Where it looks")
                    .on_hover_text("Which parts of the photo made the network see a class");
            });
            ui.separator();
        }
        match &self.analysis {
            Some(a) if self.view == ExploreView::WhereItLooks => {
                self.looks
                    .show(ui, a, env.photo, &mut self.settings, commands)
            }
            Some(a) => maps::show(
                ui,
                &mut self.maps,
                (&mut self.gallery, &mut self.examples),
                a,
                &mut self.settings,
                (env.dataset, commands),
            ),
            None => {
                ui.horizontal(|ui| {
                    busy_indicator(ui);
                    ui.label("Working…");
                });
            }
        }
    }

    fn owns(&self, job: JobId) -> bool {
        self.photo_job.as_ref().is_some_and(|p| p.job == job)
            || self.gallery.owns(job)
            || self.examples.owns(job)
            || self.looks.owns(job)
    }

    fn on_event(&mut self, ctx: &egui::Context, event: Event, commands: &mut Commands) {
        if self.gallery.owns(event.job()) {
            self.gallery.on_event(ctx, event);
            return;
        }
        if self.examples.owns(event.job()) {
            self.examples.on_event(event);
            return;
        }
        if self.looks.owns(event.job()) {
            let view = self.analysis.as_ref().map(|a| &a.network_view);
            self.looks
                .on_event(ctx, event, view, self.settings.looks_opacity);
            return;
        }
        match event {
            Event::Analysed { analysis, .. } => {
                if let Some(done) = self.photo_job.take() {
                    commands.push(AppCommand::PhotoShown(done.photo));
                }
                self.show_analysis(ctx, *analysis);
                if std::mem::take(&mut self.gallery_at_start) {
                    if let Some(layer) = self
                        .analysis
                        .as_ref()
                        .and_then(|a| a.layers.get(self.maps.layer))
                    {
                        self.gallery.start(&layer.name, &self.settings, commands);
                    }
                }
                commands.push(AppCommand::ClearNotice(NoticeKind::PhotoFailed));
            }
            Event::Cancelled { .. } => self.photo_job = None,
            Event::Failed { error, .. } => {
                let name = self
                    .photo_job
                    .take()
                    .map(|p| p.photo.name())
                    .unwrap_or_default();
                commands.push(AppCommand::Notify(Notice::new(
                    NoticeKind::PhotoFailed,
                    format!("Could not open {name}: {error}"),
                )));
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for a photo"),
        }
    }
}
