//! The "Attack" tab: nudge the current photo until the network sees the chosen class (PGD
//! under an L-infinity budget in 8-bit units), or away from its own class in one FGSM step;
//! original, adversarial and amplified perturbation side by side, live probabilities, and
//! L-infinity, L2 and PSNR.

use eframe::egui::{self, TextureHandle, TextureOptions};
use egui_plot::{Legend, Line, Plot};

use super::class_picker::ClassPicker;
use super::command::Commands;
use super::panel::{Panel, PanelEnv, SideColumn};
use super::widgets::finite_within;
use super::widgets::{texture, PendingSave};
use crate::labels::imagenet_label;
use crate::worker::{
    AttackRequest, AttackResult, AttackSettings, CancelToken, Command, Event, JobId, PhotoSource,
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
    }
}

const COLUMN: SideColumn = SideColumn {
    id: "attack-controls",
    default_width: 300.0,
    min_width: 240.0,
    max_width: 480.0,
};

struct Running {
    job: JobId,
    cancel: CancelToken,
}

/// The Attack tab's state.
pub struct AttackPanel {
    settings: AttackSettings,
    picker: ClassPicker,
    running: Option<Running>,
    /// (step, source probability, target probability).
    history: Vec<[f64; 3]>,
    result: Option<(AttackResult, [TextureHandle; 3])>,
    status: String,
    save: Option<PendingSave>,
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
            status: String::new(),
            save: None,
        }
    }

    /// The settings as they would be saved.
    pub fn settings(&self) -> &AttackSettings {
        &self.settings
    }

    /// Whether an attack is running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The last finished attack.
    pub fn result(&self) -> Option<&AttackResult> {
        self.result.as_ref().map(|(r, _)| r)
    }

    /// Starts PGD towards the chosen class, or (`fgsm`) one untargeted step of the whole
    /// budget.
    fn start(&mut self, photo: &PhotoSource, fgsm: bool, commands: &mut Commands) {
        if let Some(r) = &self.running {
            r.cancel.cancel();
        }
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
        self.running = Some(Running { job, cancel });
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
                    "Step {step}: the network sees {}",
                    imagenet_label(top_class)
                );
            }
            Event::AttackFinished { result, .. } => {
                self.running = None;
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
                self.status = if result.success {
                    format!(
                        "Success after {} steps: the network now sees {} ({:.1}%).",
                        result.steps,
                        imagenet_label(result.top_class),
                        result.target_prob * 100.0
                    )
                } else {
                    format!(
                        "Not reached in {} steps: the network still sees {}. Raise the budget or the steps.",
                        result.steps,
                        imagenet_label(result.top_class)
                    )
                };
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
        ui.label(&self.status);
        if let Some((r, textures)) = &self.result {
            let width = (ui.available_width() / 3.0 - 12.0).max(64.0);
            ui.horizontal(|ui| {
                let captions = [
                    format!("Original: {}", imagenet_label(r.source)),
                    format!("Adversarial: {}", imagenet_label(r.top_class)),
                    format!("Perturbation ×{:.0}", 127.0 / r.linf.max(1) as f32),
                ];
                for (t, caption) in textures.iter().zip(captions) {
                    ui.vertical(|ui| {
                        let size = t.size_vec2();
                        let height = width * size.y / size.x.max(1.0);
                        ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(width, height)));
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
            ui.weak("Choose a target class and press Attack.");
        }
        let source: Vec<[f64; 2]> = self.history.iter().map(|h| [h[0], h[1]]).collect();
        let target: Vec<[f64; 2]> = self.history.iter().map(|h| [h[0], h[2]]).collect();
        Plot::new("attack-probs")
            .height(160.0)
            .include_y(0.0)
            .include_y(1.0)
            .legend(Legend::default())
            .allow_drag(false)
            .allow_zoom(false)
            .show(ui, |p| {
                p.line(Line::new("source class", source));
                p.line(Line::new("target class", target));
            });
    }
}

impl Panel for AttackPanel {
    fn columns(&self) -> &'static [SideColumn] {
        &[COLUMN]
    }

    fn column(&mut self, _: usize, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands) {
        self.controls(ui, env.photo, commands);
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
