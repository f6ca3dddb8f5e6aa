//! Dataset examples in Explore: under an opened channel (and its dream), the photos of a
//! folder that excite that channel most, each cropped around its strongest cell with the
//! cell's receptive field boxed; click one to open the photo. The worker finds them for the
//! whole layer in one pass (progress, Stop) and caches them, so every channel of the layer is
//! then instant. The folder is the Train tab's, or one chosen here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use eframe::egui::{self, vec2, Color32, ColorImage, Sense, Stroke, TextureHandle, TextureOptions};
use eframe::egui::{Rect, StrokeKind, WidgetInfo};

use crate::ui::command::{AppCommand, Commands};
use crate::ui::widgets::PendingPick;
use crate::worker::{
    CancelToken, ChannelExamples, Command, Event, ExampleSettings, JobId, PhotoSource,
};

/// Height the strip takes under an opened channel, in points.
pub const STRIP_HEIGHT: f32 = 132.0;

/// Side of a crop on screen, in points.
const TILE: f32 = 80.0;

/// A search on its way.
struct Search {
    job: JobId,
    cancel: CancelToken,
    layer: String,
    folder: PathBuf,
    done: usize,
    total: usize,
}

/// A layer's examples, with the crops uploaded as they are first drawn.
struct Found {
    examples: ChannelExamples,
    folder: PathBuf,
    textures: HashMap<(usize, usize), TextureHandle>,
}

/// The loaded model's dataset examples (by layer) and the search that finds them.
#[derive(Default)]
pub struct ExamplesState {
    /// The model they belong to; another model's clears them.
    model: Option<String>,
    layers: HashMap<String, Found>,
    search: Option<Search>,
    /// A folder chosen here (else the Train tab's is used).
    chosen: Option<PathBuf>,
    pick: Option<PendingPick>,
    /// The last search's error, with its layer.
    error: Option<(String, String)>,
}

impl ExamplesState {
    /// Whether `job` is the running search.
    pub fn owns(&self, job: JobId) -> bool {
        self.search.as_ref().is_some_and(|s| s.job == job)
    }

    /// Whether a search is running.
    pub fn running(&self) -> bool {
        self.search.is_some()
    }

    /// Whether `layer`'s examples are here.
    pub fn has(&self, layer: &str) -> bool {
        self.layers.contains_key(layer)
    }

    /// `layer`'s examples, if found.
    pub fn examples(&self, layer: &str) -> Option<&ChannelExamples> {
        self.layers.get(layer).map(|f| &f.examples)
    }

    /// Drops everything (and stops the search) when another model than theirs is loaded.
    pub fn set_model(&mut self, model: Option<&str>) {
        let Some(model) = model else { return };
        if self.model.as_deref() != Some(model) {
            if self.model.is_some() {
                self.stop();
                self.layers.clear();
                self.error = None;
            }
            self.model = Some(model.to_string());
        }
    }

    /// Stops the search, if any.
    pub fn stop(&mut self) {
        if let Some(s) = self.search.take() {
            s.cancel.cancel();
        }
    }

    /// Starts finding `layer`'s examples in `folder`.
    pub fn start(&mut self, layer: &str, folder: &Path, commands: &mut Commands) {
        self.stop();
        self.error = None;
        let cancel = CancelToken::new();
        let job = commands.start_job(|job| Command::ChannelExamples {
            job,
            cancel: cancel.clone(),
            folder: folder.to_path_buf(),
            layer: layer.to_string(),
            settings: ExampleSettings::default(),
        });
        self.search = Some(Search {
            job,
            cancel,
            layer: layer.to_string(),
            folder: folder.to_path_buf(),
            done: 0,
            total: 0,
        });
    }

    /// Takes the worker's answer to the running search.
    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::ExamplesProgress { done, total, .. } => {
                if let Some(s) = self.search.as_mut() {
                    (s.done, s.total) = (done, total);
                }
            }
            Event::ExamplesFinished { examples, .. } => {
                if let Some(s) = self.search.take() {
                    let found = Found {
                        examples: *examples,
                        folder: s.folder,
                        textures: HashMap::new(),
                    };
                    self.layers.insert(s.layer, found);
                }
            }
            Event::Cancelled { .. } => self.search = None,
            Event::Failed { error, .. } => {
                if let Some(s) = self.search.take() {
                    self.error = Some((s.layer, error));
                }
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for dataset examples"),
        }
    }

    /// The strip under channel `channel` of `layer`: its examples, the search on its way, or
    /// what starts one (in `dataset`, the Train tab's folder, or a folder chosen here).
    pub fn strip(
        &mut self,
        ui: &mut egui::Ui,
        layer: &str,
        channel: usize,
        dataset: Option<&Path>,
        commands: &mut Commands,
    ) {
        self.poll_pick(layer, commands);
        let folder = self
            .chosen
            .clone()
            .or_else(|| dataset.map(Path::to_path_buf));
        ui.horizontal(|ui| {
            ui.strong("Dataset examples");
            if let Some(s) = self.search.as_ref().filter(|s| s.layer == layer) {
                let fraction = if s.total == 0 {
                    0.0
                } else {
                    s.done as f32 / s.total as f32
                };
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .desired_width(220.0)
                        .text(format!("{} of {} photos", s.done, s.total)),
                );
                if ui.button("Stop").clicked() {
                    self.stop();
                }
                return;
            }
            let found_in = self.layers.get(layer).map(|f| f.folder.clone());
            if let Some(folder) = folder.as_ref().filter(|f| found_in.as_ref() != Some(*f)) {
                let label = format!("Find them in {}", short_name(folder));
                if ui
                    .button(label)
                    .on_hover_text(format!(
                        "Look through every photo of {} for what excites each channel of {layer} \
                         most (one pass, cached)",
                        folder.display()
                    ))
                    .clicked()
                {
                    self.start(layer, folder, commands);
                }
            }
            if ui
                .button("Choose folder…")
                .on_hover_text("A folder of class sub-folders, as the Train tab reads")
                .clicked()
            {
                self.pick_folder(ui.ctx());
            }
        });
        if let Some((l, error)) = &self.error {
            if l == layer {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
        }
        match self.layers.get_mut(layer) {
            Some(found) => found.row(ui, layer, channel, commands),
            None if folder.is_none() => {
                ui.weak(
                    "Pick a folder of photos (here, or in the Train tab) to see which of them \
                     excite this channel most, and which part of each.",
                );
            }
            None => {}
        }
    }

    fn pick_folder(&mut self, ctx: &egui::Context) {
        let start = self.chosen.clone();
        let pick = move || {
            let mut dialog = rfd::FileDialog::new().set_title("Folder of photos for examples");
            if let Some(dir) = start {
                dialog = dialog.set_directory(dir);
            }
            dialog.pick_folder()
        };
        match PendingPick::start(ctx, pick) {
            Ok(p) => self.pick = Some(p),
            Err(e) => self.error = Some((String::new(), e)),
        }
    }

    /// A folder just chosen starts a search for `layer`.
    fn poll_pick(&mut self, layer: &str, commands: &mut Commands) {
        match PendingPick::poll_slot(&mut self.pick) {
            Some(Ok(Some(dir))) => {
                self.chosen = Some(dir.clone());
                self.start(layer, &dir, commands);
            }
            Some(Err(e)) => self.error = Some((layer.to_string(), e)),
            Some(Ok(None)) | None => {}
        }
    }
}

impl Found {
    /// Channel `channel`'s crops in a row, strongest first.
    fn row(&mut self, ui: &mut egui::Ui, layer: &str, channel: usize, commands: &mut Commands) {
        let e = &self.examples;
        let Some(list) = e.channels.get(channel) else {
            ui.weak("No examples for this channel.");
            return;
        };
        let f = e.field;
        ui.weak(format!(
            "The {} photos of the folder \"{}\" that excite channel {channel} most, strongest \
             first; the box is what one cell of {layer} sees ({} px of the {} px view){}",
            list.len(),
            short_name(&self.folder),
            f.size.min(e.view_side as usize),
            e.view_side,
            if e.failed.is_empty() {
                String::new()
            } else {
                format!("; {} photos could not be read", e.failed.len())
            }
        ));
        let ctx = ui.ctx().clone();
        // As large as TILE, smaller where the row would not fit the pane.
        let gap = ui.spacing().item_spacing.x;
        let n = list.len().max(1) as f32;
        let tile = ((ui.available_width() - gap * (n - 1.0)) / n).clamp(32.0, TILE);
        ui.horizontal(|ui| {
            for (k, example) in list.iter().enumerate() {
                let texture = self.textures.entry((channel, k)).or_insert_with(|| {
                    let c = &example.crop;
                    let image =
                        ColorImage::from_rgb([c.width() as usize, c.height() as usize], c.as_raw());
                    ctx.load_texture(
                        format!("example-{layer}-{channel}-{k}"),
                        image,
                        TextureOptions::LINEAR,
                    )
                });
                let (rect, response) = ui.allocate_exact_size(vec2(tile, tile), Sense::click());
                let path = e.photos.get(example.photo).cloned().unwrap_or_default();
                let name = short_name(&path);
                response.widget_info(|| {
                    WidgetInfo::labeled(egui::Role::Button, true, format!("example {k}: {name}"))
                });
                let painter = ui.painter_at(rect);
                painter.image(
                    texture.id(),
                    rect,
                    Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                    Color32::WHITE,
                );
                let [x0, y0, x1, y1] = example.field_in_crop();
                let scale = tile / example.crop.width().max(1) as f32;
                let field = Rect::from_min_max(
                    rect.min + vec2(x0, y0) * scale,
                    rect.min + vec2(x1, y1) * scale,
                );
                // Only a field smaller than the crop needs its box.
                if field.width() < rect.width() - 1.0 || field.height() < rect.height() - 1.0 {
                    painter.rect_stroke(
                        field,
                        0.0,
                        Stroke::new(1.5, Color32::from_rgb(255, 200, 0)),
                        StrokeKind::Inside,
                    );
                }
                if response.hovered() {
                    painter.rect_stroke(
                        rect,
                        0.0,
                        Stroke::new(2.0, Color32::WHITE),
                        StrokeKind::Inside,
                    );
                }
                let response = response.on_hover_text(format!(
                    "{name}\nactivation {:.3} at cell (x {}, y {})\nClick to open the photo",
                    example.value, example.cell[1], example.cell[0]
                ));
                if response.clicked() {
                    commands.push(AppCommand::OpenPhoto(PhotoSource::File(path)));
                }
            }
        });
    }
}

/// A path's last part ("cats" of `/data/pets/cats`), or the whole path when it has none.
fn short_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
