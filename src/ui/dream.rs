//! The "Dream" tab: pick a class (or come from the explorer with a channel), set the
//! optimisation, and watch the image evolve with live probability and loss curves; the
//! total-variation slider acts on the running dream; pause, resume, stop, save PNG.

use eframe::egui::{self, TextureHandle, TextureOptions};
use egui_plot::{Legend, Line, Plot};
use serde::{Deserialize, Serialize};

use super::class_picker::ClassPicker;
use super::command::Commands;
use super::deepdream::{DeepDreamSection, DeepDreamSettings};
use super::panel::{Panel, PanelEnv, SideColumn};
use super::widgets::finite_within;
use super::widgets::{texture, PendingSave};
use crate::labels::imagenet_label;
use crate::worker::{
    CancelToken, Command, DreamControls, DreamRequest, DreamSettings as Dream, DreamTarget, Event,
    JobId, Parameterisation, PhotoSource, RgbaImage,
};

/// A dream's settings as the tab's controls show them (saved between runs); the library's
/// settings for one target are made from them by [`DreamSettings::for_target`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DreamSettings {
    /// The ImageNet class to dream.
    pub class: Option<usize>,
    /// Lucid's Fourier parameterisation (else the pixels).
    pub fourier: bool,
    /// Start from the photo shown (else from noise).
    pub from_photo: bool,
    pub steps: usize,
    pub learning_rate: f64,
    /// Image side in pixels: 112, 160 or 224.
    pub size: u32,
    /// Largest random shift each step, in pixels.
    pub jitter: u32,
    pub seed: u64,
    /// Total-variation weight at the start (it can change while the dream runs).
    pub tv_weight: f32,
    /// Maximise the log-softmax (else the logit).
    pub log_softmax: bool,
    /// The "DeepDream the photo" section's.
    pub deepdream: DeepDreamSettings,
}

impl Default for DreamSettings {
    fn default() -> Self {
        Self {
            // A zebra.
            class: Some(340),
            fourier: true,
            from_photo: false,
            steps: 200,
            learning_rate: 0.1,
            size: 224,
            jitter: 8,
            seed: 0,
            tv_weight: 0.1,
            log_softmax: false,
            deepdream: DeepDreamSettings::default(),
        }
    }
}

impl DreamSettings {
    /// The sizes the tab offers.
    pub const SIZES: [u32; 3] = [112, 160, 224];

    /// The library's settings to dream `target` with these (starting from noise).
    pub fn for_target(&self, target: DreamTarget) -> Dream {
        Dream {
            parameterisation: if self.fourier {
                Parameterisation::Fourier
            } else {
                Parameterisation::Pixels
            },
            steps: self.steps,
            learning_rate: self.learning_rate,
            tv_weight: self.tv_weight,
            size: self.size,
            jitter: self.jitter,
            seed: self.seed,
            log_softmax: self.log_softmax,
            ..Dream::new(target)
        }
    }

    /// Keeps values read from a hand-edited file within the sliders' ranges.
    pub fn sanitised(self) -> Self {
        let default = Self::default();
        let learning_rate = if self.learning_rate.is_finite() {
            self.learning_rate.clamp(0.005, 0.5)
        } else {
            default.learning_rate
        };
        Self {
            class: self
                .class
                .filter(|&c| c < crate::labels::imagenet_classes().len()),
            steps: self.steps.clamp(10, 1000),
            learning_rate,
            size: if Self::SIZES.contains(&self.size) {
                self.size
            } else {
                default.size
            },
            jitter: self.jitter.min(16),
            tv_weight: finite_within(self.tv_weight, default.tv_weight, 0.0..=10.0),
            deepdream: self.deepdream.sanitised(),
            ..self
        }
    }
}

const COLUMN: SideColumn = SideColumn {
    id: "dream-controls",
    default_width: 300.0,
    min_width: 240.0,
    max_width: 480.0,
};

struct Running {
    job: JobId,
    cancel: CancelToken,
    controls: DreamControls,
    steps: usize,
}

/// The Dream tab's state.
pub struct DreamPanel {
    settings: DreamSettings,
    picker: ClassPicker,
    /// Set by "Dream this channel" in the explorer; cleared by "Dream a class instead".
    channel: Option<(String, usize)>,
    running: Option<Running>,
    paused: bool,
    image: Option<RgbaImage>,
    texture: Option<TextureHandle>,
    /// (step, probability, loss).
    history: Vec<[f64; 3]>,
    status: String,
    save: Option<PendingSave>,
    deepdream: DeepDreamSection,
}

impl DreamPanel {
    /// The tab with saved `settings`.
    pub fn new(settings: DreamSettings) -> Self {
        Self {
            settings,
            picker: ClassPicker::default(),
            channel: None,
            running: None,
            paused: false,
            image: None,
            texture: None,
            history: Vec::new(),
            status: String::new(),
            save: None,
            deepdream: DeepDreamSection::default(),
        }
    }

    /// The "DeepDream the photo" section.
    pub fn deepdream(&self) -> &DeepDreamSection {
        &self.deepdream
    }

    pub fn deepdream_mut(&mut self) -> &mut DeepDreamSection {
        &mut self.deepdream
    }

    /// The settings as they would be saved.
    pub fn settings(&self) -> &DreamSettings {
        &self.settings
    }

    /// Whether a dream is running (or paused).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The image so far, if any.
    pub fn image(&self) -> Option<&RgbaImage> {
        self.image.as_ref()
    }

    /// Steps recorded so far (step, probability, loss).
    pub fn history(&self) -> &[[f64; 3]] {
        &self.history
    }

    /// Aims the next dream at one channel of one layer.
    pub fn aim_at_channel(&mut self, layer: String, channel: usize) {
        self.channel = Some((layer, channel));
    }

    fn target(&self) -> Option<DreamTarget> {
        match &self.channel {
            Some((layer, channel)) => Some(DreamTarget::Channel {
                layer: layer.clone(),
                channel: *channel,
            }),
            None => self.settings.class.map(DreamTarget::Class),
        }
    }

    /// Starts a dream with the current settings (stopping any running one).
    pub fn start(&mut self, photo: &PhotoSource, commands: &mut Commands) {
        let Some(target) = self.target() else {
            self.status = "Choose a class first.".into();
            return;
        };
        self.stop();
        let s = &self.settings;
        let request = DreamRequest {
            settings: s.for_target(target),
            start_photo: s.from_photo.then(|| photo.clone()),
        };
        let cancel = CancelToken::new();
        let controls = DreamControls::new(s.tv_weight);
        let steps = s.steps;
        let job = commands.start_job(|job| Command::Dream {
            job,
            cancel: cancel.clone(),
            request,
            controls: controls.clone(),
        });
        self.running = Some(Running {
            job,
            cancel,
            controls,
            steps,
        });
        self.paused = false;
        self.history.clear();
        self.status = "Starting…".into();
    }

    /// Stops the running dream; it keeps the image so far.
    pub fn stop(&mut self) {
        if let Some(r) = &self.running {
            r.controls.set_paused(false);
            r.cancel.cancel();
        }
    }

    fn handle(&mut self, ctx: &egui::Context, event: Event) {
        match event {
            Event::DreamStep {
                step,
                prob,
                score,
                penalty,
                image,
                ..
            } => {
                self.history
                    .push([step as f64, f64::from(prob), f64::from(penalty - score)]);
                if let Some(image) = image {
                    self.show_image(ctx, image);
                }
                let total = self.running.as_ref().map_or(0, |r| r.steps);
                self.status = format!("Step {step} of {total}: p = {prob:.3}");
            }
            Event::DreamFinished {
                image,
                steps,
                prob,
                ms_per_step,
                ..
            } => {
                self.show_image(ctx, image);
                self.running = None;
                self.status = format!(
                    "Done: {steps} steps, {ms_per_step:.0} ms per step; the final image scores p = {prob:.3}"
                );
            }
            Event::Cancelled { .. } => {
                self.running = None;
                self.status = "Stopped before the first step.".into();
            }
            Event::Failed { error, .. } => {
                self.running = None;
                self.status = format!("The dream failed: {error}");
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for a dream"),
        }
    }

    fn show_image(&mut self, ctx: &egui::Context, image: RgbaImage) {
        match &mut self.texture {
            Some(t) => t.set(
                egui::ColorImage::from_rgba_unmultiplied([image.width, image.height], &image.rgba),
                TextureOptions::LINEAR,
            ),
            None => self.texture = Some(texture(ctx, "dream", &image, TextureOptions::LINEAR)),
        }
        self.image = Some(image);
    }

    /// The settings column.
    fn controls(&mut self, ui: &mut egui::Ui, photo: &PhotoSource, commands: &mut Commands) {
        egui::ScrollArea::vertical()
            .id_salt("dream-controls")
            .show(ui, |ui| {
                if let Some((layer, channel)) = self.channel.clone() {
                    ui.strong(format!("Dreaming channel {channel} of {layer}"));
                    if ui.button("Dream a class instead").clicked() {
                        self.channel = None;
                    }
                } else {
                    let class = &mut self.settings.class;
                    self.picker.show(ui, "dream-class", "Class", 8, class);
                }
                let s = &mut self.settings;
                ui.separator();
                ui.horizontal(|ui| {
                    ui.radio_value(&mut s.fourier, true, "Lucid (Fourier)");
                    ui.radio_value(&mut s.fourier, false, "Pixels");
                });
                ui.horizontal(|ui| {
                    ui.radio_value(&mut s.from_photo, false, "From noise");
                    ui.radio_value(&mut s.from_photo, true, "From the photo");
                });
                ui.add(
                    egui::Slider::new(&mut s.steps, 10..=1000)
                        .logarithmic(true)
                        .text("Steps"),
                );
                ui.add(
                    egui::Slider::new(&mut s.learning_rate, 0.005..=0.5)
                        .logarithmic(true)
                        .text("Learning rate"),
                );
                ui.horizontal(|ui| {
                    ui.label("Size");
                    for size in DreamSettings::SIZES {
                        ui.selectable_value(&mut s.size, size, size.to_string());
                    }
                });
                ui.add(egui::Slider::new(&mut s.jitter, 0..=16).text("Jitter (px)"));
                ui.add(egui::DragValue::new(&mut s.seed).prefix("seed "));
                ui.checkbox(&mut s.log_softmax, "Maximise log-softmax (not the logit)");
                let tv = ui.add(
                    egui::Slider::new(&mut s.tv_weight, 0.0..=10.0)
                        .logarithmic(true)
                        .text("TV weight"),
                );
                if tv.changed() {
                    if let Some(r) = &self.running {
                        r.controls.set_tv_weight(s.tv_weight);
                    }
                }
                ui.weak("The TV weight acts on a running dream at once.");
                ui.separator();
                ui.horizontal_wrapped(|ui| {
                    if ui.button("Start").clicked() {
                        self.start(photo, commands);
                    }
                    if let Some(r) = &self.running {
                        let label = if self.paused { "Resume" } else { "Pause" };
                        if ui.button(label).clicked() {
                            self.paused = !self.paused;
                            r.controls.set_paused(self.paused);
                        }
                        if ui.button("Stop").clicked() {
                            self.stop();
                        }
                    }
                    if let Some(image) = &self.image {
                        if ui
                            .add_enabled(self.save.is_none(), egui::Button::new("Save PNG…"))
                            .clicked()
                        {
                            let name = match self.target() {
                                Some(DreamTarget::Class(c)) => {
                                    format!("dream-{}.png", imagenet_label(c).replace(' ', "_"))
                                }
                                Some(DreamTarget::Channel { layer, channel }) => {
                                    format!("dream-{layer}-{channel}.png")
                                }
                                None => "dream.png".into(),
                            };
                            self.save = Some(PendingSave::start(ui.ctx(), name, image.clone()));
                        }
                    }
                });
            });
        PendingSave::report(&mut self.save, &mut self.status);
    }

    /// The image and the curves.
    fn image_and_curves(&mut self, ui: &mut egui::Ui) {
        ui.label(&self.status);
        let plot_height = 150.0;
        let avail = ui.available_size();
        let side = avail
            .x
            .min(avail.y - plot_height - 30.0)
            .clamp(112.0, 512.0);
        match &self.texture {
            Some(t) => {
                ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(side, side)))
                    .on_hover_text("The dream as the network gets it");
            }
            None => {
                ui.weak("Choose a class and press Start.");
            }
        }
        let probs: Vec<[f64; 2]> = self.history.iter().map(|h| [h[0], h[1]]).collect();
        let losses: Vec<[f64; 2]> = self.history.iter().map(|h| [h[0], h[2]]).collect();
        ui.columns(2, |columns| {
            Plot::new("dream-prob")
                .height(plot_height)
                .include_y(0.0)
                .include_y(1.0)
                .legend(Legend::default())
                .allow_drag(false)
                .allow_zoom(false)
                .show(&mut columns[0], |p| {
                    p.line(Line::new("target probability", probs))
                });
            Plot::new("dream-loss")
                .height(plot_height)
                .legend(Legend::default())
                .allow_drag(false)
                .allow_zoom(false)
                .show(&mut columns[1], |p| {
                    p.line(Line::new("loss (-score + TV)", losses))
                });
        });
    }
}

impl Panel for DreamPanel {
    fn columns(&self) -> &'static [SideColumn] {
        &[COLUMN]
    }

    fn column(&mut self, _: usize, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands) {
        self.controls(ui, env.photo, commands);
    }

    fn view(&mut self, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands) {
        self.deepdream
            .ui(ui, &mut self.settings.deepdream, env.photo, commands);
        self.image_and_curves(ui);
    }

    fn owns(&self, job: JobId) -> bool {
        self.running.as_ref().is_some_and(|r| r.job == job) || self.deepdream.owns(job)
    }

    fn on_event(&mut self, ctx: &egui::Context, event: Event, _: &mut Commands) {
        if self.deepdream.owns(event.job()) {
            self.deepdream.on_event(ctx, event);
        } else {
            self.handle(ctx, event);
        }
    }
}
