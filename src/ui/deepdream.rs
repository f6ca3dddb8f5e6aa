//! The Dream tab's "DeepDream the photo" section: the photo shown, dreamed octave by octave
//! (see [`crate::explain::deepdream`]) on a layer of the model (or one channel of it), live;
//! its own controls, Start and Stop, the image at the width there is, and Save PNG.
//!
//! The section keeps its runtime state (the job, the image, its texture) and draws itself; its
//! settings live in the Dream tab's saved settings, and the tab hands them over while drawing.

use eframe::egui::{self, TextureHandle, TextureOptions};
use serde::{Deserialize, Serialize};

use super::command::Commands;
use super::widgets::{finite_within, texture, PendingSave};
use crate::worker::{
    Analysis, CancelToken, Command, DeepDreamRequest, DeepDreamSettings as DeepDream, Event, JobId,
    PhotoSource, RgbaImage,
};

/// The section's settings as its controls show them (saved between runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeepDreamSettings {
    /// The layer to amplify; `None` (or a layer the model lacks): [`default_layer`]'s.
    pub layer: Option<String>,
    /// Only this channel of the layer.
    pub channel: Option<usize>,
    pub octaves: usize,
    pub octave_scale: f64,
    /// Steps per octave.
    pub steps: usize,
    /// Mean change per step, in 8-bit pixel units.
    pub step_size: f32,
    /// Largest random roll per step, in pixels.
    pub jitter: u32,
    /// Longest side the photo is dreamed at.
    pub max_side: u32,
    /// The section is open.
    pub open: bool,
}

impl Default for DeepDreamSettings {
    fn default() -> Self {
        let d = DeepDream::new("");
        Self {
            layer: None,
            channel: None,
            octaves: d.octaves,
            octave_scale: d.octave_scale,
            steps: d.steps,
            step_size: d.step_size,
            jitter: d.jitter,
            max_side: d.max_side,
            open: false,
        }
    }
}

/// The controls' ranges (a hand-edited file is brought back into them).
const OCTAVES: std::ops::RangeInclusive<usize> = 1..=8;
const OCTAVE_SCALE: std::ops::RangeInclusive<f64> = 1.1..=2.0;
const STEPS: std::ops::RangeInclusive<usize> = 1..=100;
const STEP_SIZE: std::ops::RangeInclusive<f32> = 0.1..=10.0;
const JITTER: std::ops::RangeInclusive<u32> = 0..=64;
const MAX_SIDE: std::ops::RangeInclusive<u32> = 128..=1024;

impl DeepDreamSettings {
    /// Keeps values read from a hand-edited file within the controls' ranges.
    pub fn sanitised(self) -> Self {
        let d = Self::default();
        let octave_scale = if self.octave_scale.is_finite() {
            self.octave_scale
                .clamp(*OCTAVE_SCALE.start(), *OCTAVE_SCALE.end())
        } else {
            d.octave_scale
        };
        Self {
            octaves: self.octaves.clamp(*OCTAVES.start(), *OCTAVES.end()),
            octave_scale,
            steps: self.steps.clamp(*STEPS.start(), *STEPS.end()),
            step_size: finite_within(self.step_size, d.step_size, STEP_SIZE),
            jitter: self.jitter.min(*JITTER.end()),
            max_side: self.max_side.clamp(*MAX_SIDE.start(), *MAX_SIDE.end()),
            ..self
        }
    }

    /// The library's settings for `layer`.
    fn for_layer(&self, layer: &str, channel: Option<usize>) -> DeepDream {
        DeepDream {
            layer: layer.to_string(),
            channel,
            octaves: self.octaves,
            octave_scale: self.octave_scale,
            steps: self.steps,
            step_size: self.step_size,
            jitter: self.jitter,
            max_side: self.max_side,
            ..DeepDream::new(layer)
        }
    }
}

/// A layer the section can dream: its name and channels.
#[derive(Debug, Clone, PartialEq)]
struct Layer {
    name: String,
    channels: usize,
}

/// The layer dreamed when none is chosen: the spatial layer three fifths of the way down,
/// where the patterns are parts of things (eyes, fur, arches) rather than edges or whole
/// objects; EfficientNet-Lite0's `block9`.
fn default_layer(layers: &[Layer], spatial: &[bool]) -> Option<usize> {
    let candidates: Vec<usize> = (0..layers.len()).filter(|&i| spatial[i]).collect();
    candidates
        .get(candidates.len() * 3 / 5)
        .or(candidates.last())
        .copied()
}

struct Running {
    job: JobId,
    cancel: CancelToken,
    layer: String,
}

/// The section's runtime state (never saved).
#[derive(Default)]
pub struct DeepDreamSection {
    /// The model's layers, from the last analysis, in network order.
    layers: Vec<Layer>,
    /// The layer picked when the settings name none (or one this model lacks).
    default: Option<usize>,
    running: Option<Running>,
    image: Option<RgbaImage>,
    texture: Option<TextureHandle>,
    /// Images received from the worker (live frames and the final one).
    images: usize,
    status: String,
    save: Option<PendingSave>,
    /// Open the section and start once the photo's layers are known (`--deepdream`).
    start_when_ready: bool,
}

impl DeepDreamSection {
    /// The layers to offer: those of the photo's analysis.
    pub fn photo_analysed(&mut self, analysis: &Analysis) {
        self.layers = analysis
            .layers
            .iter()
            .map(|l| Layer {
                name: l.name.clone(),
                channels: l.channels,
            })
            .collect();
        let spatial: Vec<bool> = analysis.layers.iter().map(|l| !l.is_vector()).collect();
        self.default = default_layer(&self.layers, &spatial);
    }

    /// Opens the section and starts dreaming as soon as the photo is analysed.
    pub fn start_when_ready(&mut self) {
        self.start_when_ready = true;
    }

    /// Whether a DeepDream runs (or is about to start on its own).
    pub fn is_busy(&self) -> bool {
        self.running.is_some() || self.start_when_ready
    }

    /// Whether a DeepDream runs.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The image so far, if any.
    pub fn image(&self) -> Option<&RgbaImage> {
        self.image.as_ref()
    }

    /// Images received so far (each live frame and the final one).
    pub fn images_received(&self) -> usize {
        self.images
    }

    /// What the section says (progress, outcome, errors).
    pub fn status(&self) -> &str {
        &self.status
    }

    /// Whether `job` is this section's.
    pub fn owns(&self, job: JobId) -> bool {
        self.running.as_ref().is_some_and(|r| r.job == job)
    }

    /// The layer and channel `settings` ask for, on this model.
    fn chosen(&self, settings: &DeepDreamSettings) -> Option<(usize, Option<usize>)> {
        let named = settings
            .layer
            .as_ref()
            .and_then(|name| self.layers.iter().position(|l| &l.name == name));
        let index = named.or(self.default)?;
        let channel = settings
            .channel
            .filter(|&c| c < self.layers[index].channels);
        Some((index, channel))
    }

    /// Starts dreaming `photo` (stopping a DeepDream that runs).
    pub fn start(
        &mut self,
        settings: &DeepDreamSettings,
        photo: &PhotoSource,
        commands: &mut Commands,
    ) {
        let Some((index, channel)) = self.chosen(settings) else {
            self.status = "The photo's layers are not known yet: wait for its analysis.".into();
            return;
        };
        self.stop();
        let layer = self.layers[index].name.clone();
        let request = DeepDreamRequest {
            photo: photo.clone(),
            settings: settings.for_layer(&layer, channel),
        };
        let cancel = CancelToken::new();
        let job = commands.start_job(|job| Command::DeepDream {
            job,
            cancel: cancel.clone(),
            request,
        });
        self.running = Some(Running { job, cancel, layer });
        self.status = "Starting…".into();
    }

    /// Stops the DeepDream that runs; it keeps the image so far.
    pub fn stop(&mut self) {
        if let Some(r) = &self.running {
            r.cancel.cancel();
        }
    }

    /// Handles an event of a job this section [owns](Self::owns).
    pub fn on_event(&mut self, ctx: &egui::Context, event: Event) {
        match event {
            Event::DeepDreamStep {
                octave,
                octaves,
                step,
                steps,
                objective,
                image,
                ..
            } => {
                if let Some(image) = image {
                    self.show_image(ctx, image);
                }
                let layer = self.running.as_ref().map_or("", |r| &r.layer);
                self.status = format!(
                    "{layer}, octave {} of {octaves}, step {step} of {steps}: objective \
                     {objective:.4}",
                    octave + 1
                );
            }
            Event::DeepDreamFinished {
                image,
                steps,
                stopped,
                objective_start,
                objective_end,
                ms_per_step,
                ..
            } => {
                let (w, h) = (image.width, image.height);
                self.show_image(ctx, image);
                self.running = None;
                let how = if stopped { "Stopped after" } else { "Done:" };
                self.status = format!(
                    "{how} {steps} steps at {w}×{h}, {ms_per_step:.0} ms per step; objective \
                     {objective_start:.4} to {objective_end:.4}"
                );
            }
            Event::Cancelled { .. } => {
                self.running = None;
                self.status = "Stopped before the first step.".into();
            }
            Event::Failed { error, .. } => {
                self.running = None;
                self.status = format!("The DeepDream failed: {error}");
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for a DeepDream"),
        }
    }

    fn show_image(&mut self, ctx: &egui::Context, image: RgbaImage) {
        match &mut self.texture {
            Some(t) => t.set(
                egui::ColorImage::from_rgba_unmultiplied([image.width, image.height], &image.rgba),
                TextureOptions::LINEAR,
            ),
            None => self.texture = Some(texture(ctx, "deepdream", &image, TextureOptions::LINEAR)),
        }
        self.images += 1;
        self.image = Some(image);
    }

    /// Draws the collapsible section: controls on the left, the image beside them (leaving
    /// `keep_height` below it for what the tab draws next).
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        settings: &mut DeepDreamSettings,
        photo: &PhotoSource,
        commands: &mut Commands,
    ) {
        let autostart = self.start_when_ready && !self.layers.is_empty();
        let mut header = egui::CollapsingHeader::new("DeepDream the photo")
            .id_salt("deepdream")
            .default_open(settings.open);
        if self.start_when_ready {
            header = header.open(Some(true));
        }
        let shown = header.show(ui, |ui| {
            ui.horizontal_top(|ui| {
                ui.vertical(|ui| {
                    ui.set_width(260.0);
                    self.controls(ui, settings, photo, commands);
                });
                ui.vertical(|ui| self.picture(ui));
            });
        });
        settings.open = shown.fully_open();
        if autostart {
            self.start_when_ready = false;
            self.start(settings, photo, commands);
        }
        PendingSave::report(&mut self.save, &mut self.status);
    }

    fn controls(
        &mut self,
        ui: &mut egui::Ui,
        settings: &mut DeepDreamSettings,
        photo: &PhotoSource,
        commands: &mut Commands,
    ) {
        let Some((index, channel)) = self.chosen(settings) else {
            ui.weak("The layers appear once the photo is analysed.");
            return;
        };
        let layer = &self.layers[index];
        ui.horizontal(|ui| {
            let label = ui.label("Layer");
            egui::ComboBox::from_id_salt("deepdream-layer")
                .selected_text(format!("{} ({} ch)", layer.name, layer.channels))
                .show_ui(ui, |ui| {
                    for l in &self.layers {
                        let text = format!("{} ({} ch)", l.name, l.channels);
                        if ui.selectable_label(l.name == layer.name, text).clicked() {
                            settings.layer = Some(l.name.clone());
                        }
                    }
                })
                .response
                .labelled_by(label.id);
        });
        ui.horizontal(|ui| {
            let mut one = channel.is_some();
            ui.checkbox(&mut one, "One channel");
            let mut c = channel.unwrap_or(0);
            if one {
                ui.add(egui::DragValue::new(&mut c).range(0..=layer.channels.saturating_sub(1)));
            }
            settings.channel = one.then_some(c);
        });
        let s = settings;
        ui.add(egui::Slider::new(&mut s.octaves, OCTAVES).text("Octaves"));
        ui.add(egui::Slider::new(&mut s.octave_scale, OCTAVE_SCALE).text("Octave scale"));
        ui.add(
            egui::Slider::new(&mut s.steps, STEPS)
                .logarithmic(true)
                .text("Steps per octave"),
        );
        ui.add(
            egui::Slider::new(&mut s.step_size, STEP_SIZE)
                .logarithmic(true)
                .text("Step size"),
        );
        ui.add(egui::Slider::new(&mut s.jitter, JITTER).text("Jitter (px)"));
        ui.add(egui::Slider::new(&mut s.max_side, MAX_SIDE).text("Longest side"));
        ui.horizontal_wrapped(|ui| {
            if ui.button("Dream the photo").clicked() {
                self.start(s, photo, commands);
            }
            if self.running.is_some() && ui.button("Stop dreaming").clicked() {
                self.stop();
            }
            if let Some(image) = &self.image {
                if ui
                    .add_enabled(self.save.is_none(), egui::Button::new("Save DeepDream…"))
                    .clicked()
                {
                    let name = format!("deepdream-{}.png", self.layers[index].name);
                    self.save = Some(PendingSave::start(ui.ctx(), name, image.clone()));
                }
            }
        });
    }

    /// The status and the image, scaled to the width there is (and to a height that leaves
    /// room for the dream below).
    fn picture(&self, ui: &mut egui::Ui) {
        crate::ui::message::message(ui, &self.status, None);
        let (Some(t), Some(image)) = (&self.texture, &self.image) else {
            ui.weak("Choose a layer and press Dream the photo.");
            return;
        };
        let max_height = (ui.available_height() - 330.0).max(160.0);
        let (w, h) = (image.width.max(1) as f32, image.height.max(1) as f32);
        let scale = (ui.available_width() / w).min(max_height / h);
        ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(w * scale, h * scale)))
            .on_hover_text("The photo, DeepDreamed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_a_hand_edited_file_come_back_within_range() {
        let wild = DeepDreamSettings {
            octaves: 50,
            octave_scale: f64::NAN,
            steps: 0,
            step_size: f32::INFINITY,
            jitter: 1000,
            max_side: 1,
            ..DeepDreamSettings::default()
        }
        .sanitised();
        assert_eq!(wild.octaves, 8);
        assert_eq!(wild.octave_scale, 1.4);
        assert_eq!(wild.steps, 1);
        assert_eq!(wild.step_size, 1.5);
        assert_eq!((wild.jitter, wild.max_side), (64, 128));
        let default = DeepDreamSettings::default();
        assert_eq!(default.clone().sanitised(), default);
        assert!(default.for_layer("block9", None).validate().is_ok());
    }

    #[test]
    fn the_default_layer_is_three_fifths_down_the_spatial_layers() {
        let names = ["stem", "block0", "block1", "block2", "block3", "logits"];
        let layers: Vec<Layer> = names
            .iter()
            .map(|n| Layer {
                name: n.to_string(),
                channels: 8,
            })
            .collect();
        let spatial = [true, true, true, true, true, false];
        assert_eq!(default_layer(&layers, &spatial), Some(3));
        assert_eq!(default_layer(&layers[5..], &spatial[5..]), None);
    }
}
