//! Explore's "Where it looks": an attribution map of a class (any of the top five, or any
//! class found by search; the head's classes when the head is in use) over the photo as the
//! network sees it, with its deletion and insertion scores, and all methods side by side.
//! The maps are computed on the worker with progress and cancel; the overlay is blended here,
//! so the opacity slider is instant.

use eframe::egui::{self, vec2, Color32, Sense, TextureHandle, TextureOptions};
use egui_plot::{Legend, Line, Plot};

use super::ExploreSettings;
use crate::ui::class_picker::ClassPicker;
use crate::ui::command::Commands;
use crate::ui::widgets::texture;
use crate::vision::heatmap::{overlay, Heatmap};
use crate::worker::{
    Analysis, Attribution, AttributionSettings, CancelToken, Command, Event, ExplainRequest,
    Explanation, JobId, Method, PhotoSource, RgbaImage,
};

/// A map as shown: the explanation and its overlay, blended at `opacity`.
struct Shown {
    explanation: Explanation,
    texture: TextureHandle,
    opacity: f32,
}

/// A job on the worker: one method, or all of them.
struct Running {
    job: JobId,
    cancel: CancelToken,
    all: bool,
    fraction: f32,
    stage: String,
}

/// What was asked for last, so a change of photo, class, method or layer asks again.
#[derive(Debug, Clone, PartialEq)]
struct Asked {
    photo: String,
    method: Method,
    class: Option<usize>,
    head: bool,
    layer: Option<String>,
}

/// The view's state.
#[derive(Default)]
pub struct LooksState {
    /// The class explained (`None`: the top one), of the head when `head`.
    class: Option<usize>,
    head: bool,
    /// The CAMs' layer (`None`: the last convolutional one).
    layer: Option<String>,
    picker: ClassPicker,
    running: Option<Running>,
    asked: Option<Asked>,
    single: Option<Shown>,
    /// The side-by-side, in [`Method::ALL`]'s order.
    all: Vec<Option<Shown>>,
    error: Option<String>,
    /// Run all methods side by side once the photo is shown (from the command line).
    all_at_start: bool,
}

/// The overlay of `a` on `view` (the network's view of the photo).
pub fn heatmap_texture(
    ctx: &egui::Context,
    name: &str,
    view: &RgbaImage,
    a: &Attribution,
    opacity: f32,
) -> TextureHandle {
    let rgb = image::RgbImage::from_fn(view.width as u32, view.height as u32, |x, y| {
        let i = 4 * (y as usize * view.width + x as usize);
        image::Rgb([view.rgba[i], view.rgba[i + 1], view.rgba[i + 2]])
    });
    let map = Heatmap {
        values: &a.map,
        height: a.height,
        width: a.width,
        signed: a.method.signed(),
    };
    let blended = overlay(&rgb, &map, opacity);
    let mut rgba = Vec::with_capacity(blended.len() / 3 * 4);
    for p in blended.pixels() {
        rgba.extend_from_slice(&[p.0[0], p.0[1], p.0[2], 255]);
    }
    let image = RgbaImage {
        width: view.width,
        height: view.height,
        rgba,
    };
    texture(ctx, name, &image, TextureOptions::LINEAR)
}

/// A vertical colour bar beside a map `height` high: high at the top (signed: + red, - blue).
pub fn colour_bar(ui: &mut egui::Ui, signed: bool, height: f32) {
    ui.vertical(|ui| {
        ui.weak(if signed { "+" } else { "high" });
        let (rect, _) = ui.allocate_exact_size(vec2(14.0, height - 40.0), Sense::hover());
        let steps = 48;
        let map = Heatmap {
            values: &[],
            height: 0,
            width: 0,
            signed,
        };
        for i in 0..steps {
            let t = 1.0 - i as f32 / (steps - 1) as f32;
            let [r, g, b] = map.colour(if signed { 2.0 * t - 1.0 } else { t });
            let y0 = rect.top() + rect.height() * i as f32 / steps as f32;
            let y1 = rect.top() + rect.height() * (i + 1) as f32 / steps as f32;
            ui.painter().rect_filled(
                egui::Rect::from_min_max(egui::pos2(rect.left(), y0), egui::pos2(rect.right(), y1)),
                0.0,
                Color32::from_rgb(r, g, b),
            );
        }
        ui.weak(if signed { "-" } else { "low" });
    });
}

fn method_label(m: Method) -> &'static str {
    match m {
        Method::GradCam => "Grad-CAM",
        Method::GradCamPlusPlus => "Grad-CAM++",
        Method::HiResCam => "HiResCAM",
        Method::LayerCam => "LayerCAM",
        Method::Saliency => "Saliency (gradient)",
        Method::SmoothGrad => "SmoothGrad",
        Method::IntegratedGradients => "Integrated Gradients",
        Method::Occlusion => "Occlusion",
    }
}

fn method_help(m: Method) -> &'static str {
    match m {
        Method::GradCam => {
            "The layer's channels weighted by their mean gradient: coarse, fast, class-specific."
        }
        Method::GradCamPlusPlus => {
            "Grad-CAM with second-order weights: better for several objects of a class."
        }
        Method::HiResCam => {
            "Gradient times activation per cell, summed over channels: faithful to the layer."
        }
        Method::LayerCam => {
            "Positive gradient times activation per cell: works on earlier layers too."
        }
        Method::Saliency => {
            "How strongly each pixel moves the class score (the input gradient): fine, noisy."
        }
        Method::SmoothGrad => "Saliency averaged over noisy copies of the photo: less noise.",
        Method::IntegratedGradients => {
            "Gradients along the path from a black photo, times the change: signed."
        }
        Method::Occlusion => {
            "How much the score drops when a black square covers each place: model-agnostic, slow."
        }
    }
}

impl LooksState {
    /// Runs every method side by side as soon as a photo is shown.
    pub fn compare_at_start(&mut self) {
        self.all_at_start = true;
    }

    /// Whether a map is shown and nothing is running (what a screenshot waits for).
    pub fn drawn(&self) -> bool {
        self.running.is_none()
            && !self.all_at_start
            && (self.single.is_some() || self.all.iter().any(Option::is_some))
    }

    /// Whether `job` is this view's.
    pub fn owns(&self, job: JobId) -> bool {
        self.running.as_ref().is_some_and(|r| r.job == job)
    }

    fn cancel(&mut self) {
        if let Some(r) = self.running.take() {
            r.cancel.cancel();
        }
    }

    fn start(
        &mut self,
        photo: &PhotoSource,
        settings: &ExploreSettings,
        all: bool,
        commands: &mut Commands,
    ) {
        self.cancel();
        self.error = None;
        let methods = if all {
            Method::ALL.to_vec()
        } else {
            vec![settings.looks_method]
        };
        if all {
            self.all = (0..methods.len()).map(|_| None).collect();
        }
        let cancel = CancelToken::new();
        let request = ExplainRequest {
            photo: photo.clone(),
            methods,
            class: self.class,
            head: self.head,
            settings: AttributionSettings {
                layer: self.layer.clone(),
                ..AttributionSettings::default()
            },
            causal_steps: crate::explain::attribution::explanation::DEFAULT_CAUSAL_STEPS,
        };
        let job = commands.start_job(|job| Command::Explain {
            job,
            cancel: cancel.clone(),
            request: Box::new(request),
        });
        self.running = Some(Running {
            job,
            cancel,
            all,
            fraction: 0.0,
            stage: "starting".into(),
        });
    }

    /// Handles an event of this view's job.
    pub fn on_event(
        &mut self,
        ctx: &egui::Context,
        event: Event,
        view: Option<&RgbaImage>,
        opacity: f32,
    ) {
        match event {
            Event::ExplainProgress {
                index,
                total,
                stage,
                fraction,
                ..
            } => {
                if let Some(r) = &mut self.running {
                    r.fraction = fraction;
                    r.stage = if total > 1 {
                        format!(
                            "{} ({}/{total}): {stage}",
                            method_label(Method::ALL[index.min(7)]),
                            index + 1
                        )
                    } else {
                        stage
                    };
                }
            }
            Event::Explained {
                index, explanation, ..
            } => {
                let Some(view) = view else { return };
                let all = self.running.as_ref().is_some_and(|r| r.all);
                let name = format!("looks-{}-{index}", if all { "all" } else { "one" });
                let texture = heatmap_texture(ctx, &name, view, &explanation.attribution, opacity);
                let shown = Shown {
                    explanation: *explanation,
                    texture,
                    opacity,
                };
                if all {
                    if let Some(slot) = self.all.get_mut(index) {
                        *slot = Some(shown);
                    }
                } else {
                    self.single = Some(shown);
                }
            }
            Event::ExplainFinished { .. } | Event::Cancelled { .. } => self.running = None,
            Event::Failed { error, .. } => {
                self.running = None;
                self.error = Some(error);
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for a map"),
        }
    }

    /// Draws the view for `analysis` of `photo`.
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        analysis: &Analysis,
        photo: &PhotoSource,
        settings: &mut ExploreSettings,
        commands: &mut Commands,
    ) {
        let ctx = ui.ctx().clone();
        self.head &= analysis.head.is_some();
        self.controls(ui, analysis, settings);
        let asked = Asked {
            photo: analysis.photo_name.clone(),
            method: settings.looks_method,
            class: self.class,
            head: self.head,
            layer: self.layer.clone(),
        };
        let photo_changed = self.asked.as_ref().is_some_and(|a| a.photo != asked.photo);
        if photo_changed {
            self.all.clear();
        }
        if std::mem::take(&mut self.all_at_start) {
            self.asked = Some(asked);
            self.start(photo, settings, true, commands);
        } else if self.asked.as_ref() != Some(&asked) {
            // A new photo, class, method or layer: its map is asked for at once (once: a
            // failure shows until something changes).
            self.asked = Some(asked);
            self.single = None;
            self.start(photo, settings, false, commands);
        }
        ui.horizontal(|ui| {
            let running = self.running.is_some();
            if ui
                .add_enabled(!running, egui::Button::new("Compare all methods"))
                .on_hover_text("Every method on this class, with its deletion and insertion scores (occlusion takes longest)")
                .clicked()
            {
                self.start(photo, settings, true, commands);
            }
            if running && ui.button("Cancel").clicked() {
                self.cancel();
            }
            if let Some(r) = &self.running {
                ui.add(
                    egui::ProgressBar::new(r.fraction)
                        .desired_width(220.0)
                        .text(r.stage.clone()),
                );
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().warn_fg_color, e);
        }
        // A changed opacity re-blends the shown maps (224 px: instant).
        let opacity = settings.looks_opacity;
        for shown in self.single.iter_mut().chain(self.all.iter_mut().flatten()) {
            if shown.opacity != opacity {
                shown.texture = heatmap_texture(
                    &ctx,
                    "looks-reblend",
                    &analysis.network_view,
                    &shown.explanation.attribution,
                    opacity,
                );
                shown.opacity = opacity;
            }
        }
        egui::ScrollArea::vertical().show(ui, |ui| {
            if let Some(shown) = &self.single {
                main_map(ui, shown);
            }
            if !self.all.is_empty() {
                ui.separator();
                side_by_side(ui, &self.all, self.running.is_some());
            }
        });
    }

    fn controls(&mut self, ui: &mut egui::Ui, analysis: &Analysis, settings: &mut ExploreSettings) {
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Method");
            egui::ComboBox::from_id_salt("looks-method")
                .selected_text(method_label(settings.looks_method))
                .show_ui(ui, |ui| {
                    for m in Method::ALL {
                        ui.selectable_value(&mut settings.looks_method, m, method_label(m))
                            .on_hover_text(method_help(m));
                    }
                })
                .response
                .labelled_by(label.id)
                .on_hover_text(method_help(settings.looks_method));
            if settings.looks_method.is_cam() {
                let label = ui.label("Layer");
                let shown = self
                    .layer
                    .clone()
                    .unwrap_or_else(|| "last convolutional (default)".into());
                egui::ComboBox::from_id_salt("looks-layer")
                    .selected_text(shown)
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut self.layer, None, "last convolutional (default)");
                        for l in analysis.layers.iter().filter(|l| !l.is_vector()) {
                            ui.selectable_value(&mut self.layer, Some(l.name.clone()), &l.name);
                        }
                    })
                    .response
                    .labelled_by(label.id);
            }
            ui.add(egui::Slider::new(&mut settings.looks_opacity, 0.0..=1.0).text("opacity"));
        });
        ui.horizontal_wrapped(|ui| {
            ui.label("Class:");
            if let Some(h) = &analysis.head {
                if ui.selectable_label(!self.head, "ImageNet").clicked() && self.head {
                    self.head = false;
                    self.class = None;
                }
                if ui
                    .selectable_label(self.head, format!("Head: {}", h.head))
                    .clicked()
                    && !self.head
                {
                    self.head = true;
                    self.class = None;
                }
            }
            let top = match &analysis.head {
                Some(h) if self.head => &h.top,
                _ => &analysis.top5,
            };
            let current = self.class.or_else(|| top.first().map(|c| c.index));
            for c in top {
                let text = format!("{} {:.0}%", c.label, c.prob * 100.0);
                if ui
                    .selectable_label(current == Some(c.index), text)
                    .clicked()
                {
                    self.class = Some(c.index);
                }
            }
        });
        if !self.head {
            ui.collapsing("Another ImageNet class…", |ui| {
                let mut chosen = self.class;
                self.picker
                    .show(ui, "looks-class", "Search", 5, &mut chosen);
                if chosen != self.class {
                    self.class = chosen;
                }
            });
        }
    }
}

/// The map large, the colour bar, and the scores with their curves.
fn main_map(ui: &mut egui::Ui, shown: &Shown) {
    let e = &shown.explanation;
    let a = &e.attribution;
    let side = (ui.available_width() * 0.55).clamp(200.0, 448.0);
    ui.horizontal(|ui| {
        ui.add(
            egui::Image::new(&shown.texture).fit_to_exact_size(vec2(side, side)),
        )
        .on_hover_text("The map over the photo as the network sees it");
        colour_bar(ui, a.method.signed(), side);
        ui.vertical(|ui| {
            ui.heading(format!("{} of “{}”", method_label(a.method), e.label));
            ui.label(format!("probability {:.1}%", e.probability * 100.0));
            let layer = a.layer.as_deref().map_or("the input".to_string(), |l| format!("layer {l}"));
            ui.label(format!("{layer}, {}×{} map, {:.0} ms", a.width, a.height, e.map_ms));
            ui.weak(method_help(a.method));
            ui.add_space(6.0);
            if let (Some(d), Some(i)) = (&e.deletion, &e.insertion) {
                ui.label(format!("Deletion {:.3}  (lower is better)", d.auc))
                    .on_hover_text("The class probability as the most important pixels are removed first; the area under it");
                ui.label(format!("Insertion {:.3}  (higher is better)", i.auc))
                    .on_hover_text("The class probability as the most important pixels are revealed first on a blurred photo; the area under it");
                let line = |c: &[f32]| -> Vec<[f64; 2]> {
                    let n = (c.len().max(2) - 1) as f64;
                    c.iter().enumerate().map(|(k, &p)| [k as f64 / n, f64::from(p)]).collect()
                };
                Plot::new("looks-causal")
                    .height(150.0)
                    .width(ui.available_width().min(320.0))
                    .include_y(0.0)
                    .include_y(1.0)
                    .legend(Legend::default())
                    .allow_drag(false)
                    .allow_zoom(false)
                    .allow_scroll(false)
                    .show(ui, |p| {
                        p.line(Line::new("deletion", line(&d.curve)));
                        p.line(Line::new("insertion", line(&i.curve)));
                    });
                ui.weak("x: share of pixels removed / revealed; y: class probability");
            }
        });
    });
}

/// Every method's map small, with its scores; the best scores in bold.
fn side_by_side(ui: &mut egui::Ui, all: &[Option<Shown>], running: bool) {
    ui.strong("All methods, the same class");
    let scores =
        |f: fn(&Shown) -> Option<f32>| -> Vec<f32> { all.iter().flatten().filter_map(f).collect() };
    let best_deletion = scores(|s| s.explanation.deletion.as_ref().map(|d| d.auc))
        .into_iter()
        .fold(f32::INFINITY, f32::min);
    let best_insertion = scores(|s| s.explanation.insertion.as_ref().map(|d| d.auc))
        .into_iter()
        .fold(f32::NEG_INFINITY, f32::max);
    let columns = ((ui.available_width() / 170.0).floor() as usize).clamp(1, 8);
    let tile = (ui.available_width() / columns as f32 - 12.0).clamp(96.0, 200.0);
    egui::Grid::new("looks-all")
        .spacing(vec2(8.0, 8.0))
        .show(ui, |ui| {
            for (i, (method, shown)) in Method::ALL.iter().zip(all).enumerate() {
                ui.vertical(|ui| {
                    ui.strong(method_label(*method));
                    match shown {
                        Some(s) => {
                            ui.add(
                                egui::Image::new(&s.texture).fit_to_exact_size(vec2(tile, tile)),
                            )
                            .on_hover_text(method_help(*method));
                            if let (Some(d), Some(ins)) =
                                (&s.explanation.deletion, &s.explanation.insertion)
                            {
                                let mark = |text: String, best: bool| {
                                    if best {
                                        egui::RichText::new(text).strong()
                                    } else {
                                        egui::RichText::new(text)
                                    }
                                };
                                ui.label(mark(
                                    format!("deletion {:.3}", d.auc),
                                    d.auc == best_deletion,
                                ));
                                ui.label(mark(
                                    format!("insertion {:.3}", ins.auc),
                                    ins.auc == best_insertion,
                                ));
                            }
                            ui.weak(format!("{:.0} ms", s.explanation.map_ms));
                        }
                        None => {
                            let (rect, _) =
                                ui.allocate_exact_size(vec2(tile, tile), Sense::hover());
                            ui.painter()
                                .rect_filled(rect, 4.0, ui.visuals().faint_bg_color);
                            ui.weak(if running {
                                "waiting…"
                            } else {
                                "not computed (cancelled)"
                            });
                        }
                    }
                });
                if (i + 1) % columns == 0 {
                    ui.end_row();
                }
            }
        });
    ui.weak("Deletion: lower is better; insertion: higher is better (best in bold).");
}
