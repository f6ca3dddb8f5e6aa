//! The "Attack" tab: nudge the current photo until the network sees the chosen class with the
//! confidence asked for (PGD under an L-infinity budget in 8-bit units), or away from its own
//! class in one FGSM step; before any attack, the photo as the network sees it and its top
//! class (from the Explore tab's analysis); after, original, adversarial and amplified
//! perturbation side by side, live probabilities, and L-infinity, L2 and PSNR.

use eframe::egui::{self, TextureHandle, TextureOptions};
use egui_plot::{Legend, Line, Plot};

use super::attack_inside::Inside;
use super::class_picker::ClassPicker;
use super::command::Commands;
use super::panel::{Panel, PanelEnv, SideColumn};
use super::predictions;
use super::widgets::finite_within;
use super::widgets::{texture, PendingSave};
use crate::labels::imagenet_label;
use crate::worker::{
    Analysis, AttackRequest, AttackResult, AttackSettings, CancelToken, ClassScore, Command, Event,
    JobId, PhotoSource,
};

/// The tab's settings when none are saved: the library's, aimed at a dog (the lesson's
/// "make the cat a dog").
pub fn default_settings() -> AttackSettings {
    AttackSettings {
        target: Some(207),
        ..AttackSettings::default()
    }
}

/// `settings` read from a hand-edited file, kept within the sliders' ranges.
pub fn sanitised(settings: AttackSettings) -> AttackSettings {
    let default = AttackSettings::default();
    AttackSettings {
        target: settings
            .target
            .filter(|&c| c < crate::labels::imagenet_classes().len()),
        eps: finite_within(settings.eps, default.eps, 1.0..=16.0),
        step: finite_within(settings.step, default.step, 0.25..=4.0),
        max_steps: settings.max_steps.clamp(1, 200),
        confidence: finite_within(settings.confidence, default.confidence, CONFIDENCE_RANGE),
    }
}

/// The confidences the slider offers.
const CONFIDENCE_RANGE: std::ops::RangeInclusive<f32> = 0.1..=1.0;

const COLUMN: SideColumn = SideColumn {
    id: "attack-controls",
    default_width: 300.0,
    min_width: 240.0,
    max_width: 480.0,
};

struct Running {
    job: JobId,
    cancel: CancelToken,
    /// The confidence this attack aims for (FGSM: none, one step).
    confidence: Option<f32>,
}

/// The photo before any attack: as the network sees it, and its most likely class.
struct Preview {
    photo_name: String,
    original_size: (u32, u32),
    /// The five most likely ImageNet classes, most likely first.
    top5: Vec<ClassScore>,
    view: TextureHandle,
}

/// The Attack tab's state.
pub struct AttackPanel {
    settings: AttackSettings,
    picker: ClassPicker,
    running: Option<Running>,
    /// (step, source probability, target probability).
    history: Vec<[f64; 3]>,
    result: Option<(AttackResult, [TextureHandle; 3])>,
    /// The look inside the network of the result.
    inside: Option<Inside>,
    preview: Option<Preview>,
    status: String,
    save: Option<PendingSave>,
    /// Attack with the settings as soon as a model is loaded (`--attack`).
    start_when_ready: bool,
}

impl AttackPanel {
    /// The tab with saved `settings`.
    pub fn new(settings: AttackSettings) -> Self {
        Self {
            settings,
            picker: ClassPicker::default(),
            running: None,
            history: Vec::new(),
            result: None,
            inside: None,
            preview: None,
            status: String::new(),
            save: None,
            start_when_ready: false,
        }
    }

    /// Starts an attack with the settings once a model is loaded.
    pub fn start_when_ready(&mut self) {
        self.start_when_ready = true;
    }

    /// The settings as they would be saved.
    pub fn settings(&self) -> &AttackSettings {
        &self.settings
    }

    /// Whether an attack is running, or about to start.
    pub fn is_running(&self) -> bool {
        self.running.is_some() || self.start_when_ready
    }

    /// The last finished attack.
    pub fn result(&self) -> Option<&AttackResult> {
        self.result.as_ref().map(|(r, _)| r)
    }

    /// The photo shown before an attack and its top class, when one has been analysed.
    pub fn preview_top(&self) -> Option<&ClassScore> {
        self.preview.as_ref().and_then(|p| p.top5.first())
    }

    /// Takes the photo the Explore tab analysed as the one to attack: its network view and
    /// top class are shown until an attack runs; a new photo clears the last attack's result.
    pub fn photo_analysed(&mut self, ctx: &egui::Context, analysis: &Analysis) {
        let same_photo = self
            .preview
            .as_ref()
            .is_some_and(|p| p.photo_name == analysis.photo_name);
        if !same_photo && self.running.is_none() {
            self.result = None;
            self.inside = None;
            self.history.clear();
            self.status.clear();
        }
        self.preview = Some(Preview {
            photo_name: analysis.photo_name.clone(),
            original_size: (analysis.original_width, analysis.original_height),
            top5: analysis.top5.clone(),
            view: texture(
                ctx,
                "attack-preview",
                &analysis.network_view,
                TextureOptions::LINEAR,
            ),
        });
    }

    /// Starts PGD towards the chosen class, or (`fgsm`) one untargeted step of the whole
    /// budget.
    fn start(&mut self, photo: &PhotoSource, fgsm: bool, commands: &mut Commands) {
        if let Some(r) = &self.running {
            r.cancel.cancel();
        }
        let confidence = (!fgsm).then_some(self.settings.confidence);
        let settings = if fgsm {
            AttackSettings {
                target: None,
                step: self.settings.eps,
                max_steps: 1,
                ..self.settings.clone()
            }
        } else {
            self.settings.clone()
        };
        let request = AttackRequest {
            photo: photo.clone(),
            settings,
        };
        let cancel = CancelToken::new();
        let job = commands.start_job(|job| Command::Attack {
            job,
            cancel: cancel.clone(),
            request,
        });
        self.running = Some(Running {
            job,
            cancel,
            confidence,
        });
        self.history.clear();
        self.status = "Attacking…".into();
    }

    fn handle(&mut self, ctx: &egui::Context, event: Event) {
        match event {
            Event::AttackStep {
                step,
                source_prob,
                target_prob,
                top_class,
                ..
            } => {
                self.history
                    .push([step as f64, f64::from(source_prob), f64::from(target_prob)]);
                self.status = format!(
                    "Step {step}: the network sees {}; target at {:.1}%",
                    imagenet_label(top_class),
                    target_prob * 100.0
                );
            }
            Event::AttackFinished { result, .. } => {
                let confidence = self.running.take().and_then(|r| r.confidence);
                let textures = [
                    texture(
                        ctx,
                        "attack-original",
                        &result.original,
                        TextureOptions::LINEAR,
                    ),
                    texture(
                        ctx,
                        "attack-adversarial",
                        &result.adversarial,
                        TextureOptions::LINEAR,
                    ),
                    texture(
                        ctx,
                        "attack-perturbation",
                        &result.perturbation,
                        TextureOptions::NEAREST,
                    ),
                ];
                self.status = finished_status(&result, confidence);
                self.inside = Inside::new(ctx, &result);
                self.result = Some((*result, textures));
            }
            Event::Cancelled { .. } => {
                self.running = None;
                self.status = "Stopped.".into();
            }
            Event::Failed { error, .. } => {
                self.running = None;
                self.status = format!("The attack failed: {error}");
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for an attack"),
        }
    }

    /// The photo as the network sees it and its top classes, before any attack.
    fn preview(&self, ui: &mut egui::Ui) {
        let Some(p) = &self.preview else {
            ui.weak("The photo is being read…");
            return;
        };
        let side = (ui.available_width() * 0.45).clamp(64.0, 400.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.add(egui::Image::new(&p.view).fit_to_exact_size(egui::vec2(side, side)))
                    .on_hover_text("What the network sees: resized and centre-cropped");
                ui.weak(format!(
                    "{}×{} network view of a {}×{} photo",
                    p.view.size()[0],
                    p.view.size()[1],
                    p.original_size.0,
                    p.original_size.1
                ));
            });
            ui.add_space(12.0);
            ui.vertical(|ui| {
                ui.set_max_width(360.0);
                ui.heading(&p.photo_name);
                ui.add_space(4.0);
                match p.top5.first() {
                    Some(top) => {
                        ui.label("The network sees");
                        ui.label(
                            egui::RichText::new(format!(
                                "{} ({:.1}%)",
                                top.label,
                                top.prob * 100.0
                            ))
                            .strong()
                            .size(20.0),
                        );
                        ui.add_space(8.0);
                        predictions::show(ui, &p.top5);
                    }
                    None => {
                        ui.weak("No prediction.");
                    }
                }
                ui.add_space(12.0);
                match self.settings.target {
                    Some(t) => ui.label(format!(
                        "Attack (PGD) nudges the photo until the network sees {} with {:.0}% \
                         confidence, changing no pixel by more than {}/255.",
                        imagenet_label(t),
                        self.settings.confidence * 100.0,
                        self.settings.eps
                    )),
                    None => ui.label("Choose a target class and press Attack (PGD)."),
                };
            });
        });
    }

    /// The settings column.
    fn controls(&mut self, ui: &mut egui::Ui, photo: &PhotoSource, commands: &mut Commands) {
        egui::ScrollArea::vertical()
            .id_salt("attack-controls")
            .show(ui, |ui| {
                ui.label(format!("Photo: {}", photo.name()));
                let s = &mut self.settings;
                self.picker
                    .show(ui, "attack-target", "Target class", 8, &mut s.target);
                ui.separator();
                ui.add(
                    egui::Slider::new(&mut s.eps, 1.0..=16.0)
                        .step_by(1.0)
                        .text("Budget eps (of 255)"),
                );
                ui.add(egui::Slider::new(&mut s.step, 0.25..=4.0).text("Step (of 255)"));
                ui.add(egui::Slider::new(&mut s.max_steps, 1..=200).text("Max steps"));
                ui.add(
                    egui::Slider::new(&mut s.confidence, CONFIDENCE_RANGE)
                        .step_by(0.01)
                        .custom_formatter(|v, _| format!("{:.0}%", v * 100.0))
                        .custom_parser(|t| {
                            let t = t.trim().trim_end_matches('%').trim();
                            t.parse::<f64>()
                                .ok()
                                .map(|v| if v > 1.0 { v / 100.0 } else { v })
                        })
                        .text("Target confidence"),
                )
                .on_hover_text(
                    "PGD goes on until the network gives the target at least this probability \
                     (or the steps run out)",
                );
                ui.horizontal_wrapped(|ui| {
                    let target = self.settings.target;
                    if ui
                        .add_enabled(target.is_some(), egui::Button::new("Attack (PGD)"))
                        .clicked()
                    {
                        self.start(photo, false, commands);
                    }
                    if ui.button("FGSM (untargeted)").clicked() {
                        self.start(photo, true, commands);
                    }
                    if let Some(r) = &self.running {
                        if ui.button("Stop").clicked() {
                            r.cancel.cancel();
                        }
                    }
                });
                if let Some((result, _)) = &self.result {
                    if ui
                        .add_enabled(
                            self.save.is_none(),
                            egui::Button::new("Save adversarial PNG…"),
                        )
                        .clicked()
                    {
                        let name = format!(
                            "{}-adversarial.png",
                            photo
                                .name()
                                .trim_end_matches(".png")
                                .trim_end_matches(".jpg")
                        );
                        self.save = Some(PendingSave::start(
                            ui.ctx(),
                            name,
                            result.adversarial.clone(),
                        ));
                    }
                }
            });
        PendingSave::report(&mut self.save, &mut self.status);
    }

    /// The three images, the metrics and the curves.
    fn images_and_curves(&mut self, ui: &mut egui::Ui) {
        if !self.status.is_empty() {
            crate::ui::message::message(ui, &self.status, None);
        }
        // With the look inside below, the photos and the curves give up height so that the
        // whole result fits a 1280x800 window.
        let compact = self.inside.is_some();
        if let Some((r, textures)) = &self.result {
            let width = (ui.available_width() / 3.0 - 12.0).max(64.0);
            let max_height = if compact { 150.0 } else { f32::INFINITY };
            ui.horizontal(|ui| {
                let captions = [
                    format!("Original: {}", imagenet_label(r.source)),
                    format!("Adversarial: {}", imagenet_label(r.top_class)),
                    format!("Perturbation ×{:.0}", 127.0 / r.linf.max(1) as f32),
                ];
                for (t, caption) in textures.iter().zip(captions) {
                    ui.vertical(|ui| {
                        let size = t.size_vec2();
                        let aspect = size.x / size.y.max(1.0);
                        let height = (width / aspect.max(1e-3)).min(max_height);
                        ui.add(
                            egui::Image::new(t)
                                .fit_to_exact_size(egui::vec2(height * aspect, height)),
                        );
                        ui.label(caption);
                    });
                }
            });
            let psnr = if r.psnr_db.is_finite() {
                format!("{:.1} dB", r.psnr_db)
            } else {
                "inf".into()
            };
            ui.label(format!(
                "L-inf {}/255, L2 {:.3}, PSNR {psnr}; {} steps, {:.0} ms per step",
                r.linf, r.l2, r.steps, r.ms_per_step
            ));
        } else if self.running.is_none() {
            self.preview(ui);
        }
        if self.history.is_empty() {
            return;
        }
        let source: Vec<[f64; 2]> = self.history.iter().map(|h| [h[0], h[1]]).collect();
        let target: Vec<[f64; 2]> = self.history.iter().map(|h| [h[0], h[2]]).collect();
        Plot::new("attack-probs")
            .height(if compact { 110.0 } else { 160.0 })
            .include_y(0.0)
            .include_y(1.0)
            .legend(Legend::default())
            .allow_drag(false)
            .allow_zoom(false)
            .show(ui, |p| {
                p.line(Line::new("source class", source));
                p.line(Line::new("target class", target));
            });
        if let (Some(inside), Some((r, _))) = (&self.inside, &self.result) {
            ui.separator();
            inside.show(ui, r);
        }
    }
}

/// What the finished attack says: the confidence reached or not, with the target's final
/// probability and the steps used (`confidence`: `None` for FGSM).
fn finished_status(result: &AttackResult, confidence: Option<f32>) -> String {
    let seen = imagenet_label(result.top_class);
    let target = result.target_prob * 100.0;
    match confidence {
        Some(c) if result.reached => format!(
            "Success after {} steps: the network now sees {seen} ({target:.1}%, {:.0}% asked).",
            result.steps,
            c * 100.0
        ),
        Some(c) => format!(
            "Not reached in {} steps: the target is at {target:.1}% ({:.0}% asked); the network \
             sees {seen}. Raise the budget or the steps.",
            result.steps,
            c * 100.0
        ),
        None if result.success => {
            format!("One FGSM step: the network now sees {seen} ({target:.1}%).")
        }
        None => format!("One FGSM step: the network still sees {seen}. Raise the budget."),
    }
}

impl Panel for AttackPanel {
    fn columns(&self) -> &'static [SideColumn] {
        &[COLUMN]
    }

    fn column(&mut self, _: usize, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands) {
        self.controls(ui, env.photo, commands);
        if self.start_when_ready && env.model.is_some() {
            self.start_when_ready = false;
            // Without a target class (one saved so), the untargeted step.
            self.start(env.photo, self.settings.target.is_none(), commands);
        }
    }

    fn view(&mut self, ui: &mut egui::Ui, _: &PanelEnv, _: &mut Commands) {
        self.images_and_curves(ui);
    }

    fn owns(&self, job: JobId) -> bool {
        self.running.as_ref().is_some_and(|r| r.job == job)
    }

    fn on_event(&mut self, ctx: &egui::Context, event: Event, _: &mut Commands) {
        self.handle(ctx, event);
    }
}
