//! The Train tab's error analysis: the validation photos of the confusion-matrix cell the
//! user clicked (or, before any click, the top losses: the mistakes the head was surest of),
//! each with its true and predicted probabilities; a photo clicked shows the head's Grad-CAM
//! for its true class beside the class it was taken for.
//!
//! Thumbnails beyond the first top losses, and the maps, are asked of the worker as they are
//! needed; a newer request cancels the one before.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use eframe::egui::{self, TextureHandle, TextureOptions};

use crate::train::review::{cell, top_losses, ValPrediction};
use crate::ui::command::Commands;
use crate::ui::widgets::texture;
use crate::worker::{CancelToken, ClassMap, Command, Event, JobId, Thumbnail, TrainReport};

/// Photos shown at once in the gallery.
pub(super) const MAX_SHOWN: usize = 60;

/// A job in flight and the token that stops it.
struct Job {
    id: JobId,
    cancel: CancelToken,
}

impl Job {
    fn start(commands: &mut Commands, make: impl FnOnce(JobId, CancelToken) -> Command) -> Self {
        let cancel = CancelToken::new();
        let token = cancel.clone();
        Self {
            id: commands.start_job(|job| make(job, token)),
            cancel,
        }
    }
}

/// One photo looked at closely: the head's maps for two of its classes.
struct Focus {
    /// Index into the report's predictions.
    index: usize,
    job: Option<Job>,
    maps: Vec<(ClassMap, TextureHandle)>,
    error: Option<String>,
}

/// What the gallery shows and the pictures it has.
#[derive(Default)]
pub(super) struct Review {
    /// The confusion-matrix cell `(true, predicted)` shown; `None`: the top losses.
    pub(super) cell: Option<(usize, usize)>,
    textures: HashMap<PathBuf, TextureHandle>,
    /// Photos whose thumbnail is here or on its way.
    asked: HashSet<PathBuf>,
    thumbnails: Option<Job>,
    /// The thumbnail of the photo hovered on the dataset map, on its way.
    hover: Option<(Job, PathBuf)>,
    focus: Option<Focus>,
    /// The photos of the cell (or the top losses), highest loss first, and for which cell.
    sorted: Option<(Option<Cell>, Vec<usize>)>,
}

/// A confusion-matrix cell, `(true, predicted)`.
type Cell = (usize, usize);

/// A review replaced (a new training) stops what it had asked for.
impl Drop for Review {
    fn drop(&mut self) {
        let focus = self.focus.as_ref().and_then(|f| f.job.as_ref());
        for job in self
            .thumbnails
            .iter()
            .chain(self.hover.as_ref().map(|h| &h.0))
            .chain(focus)
        {
            job.cancel.cancel();
        }
    }
}

impl Review {
    /// A review starting from the thumbnails the training sent (the first top losses).
    pub(super) fn new(ctx: &egui::Context, thumbnails: &[Thumbnail]) -> Self {
        let mut review = Self::default();
        for t in thumbnails {
            review.add(ctx, t);
        }
        review
    }

    fn add(&mut self, ctx: &egui::Context, t: &Thumbnail) {
        let name = format!("review-{}", t.path.display());
        let handle = texture(ctx, &name, &t.image, TextureOptions::LINEAR);
        self.asked.insert(t.path.clone());
        self.textures.insert(t.path.clone(), handle);
    }

    /// Whether thumbnails or maps are on their way.
    pub(super) fn is_waiting(&self) -> bool {
        self.thumbnails.is_some() || self.focus.as_ref().is_some_and(|f| f.job.is_some())
    }

    pub(super) fn owns(&self, job: JobId) -> bool {
        self.thumbnails.as_ref().is_some_and(|j| j.id == job)
            || self.hover.as_ref().is_some_and(|h| h.0.id == job)
            || self
                .focus
                .as_ref()
                .and_then(|f| f.job.as_ref())
                .is_some_and(|j| j.id == job)
    }

    pub(super) fn on_event(&mut self, ctx: &egui::Context, event: Event) {
        let focus_job = self
            .focus
            .as_ref()
            .and_then(|f| f.job.as_ref())
            .map(|j| j.id);
        if Some(event.job()) == focus_job {
            let Some(focus) = &mut self.focus else { return };
            focus.job = None;
            match event {
                Event::ClassMaps { maps, .. } => {
                    focus.maps = maps
                        .into_iter()
                        .map(|m| {
                            let name = format!("review-map-{}-{}", focus.index, m.class);
                            let tex = texture(ctx, &name, &m.overlay, TextureOptions::LINEAR);
                            (m, tex)
                        })
                        .collect();
                }
                Event::Failed { error, .. } => focus.error = Some(error),
                _ => {}
            }
            return;
        }
        let hover = self.hover.as_ref().is_some_and(|h| h.0.id == event.job());
        let done = |review: &mut Self| {
            if hover {
                review.hover = None;
            } else {
                review.thumbnails = None;
            }
        };
        match event {
            Event::Thumbnail { thumbnail, .. } => self.add(ctx, &thumbnail),
            Event::ThumbnailsFinished { .. } | Event::Cancelled { .. } => done(self),
            Event::Failed { error, .. } => {
                tracing::warn!("thumbnails failed: {error}");
                done(self);
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for the review"),
        }
    }

    /// The photos the gallery shows now, as indices into `predictions`, and how many there
    /// are in all.
    pub(super) fn shown(&self, predictions: &[ValPrediction]) -> (Vec<usize>, usize) {
        let computed;
        let all = match &self.sorted {
            Some((c, order)) if *c == self.cell => order,
            _ => {
                computed = gallery_order(predictions, self.cell);
                &computed
            }
        };
        (all.iter().take(MAX_SHOWN).copied().collect(), all.len())
    }

    /// The thumbnails here, by photo.
    pub(super) fn textures(&self) -> &HashMap<PathBuf, TextureHandle> {
        &self.textures
    }

    /// Asks for the thumbnail of `path` (hovered on the map) unless it is here or on its way;
    /// the one asked for before is dropped if it has not come yet.
    pub(super) fn want(&mut self, path: &std::path::Path, commands: &mut Commands) {
        if self.asked.contains(path) {
            return;
        }
        if let Some((old, old_path)) = self.hover.take() {
            old.cancel.cancel();
            if !self.textures.contains_key(&old_path) {
                self.asked.remove(&old_path);
            }
        }
        self.asked.insert(path.to_path_buf());
        let paths = vec![path.to_path_buf()];
        let job = Job::start(commands, |job, cancel| Command::Thumbnails {
            job,
            cancel,
            paths,
        });
        self.hover = Some((job, path.to_path_buf()));
    }

    /// The paths of [`Self::shown`], each with whether its thumbnail is here.
    pub(super) fn shown_paths(&self, predictions: &[ValPrediction]) -> Vec<(PathBuf, bool)> {
        self.shown(predictions)
            .0
            .into_iter()
            .map(|i| {
                let path = &predictions[i].path;
                (path.clone(), self.textures.contains_key(path))
            })
            .collect()
    }

    /// Asks for the thumbnails of `shown` that are neither here nor on their way.
    fn request_thumbnails(
        &mut self,
        predictions: &[ValPrediction],
        shown: &[usize],
        commands: &mut Commands,
    ) {
        let missing: Vec<PathBuf> = shown
            .iter()
            .map(|&i| &predictions[i].path)
            .filter(|p| !self.asked.contains(*p))
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        // What the older request had not sent yet will be asked again when shown again.
        if let Some(old) = self.thumbnails.take() {
            old.cancel.cancel();
            self.asked = self.textures.keys().cloned().collect();
        }
        self.asked.extend(missing.iter().cloned());
        self.thumbnails = Some(Job::start(commands, |job, cancel| Command::Thumbnails {
            job,
            cancel,
            paths: missing,
        }));
    }

    /// Looks closely at photo `index`: the head's Grad-CAM for its true class and for the class
    /// it was taken for (for a photo it got right, the runner-up).
    fn focus_on(&mut self, index: usize, p: &ValPrediction, commands: &mut Commands) {
        self.close_focus();
        let other = if p.is_mistake() {
            p.predicted
        } else {
            runner_up(p)
        };
        let classes = vec![p.truth, other];
        let path = p.path.clone();
        self.focus = Some(Focus {
            index,
            job: Some(Job::start(commands, |job, cancel| Command::ClassMaps {
                job,
                cancel,
                path,
                classes,
            })),
            maps: Vec::new(),
            error: None,
        });
    }

    /// The gallery (and the photo looked at); returns a photo to open in Explore.
    pub(super) fn view(
        &mut self,
        ui: &mut egui::Ui,
        report: &TrainReport,
        commands: &mut Commands,
    ) -> Option<PathBuf> {
        let predictions = &report.predictions;
        let name = |c: usize| report.classes.get(c).map_or("?", String::as_str);
        // Sorted once per cell, not every frame.
        if self.sorted.as_ref().map(|s| s.0) != Some(self.cell) {
            self.sorted = Some((self.cell, gallery_order(predictions, self.cell)));
        }
        let (shown, total) = self.shown(predictions);
        // Another cell: the photo looked at goes with the one it belonged to.
        if self
            .focus
            .as_ref()
            .is_some_and(|f| !shown.contains(&f.index))
        {
            self.close_focus();
        }
        self.request_thumbnails(predictions, &shown, commands);
        let more = if total > shown.len() {
            format!(", the first {} shown", shown.len())
        } else {
            String::new()
        };
        ui.horizontal(|ui| match self.cell {
            Some((t, p)) => {
                ui.strong(format!(
                    "True {}, predicted {}: {total} photo{}{more}, highest loss first",
                    name(t),
                    name(p),
                    if total == 1 { "" } else { "s" }
                ));
                if ui.button("Show the top losses").clicked() {
                    self.cell = None;
                }
            }
            None if total == 0 => {
                ui.strong("Top losses: the head got every validation photo right");
            }
            None => {
                ui.strong(format!(
                    "Top losses: the {total} misclassified validation photos{more}, the \
                         surest mistakes first"
                ))
                .on_hover_text(
                    "Sorted by the loss of the true class, -ln p(true). Click a cell of \
                         the confusion matrix to see its photos.",
                );
            }
        });
        let open = self.focused(ui, report);
        if shown.is_empty() && self.cell.is_some() {
            ui.weak("None.");
        }
        let mut clicked = None;
        ui.horizontal_wrapped(|ui| {
            for &i in &shown {
                let p = &predictions[i];
                let caption = if p.is_mistake() {
                    format!(
                        "{} {:.0}%\nseen as {} {:.0}%",
                        name(p.truth),
                        p.probability(p.truth) * 100.0,
                        name(p.predicted),
                        p.probability(p.predicted) * 100.0
                    )
                } else {
                    format!("{} {:.0}%", name(p.truth), p.probability(p.truth) * 100.0)
                };
                let focused = self.focus.as_ref().is_some_and(|f| f.index == i);
                let response = tile(ui, self.textures.get(&p.path), &caption, focused);
                let response = response.on_hover_text(format!(
                    "{}\ntrue: {} ({:.1}%), predicted: {} ({:.1}%), loss {:.2}\nClick to see \
                     where the head looks for each",
                    p.path.display(),
                    name(p.truth),
                    p.probability(p.truth) * 100.0,
                    name(p.predicted),
                    p.probability(p.predicted) * 100.0,
                    p.loss()
                ));
                if response.clicked() {
                    clicked = Some(i);
                }
            }
        });
        if let Some(i) = clicked {
            self.focus_on(i, &predictions[i], commands);
        }
        open
    }

    /// The photo looked at: its maps side by side (or their progress), and its buttons.
    fn focused(&mut self, ui: &mut egui::Ui, report: &TrainReport) -> Option<PathBuf> {
        let focus = self.focus.as_ref()?;
        let p = report.predictions.get(focus.index)?;
        let name = |c: usize| report.classes.get(c).map_or("?", String::as_str);
        let mut open = None;
        let mut close = false;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong(p.path.file_name().map_or_else(
                    || p.path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ))
                .on_hover_text(p.path.display().to_string());
                if ui.button("Open in Explore").clicked() {
                    open = Some(p.path.clone());
                }
                if ui.button("Close").clicked() {
                    close = true;
                }
            });
            if let Some(error) = &focus.error {
                ui.colored_label(ui.visuals().error_fg_color, error);
            } else if focus.job.is_some() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Grad-CAM of both classes…");
                });
            }
            ui.horizontal(|ui| {
                for (n, (map, tex)) in focus.maps.iter().enumerate() {
                    ui.vertical(|ui| {
                        let role = match n {
                            0 => "true",
                            _ if p.is_mistake() => "seen as",
                            _ => "runner-up",
                        };
                        ui.label(format!(
                            "{role}: {} ({:.1}%)",
                            name(map.class),
                            map.probability * 100.0
                        ));
                        ui.add(
                            egui::Image::new(tex)
                                .fit_to_exact_size(egui::vec2(200.0, 200.0))
                                .maintain_aspect_ratio(true),
                        );
                    });
                }
            });
        });
        if close {
            self.close_focus();
        }
        open
    }

    fn close_focus(&mut self) {
        if let Some(job) = self.focus.take().and_then(|f| f.job) {
            job.cancel.cancel();
        }
    }
}

/// One photo of the gallery: its thumbnail (a spinner until it comes) over its caption, a
/// button for the keyboard and screen readers too.
fn tile(
    ui: &mut egui::Ui,
    thumbnail: Option<&TextureHandle>,
    caption: &str,
    selected: bool,
) -> egui::Response {
    const SIDE: f32 = 88.0;
    const WIDTH: f32 = 124.0;
    let font = egui::FontId::proportional(12.0);
    let text = ui.painter().layout(
        caption.to_string(),
        font,
        ui.visuals().text_color(),
        WIDTH - 8.0,
    );
    // Room for three lines whatever the caption, so that the rows of tiles line up.
    let lines = ui.fonts_mut(|f| f.row_height(&egui::FontId::proportional(12.0))) * 3.0;
    let size = egui::vec2(WIDTH, SIDE + 10.0 + lines.max(text.size().y));
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::click());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, caption));
    let visuals = ui.style().interact_selectable(&response, selected);
    let painter = ui.painter_at(rect);
    painter.rect(
        rect,
        4.0,
        visuals.weak_bg_fill,
        visuals.bg_stroke,
        egui::StrokeKind::Inside,
    );
    let square = egui::Rect::from_center_size(
        egui::pos2(rect.center().x, rect.min.y + 4.0 + SIDE / 2.0),
        egui::vec2(SIDE, SIDE),
    );
    match thumbnail {
        Some(tex) => {
            let [w, h] = tex.size().map(|v| v.max(1) as f32);
            let scale = SIDE / w.max(h);
            let shown = egui::Rect::from_center_size(square.center(), egui::vec2(w, h) * scale);
            let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
            painter.image(tex.id(), shown, uv, egui::Color32::WHITE);
        }
        None => {
            egui::Spinner::new().paint_at(ui, square.shrink(SIDE / 3.0));
        }
    }
    let at = egui::pos2(rect.center().x - text.size().x / 2.0, square.max.y + 4.0);
    painter.galley(at, text, visuals.text_color());
    response
}

/// Every photo of `chosen` (a confusion cell, else the mistakes), highest loss first.
fn gallery_order(predictions: &[ValPrediction], chosen: Option<(usize, usize)>) -> Vec<usize> {
    match chosen {
        Some((t, p)) => cell(predictions, t, p),
        None => top_losses(predictions, usize::MAX),
    }
}

/// The most likely class other than the true one.
fn runner_up(p: &ValPrediction) -> usize {
    (0..p.probabilities.len())
        .filter(|&c| c != p.truth)
        .max_by(|&a, &b| p.probabilities[a].total_cmp(&p.probabilities[b]))
        .unwrap_or(p.truth)
}
