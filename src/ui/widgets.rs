//! Small pieces the panels share: RGBA images as textures, native dialogs on threads of
//! their own (they block while open), saving a PNG (never over a file the window has open),
//! and a busy indicator.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use eframe::egui::{self, ColorImage, TextureHandle, TextureOptions};

use crate::worker::RgbaImage;

/// A turning arc that asks for about 30 frames a second while shown (egui's spinner asks for
/// every frame, which without vsync takes a whole core from the models).
pub fn busy_indicator(ui: &mut egui::Ui) {
    let size = ui.spacing().interact_size.y;
    let (rect, response) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    response
        .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ProgressIndicator, true, "working"));
    let t = ui.input(|i| i.time) as f32;
    let radius = rect.height() * 0.35;
    let points: Vec<egui::Pos2> = (0..=24)
        .map(|i| {
            let angle = t * 6.0 + i as f32 / 24.0 * std::f32::consts::PI * 1.5;
            rect.center() + radius * egui::vec2(angle.cos(), angle.sin())
        })
        .collect();
    ui.painter().add(egui::Shape::line(
        points,
        egui::Stroke::new(2.0, ui.visuals().strong_text_color()),
    ));
    ui.ctx().request_repaint_after(Duration::from_millis(33));
}

/// A native "open" dialog (file or folder) running on its own thread.
pub struct PendingPick(mpsc::Receiver<Option<PathBuf>>);

impl PendingPick {
    /// Runs `pick` (an `rfd` dialog) on its own thread and wakes the window when it returns;
    /// an error if the thread cannot be started.
    pub fn start(
        ctx: &egui::Context,
        pick: impl FnOnce() -> Option<PathBuf> + Send + 'static,
    ) -> Result<Self, String> {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("file-dialog".into())
            .spawn(move || {
                let _ = tx.send(pick());
                ctx.request_repaint();
            })
            .map_err(|e| format!("cannot open the file dialog: {e}"))?;
        Ok(Self(rx))
    }

    /// The answer once the dialog is closed (`Ok(None)`: dismissed; an error if the dialog
    /// went away without one); `pending` is cleared then.
    pub fn poll_slot(pending: &mut Option<Self>) -> Option<Result<Option<PathBuf>, String>> {
        let answer = match pending.as_ref()?.0.try_recv() {
            Ok(picked) => Ok(picked),
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => {
                Err("the file dialog could not be shown on this desktop".to_string())
            }
        };
        *pending = None;
        Some(answer)
    }
}

/// Uploads `image` as a texture (a thumbnail if it is larger than the GPU allows).
pub fn texture(
    ctx: &egui::Context,
    name: &str,
    image: &RgbaImage,
    options: TextureOptions,
) -> TextureHandle {
    let max = ctx.input(|i| i.max_texture_side).max(64);
    let colour = if image.width <= max && image.height <= max {
        ColorImage::from_rgba_unmultiplied([image.width, image.height], &image.rgba)
    } else {
        // Borrowed, not copied: a 100-megapixel photo is 400 MB of RGBA.
        let full: image::ImageBuffer<image::Rgba<u8>, &[u8]> = match image::ImageBuffer::from_raw(
            image.width as u32,
            image.height as u32,
            &image.rgba[..],
        ) {
            Some(full) => full,
            None => return ctx.load_texture(name, ColorImage::example(), options),
        };
        let (w, h) = fit_within(image.width, image.height, max);
        let small = image::imageops::thumbnail(&full, w as u32, h as u32);
        ColorImage::from_rgba_unmultiplied(
            [small.width() as usize, small.height() as usize],
            small.as_raw(),
        )
    };
    ctx.load_texture(name, colour, options)
}

/// `width x height` scaled down to fit `max x max`, keeping its aspect ratio (at least 1x1).
fn fit_within(width: usize, height: usize, max: usize) -> (usize, usize) {
    let scale = (max as f64 / width.max(1) as f64).min(max as f64 / height.max(1) as f64);
    if scale >= 1.0 {
        return (width.max(1), height.max(1));
    }
    let side = |n: usize| ((n as f64 * scale).round() as usize).clamp(1, max);
    (side(width), side(height))
}

fn open_files_id() -> egui::Id {
    egui::Id::unique("cnn-explorer-open-files")
}

/// Records the files the window has open (the photo, the head and its description, the
/// model's weights): every save from the window ([`PendingSave`], the screenshot) refuses to
/// write over one of them, whichever panel asks.
pub fn set_open_files(ctx: &egui::Context, files: Vec<PathBuf>) {
    ctx.data_mut(|d| d.insert_temp(open_files_id(), Arc::new(files)));
}

/// The files recorded by [`set_open_files`].
pub fn open_files(ctx: &egui::Context) -> Arc<Vec<PathBuf>> {
    ctx.data(|d| d.get_temp(open_files_id()))
        .unwrap_or_default()
}

/// A PNG being saved: the dialog and the write run on their own thread.
pub struct PendingSave(mpsc::Receiver<Result<Option<PathBuf>, String>>);

impl PendingSave {
    /// Asks where to save `image` (suggesting `file_name`), then writes it, unless that is
    /// one of the files the window has open ([`set_open_files`]).
    pub fn start(ctx: &egui::Context, file_name: String, image: RgbaImage) -> Self {
        let (tx, rx) = mpsc::channel();
        let open = open_files(ctx);
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("save-png".into())
            .spawn(move || {
                let picked = rfd::FileDialog::new()
                    .set_title("Save PNG")
                    .set_file_name(file_name)
                    .add_filter("PNG", &["png"])
                    .save_file();
                let result = match picked {
                    None => Ok(None),
                    Some(path) => save_png(&image, &path, &open).map(|()| Some(path)),
                };
                let _ = tx.send(result);
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            let (tx, rx) = mpsc::channel();
            let _ = tx.send(Err(format!("cannot open the save dialog: {e}")));
            return Self(rx);
        }
        Self(rx)
    }

    /// Once the save is over, clears `pending` and puts what became of it in `status`
    /// ("Saved PATH" or the error; nothing when the dialog was dismissed).
    pub fn report(pending: &mut Option<Self>, status: &mut String) {
        let Some(outcome) = pending.as_ref().and_then(Self::poll) else {
            return;
        };
        *pending = None;
        match outcome {
            Ok(Some(path)) => *status = format!("Saved {}", path.display()),
            Ok(None) => {}
            Err(e) => *status = e,
        }
    }

    /// The outcome once known: `Ok(None)` when the dialog was dismissed.
    pub fn poll(&self) -> Option<Result<Option<PathBuf>, String>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                Some(Err("the save dialog closed unexpectedly".into()))
            }
        }
    }
}

/// Writes `image` as a PNG at `path` (through a temp file; folders and devices refused, and
/// so is any of `open`, the files the window has open).
pub fn save_png(image: &RgbaImage, path: &Path, open: &[PathBuf]) -> Result<(), String> {
    let buffer =
        image::RgbaImage::from_raw(image.width as u32, image.height as u32, image.rgba.clone())
            .ok_or_else(|| "the image has the wrong number of pixels".to_string())?;
    // RGB: the alpha channel is always opaque, and RGB PNGs load everywhere.
    let rgb = image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(buffer).to_rgb8());
    // Atomic: a full disk never leaves a truncated PNG where a good one was.
    save_guarded(path, open, |inputs| {
        crate::output::save_png(path, inputs, &rgb)
    })
}

/// Runs `save` with `open` as the job's inputs; an error as a sentence for the window.
pub fn save_guarded(
    path: &Path,
    open: &[PathBuf],
    save: impl FnOnce(&[&Path]) -> crate::Result<()>,
) -> Result<(), String> {
    let inputs: Vec<&Path> = open.iter().map(PathBuf::as_path).collect();
    save(&inputs).map_err(|e| match e {
        crate::Error::Output { reason, .. } if reason.starts_with("is an input") => format!(
            "Not saved: {} is a file open in the window; choose another name.",
            path.display()
        ),
        e => format!("Not saved: {e}"),
    })
}

/// `value` if finite, else `default`, then within `range`.
pub fn finite_within(value: f32, default: f32, range: std::ops::RangeInclusive<f32>) -> f32 {
    let v = if value.is_finite() { value } else { default };
    v.clamp(*range.start(), *range.end())
}

/// An x-axis formatter for a bar chart with one bar per integer position: bar `i`'s name at
/// `i`, nothing between bars.
pub fn bar_names(
    names: Vec<String>,
) -> impl Fn(egui_plot::GridMark, &std::ops::RangeInclusive<f64>) -> String {
    move |mark, _| {
        let i = mark.value.round();
        if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
            names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textures_too_large_for_the_gpu_keep_their_aspect_ratio() {
        assert_eq!(fit_within(20_000, 10_000, 8192), (8192, 4096));
        assert_eq!(fit_within(5_000_000, 20, 8192), (8192, 1));
        assert_eq!(fit_within(100, 50, 8192), (100, 50));
    }

    /// A Save PNG from the window never writes over the photo (or weights, or head) it has
    /// open, by any name; another path saves.
    #[test]
    fn saving_over_a_file_open_in_the_window_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("photo.png");
        std::fs::write(&photo, b"the user's photo").unwrap();
        let ctx = egui::Context::default();
        set_open_files(&ctx, vec![photo.clone()]);
        let open = open_files(&ctx);
        let image = RgbaImage {
            width: 2,
            height: 1,
            rgba: vec![255; 8],
        };
        let err = save_png(&image, &photo, &open).unwrap_err();
        assert!(
            err.contains("photo.png is a file open in the window"),
            "{err}"
        );
        let other_name = dir.path().join(".").join("photo.png");
        assert!(save_png(&image, &other_name, &open).is_err());
        assert_eq!(std::fs::read(&photo).unwrap(), b"the user's photo");
        let elsewhere = dir.path().join("dream.png");
        save_png(&image, &elsewhere, &open).unwrap();
        assert_eq!(image::open(&elsewhere).unwrap().width(), 2);
    }
}
