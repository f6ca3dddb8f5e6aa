//! The Explore tab's layer gallery: "Dream gallery" dreams every channel of the shown layer
//! in the background (progress bar, Cancel), and the tiles appear in a grid as their batches
//! finish, cached by the worker so a layer is dreamed once. The grid can stand in for the
//! feature maps ("Feature maps | Dreams"), and an opened channel shows its dream beside its
//! map.

use std::collections::HashMap;

use eframe::egui::{self, vec2, Color32, ColorImage, Sense, TextureHandle, TextureOptions};
use eframe::egui::{Rect, WidgetInfo};

use super::ExploreSettings;
use crate::ui::command::Commands;
use crate::worker::{CancelToken, Command, Event, GallerySettings, JobId, RgbaImage};

const FULL_UV: Rect = Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));

/// One layer's dreams, as far as they got.
struct LayerGallery {
    tiles: HashMap<usize, TextureHandle>,
    total: usize,
}

/// A gallery on its way.
struct GalleryJob {
    job: JobId,
    cancel: CancelToken,
    layer: String,
    done: usize,
    total: usize,
    fraction: f32,
}

/// The galleries of the loaded model (by layer), the job that fills one, and which grid shows.
#[derive(Default)]
pub struct GalleryState {
    /// The model the galleries belong to; another model's clears them.
    model: Option<String>,
    layers: HashMap<String, LayerGallery>,
    job: Option<GalleryJob>,
    /// The grid shows the dreams instead of the feature maps.
    pub show_dreams: bool,
    /// The layer whose dreams the grid drew last (what a screenshot waits for).
    drawn: Option<String>,
    /// The last job's outcome ("32 channels, 24 from the cache, in 3.1 s") or its error.
    status: Option<String>,
}

impl GalleryState {
    /// Whether `job` is this gallery's running job.
    pub fn owns(&self, job: JobId) -> bool {
        self.job.as_ref().is_some_and(|j| j.job == job)
    }

    /// Whether a gallery is being dreamed.
    pub fn running(&self) -> bool {
        self.job.is_some()
    }

    /// Drops every gallery (and stops the one on its way) when another model than theirs is
    /// loaded; no model (one loading) changes nothing.
    pub fn set_model(&mut self, model: Option<&str>) {
        let Some(model) = model else { return };
        if self.model.is_none() {
            self.model = Some(model.to_string());
        } else if self.model.as_deref() != Some(model) {
            self.cancel();
            self.layers.clear();
            self.status = None;
            self.model = Some(model.to_string());
        }
    }

    /// Whether the grid has drawn `layer`'s dreams.
    pub fn drawn(&self, layer: &str) -> bool {
        self.show_dreams && self.drawn.as_deref() == Some(layer)
    }

    /// How many of `layer`'s dreams are here.
    pub fn tile_count(&self, layer: &str) -> usize {
        self.layers.get(layer).map_or(0, |g| g.tiles.len())
    }

    /// The dream of `channel` of `layer`, when it is here.
    pub fn tile(&self, layer: &str, channel: usize) -> Option<&TextureHandle> {
        self.layers.get(layer)?.tiles.get(&channel)
    }

    /// Starts dreaming `layer`'s gallery (instead of any other on its way).
    pub fn start(&mut self, layer: &str, settings: &ExploreSettings, commands: &mut Commands) {
        self.cancel();
        let cancel = CancelToken::new();
        let settings = GallerySettings {
            size: settings.gallery_size,
            steps: settings.gallery_steps,
            ..GallerySettings::default()
        };
        let job = commands.start_job(|job| Command::DreamGallery {
            job,
            cancel: cancel.clone(),
            layer: layer.to_string(),
            settings,
        });
        self.job = Some(GalleryJob {
            job,
            cancel,
            layer: layer.to_string(),
            done: 0,
            total: 0,
            fraction: 0.0,
        });
        self.status = None;
        self.show_dreams = true;
    }

    /// Stops the gallery on its way (what it finished stays cached and shown).
    pub fn cancel(&mut self) {
        if let Some(job) = self.job.take() {
            job.cancel.cancel();
            self.status = Some(format!(
                "Cancelled at {} of {} channels.",
                job.done, job.total
            ));
        }
    }

    /// Handles an event of the gallery's job.
    pub fn on_event(&mut self, ctx: &egui::Context, event: Event) {
        let Some(job) = &mut self.job else { return };
        match event {
            Event::GalleryProgress {
                done,
                total,
                fraction,
                tiles,
                ..
            } => {
                job.done = done;
                job.total = total;
                job.fraction = fraction;
                let gallery =
                    self.layers
                        .entry(job.layer.clone())
                        .or_insert_with(|| LayerGallery {
                            tiles: HashMap::new(),
                            total,
                        });
                gallery.total = total;
                for (channel, image) in tiles {
                    let texture = texture(ctx, &job.layer, channel, &image);
                    gallery.tiles.insert(channel, texture);
                }
            }
            Event::GalleryFinished {
                channels,
                cached,
                computed,
                seconds,
                ..
            } => {
                self.status = Some(format!(
                    "{channels} channels: {computed} dreamed, {cached} from the cache, in \
                     {seconds:.1} s."
                ));
                self.job = None;
            }
            Event::Cancelled { .. } => self.job = None,
            Event::Failed { error, .. } => {
                self.status = Some(format!("The gallery failed: {error}"));
                self.job = None;
            }
            other => tracing::debug!(job = %other.job(), "unexpected event for a gallery"),
        }
    }

    /// The "Dream gallery" button (or the progress and Cancel) and the grid toggle.
    pub fn controls(
        &mut self,
        ui: &mut egui::Ui,
        layer: &str,
        settings: &mut ExploreSettings,
        commands: &mut Commands,
    ) {
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.show_dreams, false, "Feature maps");
            ui.selectable_value(&mut self.show_dreams, true, "Dreams")
                .on_hover_text("One small dream per channel: what excites it most");
            ui.separator();
            match &self.job {
                Some(job) => {
                    let text = format!(
                        "Dreaming {}: {} of {} channels",
                        job.layer, job.done, job.total
                    );
                    ui.add(
                        egui::ProgressBar::new(job.fraction)
                            .desired_width(220.0)
                            .text(text),
                    );
                    if ui.button("Cancel").clicked() {
                        self.cancel();
                    }
                }
                None => {
                    let button = ui.button("Dream gallery").on_hover_text(
                        "Dream every channel of this layer, small and in the background \
                         (kept on disk, so only once)",
                    );
                    if button.clicked() {
                        self.start(layer, settings, commands);
                    }
                    ui.add(
                        egui::DragValue::new(&mut settings.gallery_size)
                            .range(32..=256)
                            .suffix(" px"),
                    )
                    .on_hover_text("Side of each dream");
                    ui.add(
                        egui::DragValue::new(&mut settings.gallery_steps)
                            .range(1..=512)
                            .suffix(" steps"),
                    )
                    .on_hover_text("Gradient steps per dream");
                }
            }
        });
        if let Some(status) = &self.status {
            ui.weak(status);
        }
    }

    /// `layer`'s dreams as a grid in channel order (`ordered`), placeholders where a dream is
    /// not there yet; returns a clicked channel.
    pub fn grid(
        &mut self,
        ui: &mut egui::Ui,
        layer: &str,
        ordered: &[usize],
        tile: f32,
    ) -> Option<usize> {
        if self.layers.contains_key(layer) {
            self.drawn = Some(layer.to_string());
        }
        let Some(gallery) = self.layers.get(layer) else {
            ui.weak("No dreams of this layer yet: press \"Dream gallery\".");
            return None;
        };
        let ordered: Vec<usize> = ordered
            .iter()
            .copied()
            .filter(|&c| c < gallery.total.max(gallery.tiles.len()))
            .collect();
        let spacing = super::maps::TILE_SPACING;
        let columns =
            (((ui.available_width() + spacing) / (tile + spacing)).floor() as usize).max(1);
        let rows = ordered.len().div_ceil(columns);
        let mut clicked = None;
        egui::ScrollArea::vertical()
            .id_salt("gallery-grid")
            .auto_shrink([false, false])
            .show_rows(ui, tile, rows, |ui, visible| {
                ui.spacing_mut().item_spacing = vec2(spacing, spacing);
                for row in visible {
                    ui.horizontal(|ui| {
                        let start = row * columns;
                        for &c in &ordered[start..(start + columns).min(ordered.len())] {
                            if dream_tile(ui, gallery.tiles.get(&c), c, tile) {
                                clicked = Some(c);
                            }
                        }
                    });
                }
            });
        clicked
    }
}

/// One dream tile (grey while it is not dreamed yet); true when clicked.
fn dream_tile(ui: &mut egui::Ui, texture: Option<&TextureHandle>, c: usize, tile: f32) -> bool {
    let (rect, response) = ui.allocate_exact_size(vec2(tile, tile), Sense::click());
    response.widget_info(|| {
        WidgetInfo::labeled(egui::Role::Button, true, format!("dream of channel {c}"))
    });
    if ui.is_rect_visible(rect) {
        let painter = ui.painter();
        match texture {
            Some(t) => {
                painter.image(t.id(), rect, FULL_UV, Color32::WHITE);
            }
            None => {
                painter.rect_filled(rect, 0.0, ui.visuals().faint_bg_color);
            }
        }
        super::maps::tile_marks(ui, rect, c, response.hovered());
    }
    let response = response.on_hover_text(format!("channel {c}: click to open it over the photo"));
    response.clicked()
}

/// Draws `texture` (a channel's dream) `side` points square, labelled for screen readers.
pub fn show_dream(ui: &mut egui::Ui, texture: &TextureHandle, channel: usize, side: f32) {
    let (rect, response) = ui.allocate_exact_size(vec2(side, side), Sense::hover());
    response.widget_info(|| {
        WidgetInfo::labeled(
            egui::Role::Image,
            true,
            format!("dream of channel {channel}"),
        )
    });
    ui.painter()
        .image(texture.id(), rect, FULL_UV, Color32::WHITE);
}

fn texture(ctx: &egui::Context, layer: &str, channel: usize, image: &RgbaImage) -> TextureHandle {
    ctx.load_texture(
        format!("dream-{layer}-{channel}"),
        ColorImage::from_rgba_unmultiplied([image.width, image.height], &image.rgba),
        TextureOptions::LINEAR,
    )
}
