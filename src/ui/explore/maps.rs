//! The Explore tab's feature maps: the list of layers, the selected layer's channels as a
//! grid (drawn from one atlas texture), and one channel large over the photo with its values
//! on hover (and its dream beside it, when the layer's [`super::gallery`] has one). Keys: ↑/↓ layers, ←/→ channels, Esc back to the grid.

use std::collections::HashMap;

use eframe::egui::{
    self, pos2, vec2, Color32, ColorImage, Rect, Sense, TextureHandle, TextureOptions, WidgetInfo,
};

use super::examples::{ExamplesState, STRIP_HEIGHT};
use super::gallery::{show_dream, GalleryState};
use super::{ChannelOrder, ExploreSettings};
use crate::ui::command::{AppCommand, Commands};
use crate::vision::atlas::colour;
use crate::worker::{Analysis, LayerMaps, TapKind};

const FULL_UV: Rect = Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0));

/// Space between the tiles of a grid, in points.
pub(super) const TILE_SPACING: f32 = 4.0;

/// The tile sides the grid may use, in points (the slider's range).
pub const TILE_RANGE: std::ops::RangeInclusive<f32> = 24.0..=256.0;

/// The largest tile side (whole points, within [`TILE_RANGE`]) at which `n` tiles fill a pane
/// of `size` points without scrolling; the smallest when even that scrolls.
pub fn fitting_tile(n: usize, size: egui::Vec2) -> f32 {
    let s = TILE_SPACING;
    let (lo, hi) = (*TILE_RANGE.start() as u32, *TILE_RANGE.end() as u32);
    (lo..=hi)
        .rev()
        .map(|t| t as f32)
        .find(|&t| {
            let columns = ((size.x + s) / (t + s)).floor().max(1.0);
            let rows = (n as f32 / columns).ceil();
            rows * (t + s) - s <= size.y
        })
        .unwrap_or(lo as f32)
}

/// Whether a channel is dead on this photo: the same value everywhere (a ReLU at zero), so
/// its tile says nothing.
pub fn is_dead(s: &crate::vision::atlas::ChannelStats) -> bool {
    s.max.partial_cmp(&s.min) != Some(std::cmp::Ordering::Greater)
}

/// Which layer and channel are shown, and the textures drawn from the current analysis.
#[derive(Default)]
pub struct MapsState {
    /// Index of the selected layer in the analysis.
    pub layer: usize,
    /// The channel opened large, if any.
    pub channel: Option<usize>,
    photo: Option<TextureHandle>,
    atlases: HashMap<usize, TextureHandle>,
    overlay: Option<((usize, usize), TextureHandle)>,
    scroll_to_layer: bool,
}

impl MapsState {
    /// Switches to a new analysis: uploads its photo, drops the old textures and keeps the
    /// layer (by name: `prefer` first, then the one shown before) and channel where possible.
    pub fn set_analysis(
        &mut self,
        ctx: &egui::Context,
        old: Option<&Analysis>,
        new: &Analysis,
        prefer: Option<&str>,
    ) {
        let old_name = old
            .and_then(|a| a.layers.get(self.layer))
            .map(|l| l.name.clone());
        let wanted = prefer.map(str::to_string).or(old_name);
        self.layer = wanted
            .and_then(|name| new.layers.iter().position(|l| l.name == name))
            .unwrap_or(0);
        let channels = new.layers.get(self.layer).map_or(0, |l| l.channels);
        self.channel = self
            .channel
            .filter(|&c| c < channels && !new.layers[self.layer].is_vector());
        self.atlases.clear();
        self.overlay = None;
        let view = &new.network_view;
        self.photo = Some(ctx.load_texture(
            "photo",
            ColorImage::from_rgba_unmultiplied([view.width, view.height], &view.rgba),
            TextureOptions::LINEAR,
        ));
        self.scroll_to_layer = true;
    }

    /// The texture of the photo as the network sees it.
    pub fn photo_texture(&self) -> Option<&TextureHandle> {
        self.photo.as_ref()
    }

    /// Whether the selected layer is drawn (its atlas, or the opened channel, uploaded).
    pub fn layer_drawn(&self) -> bool {
        self.atlases.contains_key(&self.layer)
            || self
                .overlay
                .as_ref()
                .is_some_and(|((layer, _), _)| *layer == self.layer)
    }

    fn atlas(&mut self, ctx: &egui::Context, index: usize, layer: &LayerMaps) -> TextureHandle {
        self.atlases
            .entry(index)
            .or_insert_with(|| {
                let a = &layer.atlas;
                ctx.load_texture(
                    format!("atlas-{}", layer.name),
                    ColorImage::from_rgba_unmultiplied([a.width, a.height], &a.rgba),
                    TextureOptions::NEAREST,
                )
            })
            .clone()
    }

    fn overlay(&mut self, ctx: &egui::Context, layer: &LayerMaps, channel: usize) -> TextureHandle {
        let key = (self.layer, channel);
        if let Some((k, tex)) = &self.overlay {
            if *k == key {
                return tex.clone();
            }
        }
        let s = layer.stats[channel];
        let plane = layer.height * layer.width;
        let values = &layer.values[channel * plane..(channel + 1) * plane];
        let rgba: Vec<u8> = values
            .iter()
            .flat_map(|&v| colour(v, s.min, s.max))
            .collect();
        let tex = ctx.load_texture(
            format!("channel-{}-{channel}", layer.name),
            ColorImage::from_rgba_unmultiplied([layer.width, layer.height], &rgba),
            TextureOptions::LINEAR,
        );
        self.overlay = Some((key, tex.clone()));
        tex
    }

    fn select_layer(&mut self, analysis: &Analysis, index: usize) {
        let Some(layer) = analysis.layers.get(index) else {
            return;
        };
        self.layer = index;
        self.channel = self
            .channel
            .filter(|&c| c < layer.channels && !layer.is_vector());
        self.scroll_to_layer = true;
    }
}

/// A tap's kind as the explorer names it.
fn kind_name(kind: TapKind) -> &'static str {
    match kind {
        TapKind::Stem => "stem",
        TapKind::Conv => "conv",
        TapKind::Pool => "pool",
        TapKind::Block => "block",
        TapKind::Head => "head",
        TapKind::Fc => "fc",
        TapKind::Logits => "logits",
    }
}

/// Channel indices in the chosen order.
pub fn channel_order(layer: &LayerMaps, order: ChannelOrder) -> Vec<usize> {
    let mut channels: Vec<usize> = (0..layer.channels).collect();
    if order == ChannelOrder::MeanActivation {
        channels.sort_by(|&a, &b| layer.stats[b].mean.total_cmp(&layer.stats[a].mean));
    }
    channels
}

/// ↑/↓ move between layers, ←/→ between channels (in the shown order), Esc closes a channel.
/// Ignored while a text field has the keyboard.
pub fn handle_keys(
    ctx: &egui::Context,
    state: &mut MapsState,
    analysis: &Analysis,
    order: ChannelOrder,
) {
    if ctx.egui_wants_keyboard_input() {
        return;
    }
    let (up, down, left, right, escape) = ctx.input(|i| {
        (
            i.key_pressed(egui::Key::ArrowUp),
            i.key_pressed(egui::Key::ArrowDown),
            i.key_pressed(egui::Key::ArrowLeft),
            i.key_pressed(egui::Key::ArrowRight),
            i.key_pressed(egui::Key::Escape),
        )
    });
    if up && state.layer > 0 {
        state.select_layer(analysis, state.layer - 1);
    }
    if down && state.layer + 1 < analysis.layers.len() {
        state.select_layer(analysis, state.layer + 1);
    }
    if escape {
        state.channel = None;
    }
    let Some(layer) = analysis.layers.get(state.layer) else {
        return;
    };
    if (left || right) && !layer.is_vector() && layer.channels > 0 {
        let ordered = channel_order(layer, order);
        let at = state
            .channel
            .and_then(|c| ordered.iter().position(|&o| o == c));
        let next = match (at, right) {
            (None, _) => 0,
            (Some(i), true) => (i + 1).min(ordered.len() - 1),
            (Some(i), false) => i.saturating_sub(1),
        };
        state.channel = Some(ordered[next]);
    }
}

/// The list of layers with their shapes.
pub fn layer_list(ui: &mut egui::Ui, state: &mut MapsState, analysis: &Analysis) {
    egui::ScrollArea::vertical()
        .id_salt("layers")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for (index, layer) in analysis.layers.iter().enumerate() {
                ui.horizontal(|ui| {
                    let selected = index == state.layer;
                    let response = ui.selectable_label(selected, &layer.name);
                    if response.clicked() {
                        state.select_layer(analysis, index);
                    }
                    if selected && state.scroll_to_layer {
                        response.scroll_to_me(None);
                        state.scroll_to_layer = false;
                    }
                    ui.weak(layer.shape_text());
                    if let Some(text) = sees(layer, analysis.network_view.width) {
                        ui.weak(text).on_hover_text(
                            "How much of the photo one cell of this layer sees (its receptive \
                             field, from the layers' kernels and strides)",
                        );
                    }
                });
            }
        });
}

/// "sees N px" for a spatial layer whose receptive field is known (of a `side`-pixel view).
fn sees(layer: &LayerMaps, side: usize) -> Option<String> {
    let f = layer.receptive_field.filter(|_| !layer.is_vector())?;
    Some(if f.size >= side {
        format!("sees {} px (all of it)", f.size)
    } else {
        format!("sees {} px", f.size)
    })
}

/// The selected layer: its channel grid (or its dreams), or one channel large over the photo
/// (beside its dream, when the gallery has it).
pub fn show(
    ui: &mut egui::Ui,
    state: &mut MapsState,
    (gallery, examples): (&mut GalleryState, &mut ExamplesState),
    analysis: &Analysis,
    settings: &mut ExploreSettings,
    (dataset, commands): (Option<&std::path::Path>, &mut Commands),
) {
    let Some(layer) = analysis.layers.get(state.layer) else {
        ui.weak("This model reported no layers.");
        return;
    };
    let ctx = ui.ctx().clone();
    ui.horizontal(|ui| {
        ui.heading(&layer.name);
        let what = if layer.is_vector() {
            format!("{}: {} units", kind_name(layer.kind), layer.channels)
        } else {
            format!(
                "{}: {} channels of {}×{}",
                kind_name(layer.kind),
                layer.channels,
                layer.height,
                layer.width
            )
        };
        ui.label(what);
    });
    if layer.is_vector() {
        let atlas = state.atlas(&ctx, state.layer, layer);
        vector_view(ui, layer, &atlas);
        return;
    }
    match state.channel {
        Some(channel) if channel < layer.channels => {
            let photo = state.photo.clone();
            let overlay = state.overlay(&ctx, layer, channel);
            let ordered = channel_order(layer, settings.channel_order);
            let dream = gallery.tile(&layer.name, channel).cloned();
            channel_view(
                ui,
                state,
                layer,
                channel,
                &ordered,
                (photo.as_ref(), &overlay, dream.as_ref()),
                settings,
                commands,
            );
            ui.separator();
            examples.strip(ui, &layer.name, channel, dataset, commands);
        }
        _ => {
            gallery.controls(ui, &layer.name, settings, commands);
            ui.horizontal(|ui| {
                let order_label = ui.label("Order");
                egui::ComboBox::from_id_salt("channel-order")
                    .selected_text(settings.channel_order.label())
                    .show_ui(ui, |ui| {
                        for order in ChannelOrder::ALL {
                            ui.selectable_value(&mut settings.channel_order, order, order.label());
                        }
                    })
                    .response
                    .labelled_by(order_label.id);
                let slider = ui
                    .add(egui::Slider::new(&mut settings.tile_size, TILE_RANGE).text("Tile size"))
                    .on_hover_text("Drag to choose the size yourself (it is remembered)");
                if slider.changed() {
                    settings.fit_tiles = false;
                }
                ui.checkbox(&mut settings.fit_tiles, "Fit to pane")
                    .on_hover_text("Tiles as large as the pane allows for this layer's channels");
                let dead = layer.stats.iter().filter(|s| is_dead(s)).count();
                if dead > 0 {
                    ui.weak(format!(
                        "{dead} of {} channels dead on this photo",
                        layer.channels
                    ))
                    .on_hover_text(
                        "A dead channel has the same value everywhere on this photo \
                             (usually 0 after a ReLU): its tile is crossed out.",
                    );
                }
            });
            let ordered = channel_order(layer, settings.channel_order);
            let clicked = if gallery.show_dreams {
                ui.weak("What excites each channel most, dreamed from noise. Click one to open its map.");
                let tile = grid_tile(ui, ordered.len(), settings);
                gallery.grid(ui, &layer.name, &ordered, tile)
            } else {
                ui.weak("Each channel is scaled to its own range (viridis: dark = low, yellow = high). Click one to open it.");
                let atlas = state.atlas(&ctx, state.layer, layer);
                let tile = grid_tile(ui, ordered.len(), settings);
                channel_grid(ui, layer, &atlas, &ordered, tile)
            };
            if let Some(clicked) = clicked {
                state.channel = Some(clicked);
            }
        }
    }
}

/// The tile side for `n` channels in the space left: the fitting one (shown on the slider)
/// unless the user chose a size.
fn grid_tile(ui: &egui::Ui, n: usize, settings: &mut ExploreSettings) -> f32 {
    if settings.fit_tiles {
        settings.tile_size = fitting_tile(n, ui.available_size());
    }
    settings.tile_size
}

/// The channels as tiles of the atlas, only the visible rows drawn; returns a clicked channel.
pub fn channel_grid(
    ui: &mut egui::Ui,
    layer: &LayerMaps,
    atlas: &TextureHandle,
    ordered: &[usize],
    tile: f32,
) -> Option<usize> {
    let spacing = TILE_SPACING;
    let columns = (((ui.available_width() + spacing) / (tile + spacing)).floor() as usize).max(1);
    let rows = ordered.len().div_ceil(columns);
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("channel-grid")
        .auto_shrink([false, false])
        .show_rows(ui, tile, rows, |ui, visible| {
            ui.spacing_mut().item_spacing = vec2(spacing, spacing);
            for row in visible {
                ui.horizontal(|ui| {
                    let start = row * columns;
                    for &c in &ordered[start..(start + columns).min(ordered.len())] {
                        if channel_tile(ui, layer, atlas, c, tile) {
                            clicked = Some(c);
                        }
                    }
                });
            }
        });
    clicked
}

/// A tile's channel number (when the tile is large enough to read it) and its hover outline;
/// the feature-map and the dream grids mark their tiles alike.
pub(super) fn tile_marks(ui: &egui::Ui, rect: Rect, channel: usize, hovered: bool) {
    let painter = ui.painter();
    if rect.width() >= 40.0 {
        painter.text(
            rect.left_top() + vec2(3.0, 2.0),
            egui::Align2::LEFT_TOP,
            channel.to_string(),
            egui::FontId::monospace(10.0),
            Color32::from_white_alpha(200),
        );
    }
    if hovered {
        painter.rect_stroke(
            rect,
            0.0,
            ui.visuals().selection.stroke,
            egui::StrokeKind::Outside,
        );
    }
}

/// One tile; true when clicked.
fn channel_tile(
    ui: &mut egui::Ui,
    layer: &LayerMaps,
    atlas: &TextureHandle,
    c: usize,
    tile: f32,
) -> bool {
    let (rect, response) = ui.allocate_exact_size(vec2(tile, tile), Sense::click());
    response.widget_info(|| WidgetInfo::labeled(egui::Role::Button, true, format!("channel {c}")));
    if ui.is_rect_visible(rect) {
        let [u0, v0, u1, v1] = layer.atlas.uv_rect(c);
        let painter = ui.painter();
        painter.image(
            atlas.id(),
            rect,
            Rect::from_min_max(pos2(u0, v0), pos2(u1, v1)),
            Color32::WHITE,
        );
        tile_marks(ui, rect, c, response.hovered());
    }
    let s = layer.stats[c];
    let dead = is_dead(&s);
    if dead && ui.is_rect_visible(rect) {
        // Crossed out in grey: nothing to see, and not to be mistaken for a dark map.
        let stroke = egui::Stroke::new(1.5, Color32::from_gray(150));
        let painter = ui.painter();
        painter.rect_filled(rect, 0.0, Color32::from_black_alpha(140));
        painter.line_segment([rect.left_top(), rect.right_bottom()], stroke);
        painter.line_segment([rect.right_top(), rect.left_bottom()], stroke);
    }
    let response = response.on_hover_ui(|ui| {
        if dead {
            ui.label(format!(
                "channel {c}: dead on this photo (everywhere {:.3})",
                s.mean
            ));
            return;
        }
        ui.label(format!(
            "channel {c}: mean {:.3}, min {:.3}, max {:.3}",
            s.mean, s.min, s.max
        ));
        if let Some(text) = hovered_value(ui, rect, layer, c) {
            ui.label(text);
        }
    });
    response.clicked()
}

/// "(x 3, y 5): 0.532" for the pointer over `rect` showing channel `c`.
fn hovered_value(ui: &egui::Ui, rect: Rect, layer: &LayerMaps, c: usize) -> Option<String> {
    let (x, y) = hovered_cell(ui, rect, layer)?;
    let value = layer.value(c, y, x)?;
    Some(format!("activation at (x {x}, y {y}): {value:.4}"))
}

/// The cell `(x, y)` of `layer` under the pointer, the layer drawn over `rect`.
fn hovered_cell(ui: &egui::Ui, rect: Rect, layer: &LayerMaps) -> Option<(usize, usize)> {
    let pos = ui.ctx().pointer_hover_pos().filter(|p| rect.contains(*p))?;
    let u = ((pos.x - rect.left()) / rect.width()).clamp(0.0, 0.999_999);
    let v = ((pos.y - rect.top()) / rect.height()).clamp(0.0, 0.999_999);
    Some((
        (u * layer.width as f32) as usize,
        (v * layer.height as f32) as usize,
    ))
}

/// The receptive field of the hovered cell, drawn on the photo (the `side`-pixel network view
/// shown over `rect`): its window clipped to the view, and the cell itself. Returns what it
/// covers, for the hover line.
fn draw_receptive_field(
    ui: &egui::Ui,
    rect: Rect,
    layer: &LayerMaps,
    side: usize,
) -> Option<String> {
    let f = layer.receptive_field?;
    let (x, y) = hovered_cell(ui, rect, layer)?;
    let ((x0, x1), (y0, y1)) = (f.span(x, side), f.span(y, side));
    if x0 >= x1 || y0 >= y1 {
        return None;
    }
    let scale = rect.width() / side.max(1) as f32;
    let at = |px: usize, py: usize| rect.left_top() + vec2(px as f32, py as f32) * scale;
    let field = Rect::from_min_max(at(x0, y0), at(x1, y1));
    let painter = ui.painter_at(rect);
    let stroke = egui::Stroke::new(2.0, Color32::from_rgb(255, 200, 0));
    painter.rect_stroke(field, 0.0, stroke, egui::StrokeKind::Inside);
    let cw = rect.width() / layer.width.max(1) as f32;
    let ch = rect.height() / layer.height.max(1) as f32;
    let cell = Rect::from_min_size(
        rect.left_top() + vec2(x as f32 * cw, y as f32 * ch),
        vec2(cw, ch),
    );
    painter.rect_stroke(
        cell,
        0.0,
        egui::Stroke::new(1.0, Color32::WHITE),
        egui::StrokeKind::Inside,
    );
    let whole = if f.global {
        " (and, through squeeze-excite, a little of the whole image)"
    } else {
        ""
    };
    Some(format!(
        "this cell sees x {x0}-{x1}, y {y0}-{y1} of the {side}-px view (boxed){whole}"
    ))
}

#[allow(clippy::too_many_arguments)]
fn channel_view(
    ui: &mut egui::Ui,
    state: &mut MapsState,
    layer: &LayerMaps,
    channel: usize,
    ordered: &[usize],
    (photo, overlay, dream): (
        Option<&TextureHandle>,
        &TextureHandle,
        Option<&TextureHandle>,
    ),
    settings: &mut ExploreSettings,
    commands: &mut Commands,
) {
    let at = ordered.iter().position(|&c| c == channel).unwrap_or(0);
    ui.horizontal(|ui| {
        if ui.button("Back to all channels").clicked() {
            state.channel = None;
        }
        if ui
            .add_enabled(at > 0, egui::Button::new("Previous"))
            .clicked()
        {
            state.channel = Some(ordered[at - 1]);
        }
        if ui
            .add_enabled(at + 1 < ordered.len(), egui::Button::new("Next"))
            .clicked()
        {
            state.channel = Some(ordered[at + 1]);
        }
        ui.add(egui::Slider::new(&mut settings.overlay_opacity, 0.0..=1.0).text("Overlay opacity"));
        if ui
            .button("Dream this channel")
            .on_hover_text("Make an image that excites this channel most")
            .clicked()
        {
            commands.push(AppCommand::DreamChannel {
                layer: layer.name.clone(),
                channel,
            });
        }
    });
    let s = layer.stats[channel];
    ui.label(format!(
        "Channel {channel} of {}: mean {:.3}, min {:.3}, max {:.3}",
        layer.channels, s.mean, s.min, s.max
    ));
    let avail = ui.available_size();
    // With its dream beside it, the map takes half the width.
    let width = match dream {
        Some(_) => (avail.x - ui.spacing().item_spacing.x) / 2.0,
        None => avail.x,
    };
    // Room below for the colour bar, the hover line and the dataset examples.
    let side = width.min(avail.y - 64.0 - STRIP_HEIGHT).max(64.0);
    let rect = ui
        .horizontal(|ui| {
            let (rect, response) = ui.allocate_exact_size(vec2(side, side), Sense::hover());
            response.widget_info(|| {
                WidgetInfo::labeled(
                    egui::Role::Image,
                    true,
                    format!("channel {channel} over the photo"),
                )
            });
            if let Some(dream) = dream {
                show_dream(ui, dream, channel, side);
            }
            rect
        })
        .inner;
    let painter = ui.painter_at(rect);
    if let Some(photo) = photo {
        painter.image(photo.id(), rect, FULL_UV, Color32::WHITE);
    }
    painter.image(
        overlay.id(),
        rect,
        FULL_UV,
        Color32::WHITE.gamma_multiply(settings.overlay_opacity),
    );
    let field = photo.and_then(|p| draw_receptive_field(ui, rect, layer, p.size()[0]));
    colour_bar(ui, s.min, s.max, side);
    let text = match (hovered_value(ui, rect, layer, channel), field) {
        (Some(value), Some(field)) => format!("{value}; {field}"),
        (Some(value), None) => value,
        _ => "Hover over the map to read its activations and see what a cell sees.".into(),
    };
    ui.label(text);
}

/// A viridis strip from `lo` to `hi`.
fn colour_bar(ui: &mut egui::Ui, lo: f32, hi: f32, width: f32) {
    ui.horizontal(|ui| {
        ui.label(format!("{lo:.2}"));
        let (rect, _) =
            ui.allocate_exact_size(vec2((width - 120.0).max(40.0), 10.0), Sense::hover());
        let steps = 64;
        for i in 0..steps {
            let t = i as f32 / (steps - 1) as f32;
            let [r, g, b, _] = colour(t, 0.0, 1.0);
            let x0 = rect.left() + rect.width() * i as f32 / steps as f32;
            let x1 = rect.left() + rect.width() * (i + 1) as f32 / steps as f32;
            ui.painter().rect_filled(
                Rect::from_min_max(pos2(x0, rect.top()), pos2(x1, rect.bottom())),
                0.0,
                Color32::from_rgb(r, g, b),
            );
        }
        ui.label(format!("{hi:.2}"));
    });
}

/// A fully connected layer or the logits: one cell per unit, normalised together.
fn vector_view(ui: &mut egui::Ui, layer: &LayerMaps, atlas: &TextureHandle) {
    ui.weak("One cell per unit, all units on one scale (viridis: dark = low, yellow = high).");
    let mut strongest: Vec<usize> = (0..layer.channels).collect();
    strongest.sort_by(|&a, &b| layer.values[b].total_cmp(&layer.values[a]));
    let is_logits = layer.kind == TapKind::Logits;
    let name = |unit: usize| {
        if is_logits {
            format!("unit {unit} ({})", crate::labels::imagenet_label(unit))
        } else {
            format!("unit {unit}")
        }
    };
    ui.horizontal_wrapped(|ui| {
        ui.label("Strongest:");
        for &u in strongest.iter().take(5) {
            ui.label(format!("{}: {:.2};", name(u), layer.values[u]));
        }
    });
    let a = &layer.atlas;
    let avail = ui.available_size();
    let cell =
        ((avail.x / a.columns as f32).min((avail.y - 30.0) / a.rows as f32)).clamp(1.0, 48.0);
    let (rect, response) = ui.allocate_exact_size(
        vec2(cell * a.columns as f32, cell * a.rows as f32),
        Sense::hover(),
    );
    response.widget_info(|| {
        WidgetInfo::labeled(egui::Role::Image, true, format!("{} units", layer.name))
    });
    ui.painter()
        .image(atlas.id(), rect, FULL_UV, Color32::WHITE);
    let hovered = ui
        .ctx()
        .pointer_hover_pos()
        .filter(|p| rect.contains(*p))
        .and_then(|p| {
            let col = ((p.x - rect.left()) / cell) as usize;
            let row = ((p.y - rect.top()) / cell) as usize;
            let unit = row * a.columns + col.min(a.columns - 1);
            (unit < layer.channels).then(|| format!("{}: {:.4}", name(unit), layer.values[unit]))
        });
    ui.label(hovered.unwrap_or_else(|| "Hover over a cell to read its unit.".into()));
}

#[cfg(test)]
mod tests;
