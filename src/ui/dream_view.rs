//! The Dream tab's pictures: one image, or a batch's members as a grid that fills the space
//! given, each with its probability underneath.

use eframe::egui::{self, TextureHandle, TextureOptions};

use super::widgets::texture;
use crate::worker::RgbaImage;

/// The latest images of a dream and their textures.
#[derive(Default)]
pub struct DreamImages {
    images: Vec<RgbaImage>,
    textures: Vec<TextureHandle>,
    probs: Vec<f32>,
}

impl DreamImages {
    /// The first image, if any.
    pub fn first(&self) -> Option<&RgbaImage> {
        self.images.first()
    }

    /// All images, one per member.
    pub fn all(&self) -> &[RgbaImage] {
        &self.images
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Each member's probability as last reported.
    pub fn probs(&self) -> &[f32] {
        &self.probs
    }

    /// Shows new images (one per member), reusing the textures.
    pub fn set_images(&mut self, ctx: &egui::Context, images: Vec<RgbaImage>) {
        self.textures.truncate(images.len());
        for (i, image) in images.iter().enumerate() {
            let colour =
                egui::ColorImage::from_rgba_unmultiplied([image.width, image.height], &image.rgba);
            match self.textures.get_mut(i) {
                Some(t) => t.set(colour, TextureOptions::LINEAR),
                None => self.textures.push(texture(
                    ctx,
                    &format!("dream-{i}"),
                    image,
                    TextureOptions::LINEAR,
                )),
            }
        }
        self.images = images;
    }

    /// The images as one picture (side by side in rows, 4 px of white between), for saving.
    pub fn sheet(&self) -> RgbaImage {
        let n = self.images.len();
        let Some(first) = self.images.first() else {
            return RgbaImage {
                width: 1,
                height: 1,
                rgba: vec![255; 4],
            };
        };
        if n == 1 {
            return first.clone();
        }
        let (w, h, gap) = (first.width, first.height, 4);
        let columns = (n as f64).sqrt().ceil() as usize;
        let rows = n.div_ceil(columns);
        let (sw, sh) = (
            columns * w + (columns - 1) * gap,
            rows * h + (rows - 1) * gap,
        );
        let mut rgba = vec![255u8; sw * sh * 4];
        for (i, img) in self.images.iter().enumerate() {
            let (x0, y0) = ((i % columns) * (w + gap), (i / columns) * (h + gap));
            for y in 0..h.min(img.height) {
                let row = &img.rgba[y * img.width * 4..][..w.min(img.width) * 4];
                let at = ((y0 + y) * sw + x0) * 4;
                rgba[at..at + row.len()].copy_from_slice(row);
            }
        }
        RgbaImage {
            width: sw,
            height: sh,
            rgba,
        }
    }

    pub fn set_probs(&mut self, probs: Vec<f32>) {
        self.probs = probs;
    }

    /// Draws the images in a grid of square cells as large as fit in `size` (at most 512 px
    /// each), each labelled with its probability when there are several.
    pub fn show(&self, ui: &mut egui::Ui, size: egui::Vec2, prob_label: &str) {
        let n = self.textures.len();
        if n == 0 {
            return;
        }
        let label_h = if n > 1 { 18.0 } else { 0.0 };
        let gap = 6.0;
        // The column count that gives the largest cells.
        let (columns, side) = (1..=n)
            .map(|c| {
                let rows = n.div_ceil(c);
                let w = (size.x - gap * (c - 1) as f32) / c as f32;
                let h = (size.y - (gap + label_h) * rows as f32) / rows as f32;
                (c, w.min(h))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((1, size.x));
        let side = side.clamp(64.0, 512.0);
        egui::Grid::new("dream-members")
            .spacing(egui::vec2(gap, gap))
            .show(ui, |ui| {
                for (i, t) in self.textures.iter().enumerate() {
                    ui.vertical(|ui| {
                        ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(side, side)))
                            .on_hover_text("The dream as the network gets it");
                        if n > 1 {
                            match self.probs.get(i) {
                                Some(p) => ui.label(format!("{prob_label} = {p:.3}")),
                                None => ui.label(""),
                            };
                        }
                    });
                    if (i + 1) % columns == 0 {
                        ui.end_row();
                    }
                }
            });
    }
}
