//! The Train tab's dataset map: every photo of the folder placed by its frozen features,
//! coloured by class, validation photos the head got wrong ringed. PCA (the two directions of
//! largest spread) at once; then t-SNE (each photo's neighbours kept), formed live on the
//! worker, cancellable. Hover a point for its photo and classes; click it to open the photo in
//! Explore. Classes that separate on the map are the reason a linear head on frozen features
//! works.

use std::collections::HashMap;
use std::path::PathBuf;

use eframe::egui::{self, Color32, TextureHandle};
use egui_plot::{MarkerShape, Plot, Points};

use crate::ui::command::Commands;
use crate::worker::{CancelToken, Command, Event, JobId, MapPoint, TsneOptions, TSNE_MIN_POINTS};

/// Which projection the map shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    Pca,
    Tsne,
}

/// Where the t-SNE map is.
#[derive(Debug, Clone)]
enum TsneState {
    /// Not asked for (or the map has too few points).
    Idle,
    /// Forming: epoch `epoch` of `epochs`.
    Running {
        job: JobId,
        cancel: CancelToken,
        epoch: usize,
        epochs: usize,
    },
    Done {
        perplexity: f32,
    },
    /// Stopped by the user after `epoch` of `epochs` (the map shown is that epoch's).
    Stopped {
        epoch: usize,
        epochs: usize,
    },
    Failed(String),
}

/// The map's state: the projection shown and the t-SNE job.
pub struct MapView {
    projection: Projection,
    state: TsneState,
    /// The t-SNE points so far, one per map point.
    tsne: Vec<[f32; 2]>,
    /// The number of map points (t-SNE answers of another length are dropped).
    len: usize,
    /// The class picked in the legend: its points drawn on top, the others faded.
    picked: Option<usize>,
    /// The class under the pointer in the legend (last frame), shown as if picked.
    legend_hover: Option<usize>,
}

impl MapView {
    /// The view of a fresh training's `points`, its t-SNE started at once (the worker keeps
    /// that training's features).
    pub fn new(points: &[MapPoint], commands: &mut Commands) -> Self {
        let mut view = Self {
            projection: Projection::Pca,
            state: TsneState::Idle,
            tsne: Vec::new(),
            len: points.len(),
            picked: None,
            legend_hover: None,
        };
        if points.len() >= TSNE_MIN_POINTS {
            view.start(commands);
        }
        view
    }

    fn start(&mut self, commands: &mut Commands) {
        self.cancel();
        let cancel = CancelToken::new();
        let options = TsneOptions::default();
        let job = commands.start_job(|job| Command::Tsne {
            job,
            cancel: cancel.clone(),
            options,
        });
        self.state = TsneState::Running {
            job,
            cancel,
            epoch: 0,
            epochs: options.epochs,
        };
        self.projection = Projection::Tsne;
    }

    /// Stops a t-SNE in progress (the map keeps what it has).
    pub fn cancel(&self) {
        if let TsneState::Running { cancel, .. } = &self.state {
            cancel.cancel();
        }
    }

    pub fn owns(&self, job: JobId) -> bool {
        matches!(&self.state, TsneState::Running { job: j, .. } if *j == job)
    }

    /// Takes its job's event.
    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::TsneProgress {
                epoch,
                epochs: total,
                points,
                ..
            } => {
                if points.len() == self.len {
                    self.tsne = points;
                }
                if let TsneState::Running {
                    epoch: e, epochs, ..
                } = &mut self.state
                {
                    (*e, *epochs) = (epoch, total);
                }
            }
            Event::TsneFinished { map, .. } => {
                if map.points.len() == self.len {
                    self.tsne = map.points;
                }
                self.state = TsneState::Done {
                    perplexity: map.perplexity,
                };
            }
            Event::Cancelled { .. } => {
                if let TsneState::Running { epoch, epochs, .. } = self.state {
                    self.state = TsneState::Stopped { epoch, epochs };
                }
            }
            Event::Failed { error, .. } => {
                self.state = TsneState::Failed(error);
                self.projection = Projection::Pca;
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for a map"),
        }
    }

    /// The projection shown.
    pub fn projection(&self) -> Projection {
        self.projection
    }

    /// The t-SNE map's epochs done and total while it forms.
    pub fn tsne_progress(&self) -> Option<(usize, usize)> {
        match self.state {
            TsneState::Running { epoch, epochs, .. } => Some((epoch, epochs)),
            _ => None,
        }
    }

    /// Whether the t-SNE map is complete.
    pub fn tsne_done(&self) -> bool {
        matches!(self.state, TsneState::Done { .. })
    }

    /// The t-SNE points shown (empty until the first epoch comes).
    pub fn tsne_points(&self) -> &[[f32; 2]] {
        &self.tsne
    }

    /// The projection picker and the t-SNE's progress (with Cancel, or Compute again).
    fn controls(&mut self, ui: &mut egui::Ui, commands: &mut Commands) {
        ui.horizontal_wrapped(|ui| {
            let has_tsne = self.tsne.len() == self.len && self.len > 0;
            ui.selectable_value(&mut self.projection, Projection::Pca, "PCA")
                .on_hover_text(
                    "The two directions along which the features spread most: distances \
                     are faithful at large scale, neighbourhoods are not.",
                );
            ui.add_enabled_ui(has_tsne, |ui| {
                ui.selectable_value(&mut self.projection, Projection::Tsne, "t-SNE")
                    .on_hover_text(
                        "Each photo kept near its nearest neighbours in feature space \
                         (perplexity 30): clusters are real, distances between them and \
                         their sizes are not.",
                    );
            });
            match &self.state {
                TsneState::Running {
                    epoch,
                    epochs,
                    cancel,
                    ..
                } => {
                    let fraction = *epoch as f32 / (*epochs).max(1) as f32;
                    ui.add(
                        egui::ProgressBar::new(fraction)
                            .desired_width(160.0)
                            .text(format!("t-SNE epoch {epoch}/{epochs}")),
                    );
                    if cancel.is_cancelled() {
                        ui.weak("stopping...");
                    } else if ui
                        .button("Stop")
                        .on_hover_text("Stop forming the map; it keeps the epoch it reached")
                        .clicked()
                    {
                        self.cancel();
                    }
                }
                TsneState::Done { perplexity } => {
                    ui.weak(format!("t-SNE done (perplexity {perplexity})"));
                }
                TsneState::Stopped { epoch, epochs } => {
                    ui.weak(format!("t-SNE stopped at epoch {epoch}/{epochs}"));
                    if ui.button("Compute t-SNE again").clicked() {
                        self.start(commands);
                    }
                }
                TsneState::Idle => {
                    if self.len >= TSNE_MIN_POINTS && ui.button("Compute t-SNE").clicked() {
                        self.start(commands);
                    }
                }
                TsneState::Failed(error) => {
                    ui.colored_label(ui.visuals().warn_fg_color, format!("t-SNE: {error}"));
                }
            }
        });
    }
}

/// A point nearer than this to the pointer (in screen pixels) is the one hovered.
const HOVER_PIXELS: f32 = 8.0;

/// Matplotlib's `tab20`, dark shades first: 20 classes that tell apart.
const PALETTE: [u32; 20] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22,
    0x17becf, 0xaec7e8, 0xffbb78, 0x98df8a, 0xff9896, 0xc5b0d5, 0xc49c94, 0xf7b6d2, 0xc7c7c7,
    0xdbdb8d, 0x9edae5,
];

/// Class `c`'s colour: `tab20`, then hues spread by the golden ratio (37 pet breeds).
pub(super) fn class_colour(c: usize) -> Color32 {
    match PALETTE.get(c) {
        Some(&rgb) => Color32::from_rgb((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8),
        None => egui::ecolor::Hsva::new((c as f32 * 0.618_034).fract(), 0.6, 0.85, 1.0).into(),
    }
}

/// What the user did on the map.
#[derive(Default)]
pub(super) struct MapAction {
    /// The photo under the pointer (its thumbnail is wanted).
    pub hovered: Option<PathBuf>,
    /// The photo clicked, to open in Explore.
    pub open: Option<PathBuf>,
}

/// Draws the map with its controls.
pub(super) fn dataset_map(
    ui: &mut egui::Ui,
    view: &mut MapView,
    classes: &[String],
    points: &[MapPoint],
    thumbnails: &HashMap<PathBuf, TextureHandle>,
    commands: &mut Commands,
) -> MapAction {
    let mut action = MapAction::default();
    if points.is_empty() {
        return action;
    }
    let title = match view.projection {
        Projection::Tsne => {
            "Dataset map: the frozen features by t-SNE (each photo near its neighbours)"
        }
        Projection::Pca => "Dataset map: the frozen features on their two principal components",
    };
    ui.strong(title).on_hover_text(
        "Each dot is a photo, coloured by its class (the features the head is trained on). \
         Classes that lie apart here are easy for a linear head. Validation photos the head \
         got wrong are ringed. Hover a dot for its photo; click to open it in Explore; drag \
         and ctrl-scroll to move and zoom, double-click to reset.",
    );
    view.controls(ui, commands);
    let tsne = (view.projection == Projection::Tsne && view.tsne.len() == points.len())
        .then_some(view.tsne.as_slice());
    let at = |i: usize, p: &MapPoint| {
        let xy = tsne.map_or(p.xy, |t| t[i]);
        [f64::from(xy[0]), f64::from(xy[1])]
    };
    let k = classes.len();
    let mistakes = points
        .iter()
        .filter(|p| p.predicted.is_some_and(|q| q != p.truth))
        .count();
    ui.weak(format!(
        "{} photos, {mistakes} validation mistakes ringed",
        points.len()
    ));
    // One plot memory per projection: each keeps its own zoom.
    let id = match tsne {
        Some(_) => "train-dataset-map-tsne",
        None => "train-dataset-map",
    };
    let forming = tsne.is_some() && view.tsne_progress().is_some();
    let mut plot = Plot::new(id)
        .height(340.0)
        .show_x(false)
        .show_y(false)
        .show_axes([false, false])
        // The page scrolls over the map; ctrl-scroll (or drag) zooms and moves it.
        .allow_scroll(false);
    if forming {
        // Follow the map as it unfolds (a zoom made meanwhile would lose it).
        plot = plot.reset();
    }
    let ring = ui.visuals().strong_text_color();
    // The legend's class (hovered, else clicked) comes last, larger, over faded others.
    let shown = view.legend_hover.or(view.picked).filter(|&c| c < k);
    let order = (0..k).filter(|&c| Some(c) != shown).chain(shown);
    let mut hovered = None;
    let response = plot.show(ui, |plot_ui| {
        for c in order {
            let xy: Vec<[f64; 2]> = points
                .iter()
                .enumerate()
                .filter(|(_, p)| p.truth == c)
                .map(|(i, p)| at(i, p))
                .collect();
            let (colour, radius) = match shown {
                Some(s) if s == c => (class_colour(c), 4.0),
                Some(_) => (class_colour(c).gamma_multiply(0.2), 2.0),
                None => (class_colour(c), 2.5),
            };
            plot_ui.points(
                Points::new(classes[c].as_str(), xy)
                    .color(colour)
                    .radius(radius)
                    .shape(MarkerShape::Circle)
                    .filled(true)
                    .allow_hover(false),
            );
        }
        let wrong: Vec<[f64; 2]> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.predicted.is_some_and(|q| q != p.truth))
            .map(|(i, p)| at(i, p))
            .collect();
        plot_ui.points(
            Points::new("misclassified (ringed)", wrong)
                .color(ring)
                .radius(5.0)
                .shape(MarkerShape::Circle)
                .filled(false)
                .allow_hover(false),
        );
        if let Some(pointer) = plot_ui.pointer_coordinate() {
            let pointer_at = plot_ui.screen_from_plot(pointer);
            hovered = points
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let [x, y] = at(i, p);
                    let s = plot_ui.screen_from_plot(egui_plot::PlotPoint::new(x, y));
                    (i, s.distance(pointer_at))
                })
                .filter(|&(_, d)| d <= HOVER_PIXELS)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i);
        }
    });
    legend(ui, view, classes, points);
    let hovered = hovered.and_then(|i| points.get(i));
    let clicked = response.response.clicked();
    if let Some(p) = hovered {
        action.hovered = Some(p.path.clone());
        let name = |c: usize| classes.get(c).map_or("?", String::as_str);
        response.response.on_hover_ui_at_pointer(|ui| {
            if let Some(tex) = thumbnails.get(&p.path) {
                ui.add(egui::Image::new(tex).fit_to_exact_size(egui::vec2(96.0, 96.0)));
            }
            ui.label(p.path.display().to_string());
            ui.label(match p.predicted {
                Some(q) if q != p.truth => {
                    format!("{} (validation), seen as {}", name(p.truth), name(q))
                }
                Some(_) => format!("{} (validation, right)", name(p.truth)),
                None => format!("{} (training)", name(p.truth)),
            });
            ui.weak("Click to open it in Explore");
        });
        if clicked {
            action.open = Some(p.path.clone());
        }
    }
    action
}

/// The classes under the map as chips in wrapped rows (a legend inside the plot would cover
/// its points, and 37 names would cover all of them): a dot of the class's colour, its name
/// and photo count. Hover a chip to bring its class forward, click to keep it so.
fn legend(ui: &mut egui::Ui, view: &mut MapView, classes: &[String], points: &[MapPoint]) {
    let mut counts = vec![0usize; classes.len()];
    for p in points {
        if let Some(n) = counts.get_mut(p.truth) {
            *n += 1;
        }
    }
    let mut hover = None;
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 10.0;
        for (c, name) in classes.iter().enumerate() {
            let text = format!("{name} ({})", counts[c]);
            let response = chip(ui, &text, class_colour(c), view.picked == Some(c))
                .on_hover_text("Bring this class forward; click to keep it, click again to clear");
            if response.hovered() {
                hover = Some(c);
            }
            if response.clicked() {
                view.picked = (view.picked != Some(c)).then_some(c);
            }
        }
    });
    view.legend_hover = hover;
}

/// One legend entry as a single widget (so a wrapped row never parts its dot from its name):
/// a dot of `colour`, then `text`, highlighted when `selected` or hovered.
fn chip(ui: &mut egui::Ui, text: &str, colour: Color32, selected: bool) -> egui::Response {
    let galley = egui::WidgetText::from(text).into_galley(
        ui,
        Some(egui::TextWrapMode::Extend),
        f32::INFINITY,
        egui::TextStyle::Button,
    );
    let pad = ui.spacing().button_padding;
    let dot = 12.0;
    let size = egui::vec2(dot + galley.size().x, galley.size().y) + 2.0 * pad;
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::click());
    response.widget_info(|| egui::WidgetInfo::selected(egui::Role::Button, true, selected, text));
    if ui.is_rect_visible(rect) {
        let visuals = ui.style().interact_selectable(&response, selected);
        if selected || response.hovered() {
            ui.painter()
                .rect_filled(rect, visuals.corner_radius, visuals.weak_bg_fill);
        }
        let painter = ui.painter();
        painter.circle_filled(
            rect.left_center() + egui::vec2(pad.x + 4.0, 0.0),
            4.0,
            colour,
        );
        painter.galley(
            rect.min + egui::vec2(pad.x + dot, pad.y),
            galley,
            visuals.text_color(),
        );
    }
    response
}

#[cfg(test)]
mod tests;
