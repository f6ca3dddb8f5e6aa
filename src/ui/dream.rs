//! The "Dream" tab: pick a class (or come from the explorer with a channel), set the
//! optimisation, and watch the image evolve with live probability and loss curves; the
//! total-variation slider acts on the running dream; pause, resume, stop, save PNG.

use eframe::egui;
use egui_plot::{Legend, Line, Plot};
use serde::{Deserialize, Serialize};

use super::class_picker::ClassPicker;
use super::command::Commands;
use super::deepdream::{DeepDreamSection, DeepDreamSettings};
use super::dream_view::DreamImages;
use super::panel::{Panel, PanelEnv, SideColumn};
use super::widgets::finite_within;
use super::widgets::PendingSave;
use crate::labels::imagenet_label;
use crate::worker::{
    CancelToken, Command, DreamControls, DreamRequest, DreamSettings as Dream, DreamTarget, Event,
    JobId, Parameterisation, PhotoSource, RgbaImage, MAX_BATCH,
};

/// What a channel dream maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ChannelObjective {
    /// The channel's mean activation.
    #[default]
    Mean,
    /// The channel at the centre position (a neuron).
    Neuron,
    /// What the channel hates: the negative of its mean.
    Negative,
}

/// A dream's settings as the tab's controls show them (saved between runs); the library's
/// settings for one target are made from them by [`DreamSettings::for_target`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DreamSettings {
    /// The ImageNet class to dream.
    pub class: Option<usize>,
    /// "...and not this class" (used when `not_class` is on).
    pub minus: Option<usize>,
    pub not_class: bool,
    /// For a channel from the explorer: its mean, its centre neuron or its negative.
    pub channel_objective: ChannelObjective,
    /// Lucid's Fourier parameterisation (else the pixels).
    pub fourier: bool,
    /// Lucid's random transforms each step.
    pub transforms: bool,
    /// Start from the photo shown (else from noise).
    pub from_photo: bool,
    pub steps: usize,
    pub learning_rate: f64,
    /// Image side in pixels: 112, 160 or 224.
    pub size: u32,
    pub seed: u64,
    /// Total-variation weight at the start (it can change while the dream runs).
    pub tv_weight: f32,
    /// Maximise the log-softmax (else the logit).
    pub log_softmax: bool,
    /// Images dreamed at once, 1 to 8, pushed apart by Lucid's diversity term.
    pub batch: usize,
    pub diversity: f32,
    /// The "DeepDream the photo" section's.
    pub deepdream: DeepDreamSettings,
}

impl Default for DreamSettings {
    fn default() -> Self {
        let lucid = Dream::new(DreamTarget::Class(281));
        Self {
            // The lesson's ideal cat: tabby.
            class: Some(281),
            // Tiger cat, the tabby's nearest rival.
            minus: Some(282),
            not_class: false,
            channel_objective: ChannelObjective::Mean,
            fourier: true,
            transforms: lucid.transforms,
            from_photo: false,
            steps: lucid.steps,
            learning_rate: lucid.learning_rate,
            size: lucid.size,
            seed: 0,
            tv_weight: lucid.tv_weight,
            log_softmax: false,
            batch: 1,
            diversity: lucid.diversity,
            deepdream: DeepDreamSettings::default(),
        }
    }
}

impl DreamSettings {
    /// The sizes the tab offers.
    pub const SIZES: [u32; 3] = [112, 160, 224];

    /// The parameterisation the radio buttons chose.
    fn parameterisation(&self) -> Parameterisation {
        if self.fourier {
            Parameterisation::Fourier
        } else {
            Parameterisation::Pixels
        }
    }

    /// The library's settings to dream `target` with these (starting from noise).
    pub fn for_target(&self, target: DreamTarget) -> Dream {
        Dream {
            parameterisation: self.parameterisation(),
            steps: self.steps,
            learning_rate: self.learning_rate,
            tv_weight: self.tv_weight,
            size: self.size,
            transforms: self.transforms,
            seed: self.seed,
            log_softmax: self.log_softmax,
            batch: self.batch,
            diversity: self.diversity,
            ..Dream::new(target)
        }
    }

    /// After the parameterisation changed: a learning rate still at the other one's default
    /// takes this one's (as the CLI does), a rate the user chose stays.
    pub fn switched_parameterisation(&mut self) {
        let other = if self.fourier {
            Parameterisation::Pixels
        } else {
            Parameterisation::Fourier
        };
        if (self.learning_rate - other.default_rate()).abs() < 1e-9 {
            self.learning_rate = self.parameterisation().default_rate();
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
            minus: self
                .minus
                .filter(|&c| c < crate::labels::imagenet_classes().len()),
            batch: self.batch.clamp(1, MAX_BATCH),
            diversity: finite_within(self.diversity, default.diversity, 0.0..=100.0),
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
    images: DreamImages,
    minus_picker: ClassPicker,
    /// (step, probability, loss).
    history: Vec<[f64; 3]>,
    status: String,
    save: Option<PendingSave>,
    deepdream: DeepDreamSection,
    /// Dream with the settings as soon as a model is loaded (`--dream`).
    start_when_ready: bool,
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
            images: DreamImages::default(),
            minus_picker: ClassPicker::default(),
            history: Vec::new(),
            status: String::new(),
            save: None,
            deepdream: DeepDreamSection::default(),
            start_when_ready: false,
        }
    }

    /// Starts a dream with the settings once a model is loaded.
    pub fn start_when_ready(&mut self) {
        self.start_when_ready = true;
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

    /// Whether a dream is running (or paused), or about to start.
    pub fn is_running(&self) -> bool {
        self.running.is_some() || self.start_when_ready
    }

    /// The (first) image so far, if any.
    pub fn image(&self) -> Option<&RgbaImage> {
        self.images.first()
    }

    /// Every member's image so far (one for a single dream).
    pub fn images(&self) -> &[RgbaImage] {
        self.images.all()
    }

    /// Steps recorded so far (step, probability, loss).
    pub fn history(&self) -> &[[f64; 3]] {
        &self.history
    }

    /// Aims the next dream at one channel of one layer.
    pub fn aim_at_channel(&mut self, layer: String, channel: usize) {
        self.channel = Some((layer, channel));
    }

    /// What the controls ask to dream.
    pub fn target(&self) -> Option<DreamTarget> {
        let s = &self.settings;
        if let Some((layer, channel)) = &self.channel {
            let (layer, channel) = (layer.clone(), *channel);
            return Some(match s.channel_objective {
                ChannelObjective::Mean => DreamTarget::Channel { layer, channel },
                ChannelObjective::Neuron => DreamTarget::Neuron { layer, channel },
                ChannelObjective::Negative => DreamTarget::NegativeChannel { layer, channel },
            });
        }
        let class = s.class?;
        Some(match s.minus.filter(|m| s.not_class && *m != class) {
            Some(minus) => DreamTarget::ClassMinus { class, minus },
            None => DreamTarget::Class(class),
        })
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
                probs,
                score,
                penalty,
                similarity,
                images,
                ..
            } => {
                let mean = probs.iter().sum::<f32>() / probs.len().max(1) as f32;
                self.history
                    .push([step as f64, f64::from(mean), f64::from(penalty - score)]);
                if let Some(images) = images {
                    self.images.set_images(ctx, images);
                }
                let total = self.running.as_ref().map_or(0, |r| r.steps);
                self.status = if probs.len() > 1 {
                    format!(
                        "Step {step} of {total}: mean p = {mean:.3}, similarity {similarity:.2}"
                    )
                } else {
                    format!("Step {step} of {total}: p = {mean:.3}")
                };
                self.images.set_probs(probs);
            }
            Event::DreamFinished {
                images,
                steps,
                probs,
                ms_per_step,
                ..
            } => {
                self.images.set_images(ctx, images);
                self.running = None;
                let shown: Vec<String> = probs.iter().map(|p| format!("{p:.3}")).collect();
                self.status = format!(
                    "Done: {steps} steps, {ms_per_step:.0} ms per step; opened as a photo, p = {}",
                    shown.join(", ")
                );
                self.images.set_probs(probs);
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

    /// The settings column.
    fn controls(&mut self, ui: &mut egui::Ui, photo: &PhotoSource, commands: &mut Commands) {
        egui::ScrollArea::vertical()
            .id_salt("dream-controls")
            .show(ui, |ui| {
                if let Some((layer, channel)) = self.channel.clone() {
                    ui.strong(format!("Dreaming channel {channel} of {layer}"));
                    let o = &mut self.settings.channel_objective;
                    ui.horizontal_wrapped(|ui| {
                        ui.radio_value(o, ChannelObjective::Mean, "Channel")
                            .on_hover_text("Its mean activation over the whole map");
                        ui.radio_value(o, ChannelObjective::Neuron, "Neuron")
                            .on_hover_text("Only the centre position of the map");
                        ui.radio_value(o, ChannelObjective::Negative, "Negative")
                            .on_hover_text("What the channel hates: its mean pushed down");
                    });
                    if ui.button("Dream a class instead").clicked() {
                        self.channel = None;
                    }
                } else {
                    let class = &mut self.settings.class;
                    self.picker.show(ui, "dream-class", "Class", 6, class);
                    ui.checkbox(&mut self.settings.not_class, "…and not this class:")
                        .on_hover_text(
                            "Maximise the difference of the two logits (\"tabby, not tiger cat\")",
                        );
                    if self.settings.not_class {
                        let minus = &mut self.settings.minus;
                        self.minus_picker.show(ui, "dream-minus", "Not", 4, minus);
                    }
                    ui.weak("For a channel, pick one in Explore and press \"Dream this channel\".");
                }
                let s = &mut self.settings;
                ui.separator();
                ui.horizontal(|ui| {
                    let was = s.fourier;
                    ui.radio_value(&mut s.fourier, true, "Lucid (Fourier)");
                    ui.radio_value(&mut s.fourier, false, "Pixels");
                    if s.fourier != was {
                        s.switched_parameterisation();
                    }
                });
                ui.checkbox(&mut s.transforms, "Lucid's random transforms")
                    .on_hover_text("Pad, jitter, scale, rotate each step: what grows is robust");
                ui.horizontal(|ui| {
                    ui.radio_value(&mut s.from_photo, false, "From noise");
                    ui.radio_value(&mut s.from_photo, true, "From the photo");
                });
                ui.add(egui::Slider::new(&mut s.batch, 1..=MAX_BATCH).text("Images at once"))
                    .on_hover_text(
                        "Several images of the target, pushed apart (Lucid's diversity)",
                    );
                if s.batch > 1 {
                    ui.add(
                        egui::Slider::new(&mut s.diversity, 0.0..=100.0)
                            .logarithmic(true)
                            .text("Diversity"),
                    );
                }
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
                ui.add(egui::DragValue::new(&mut s.seed).prefix("seed "));
                ui.checkbox(&mut s.log_softmax, "Maximise log-softmax (not the logit)");
                let tv = ui.add(
                    egui::Slider::new(&mut s.tv_weight, 0.0..=10.0)
                        .logarithmic(true)
                        // Below 0.01 the weight does nothing visible; "0.000000" was the default.
                        .smallest_positive(0.01)
                        .max_decimals(2)
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
                    if !self.images.is_empty()
                        && ui
                            .add_enabled(self.save.is_none(), egui::Button::new("Save PNG…"))
                            .clicked()
                    {
                        let name = match self.target() {
                            Some(t) => format!(
                                "dream-{}.png",
                                t.describe(imagenet_label).replace([' ', ',', '/'], "_")
                            ),
                            None => "dream.png".into(),
                        };
                        let image = self.images.sheet();
                        self.save = Some(PendingSave::start(ui.ctx(), name, image));
                    }
                });
            });
        PendingSave::report(&mut self.save, &mut self.status);
    }

    /// The image and the curves.
    fn image_and_curves(&mut self, ui: &mut egui::Ui) {
        crate::ui::message::message(ui, &self.status, None);
        let plot_height = 150.0;
        let avail = ui.available_size();
        if self.images.is_empty() {
            ui.weak("Choose a class and press Start.");
        } else {
            let prob_label = match self.target().and_then(|t| t.class()) {
                Some(_) => "p",
                None => "p(top)",
            };
            self.images.show(
                ui,
                egui::vec2(avail.x, avail.y - plot_height - 30.0),
                prob_label,
            );
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
        if self.start_when_ready && env.model.is_some() {
            self.start_when_ready = false;
            self.start(env.photo, commands);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_to_pixels_takes_their_rate_unless_the_user_chose_one() {
        let mut s = DreamSettings::default();
        let (fourier, pixels) = (
            Parameterisation::Fourier.default_rate(),
            Parameterisation::Pixels.default_rate(),
        );
        assert_eq!(s.learning_rate, fourier);
        s.fourier = false;
        s.switched_parameterisation();
        assert_eq!(s.learning_rate, pixels);
        s.fourier = true;
        s.switched_parameterisation();
        assert_eq!(s.learning_rate, fourier);
        s.learning_rate = 0.3;
        s.fourier = false;
        s.switched_parameterisation();
        assert_eq!(s.learning_rate, 0.3);
    }
}
