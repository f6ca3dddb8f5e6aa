//! Small pieces the panels share: sending a job to the worker, RGBA images as textures, and
//! saving a PNG through the native dialog without blocking the window.

use std::path::PathBuf;
use std::sync::mpsc;

use eframe::egui::{self, ColorImage, TextureHandle, TextureOptions};

use crate::worker::{Command, JobId, RgbaImage, Worker};

/// Hands out job ids and sends commands.
pub struct Jobs<'a> {
    pub worker: &'a Worker,
    pub next: &'a mut u64,
}

impl Jobs<'_> {
    /// Sends the command `make` builds for a fresh job id; returns the id.
    pub fn send(&mut self, make: impl FnOnce(JobId) -> Command) -> JobId {
        *self.next += 1;
        let job = JobId(*self.next);
        self.worker.send(make(job));
        job
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
        let full =
            image::RgbaImage::from_raw(image.width as u32, image.height as u32, image.rgba.clone())
                .unwrap_or_else(|| image::RgbaImage::new(1, 1));
        let small = image::imageops::thumbnail(
            &full,
            (max as u32).min(full.width()),
            (max as u32).min(full.height()),
        );
        ColorImage::from_rgba_unmultiplied(
            [small.width() as usize, small.height() as usize],
            small.as_raw(),
        )
    };
    ctx.load_texture(name, colour, options)
}

/// A PNG being saved: the dialog and the write run on their own thread.
pub struct PendingSave(mpsc::Receiver<Result<Option<PathBuf>, String>>);

impl PendingSave {
    /// Asks where to save `image` (suggesting `file_name`), then writes it.
    pub fn start(ctx: &egui::Context, file_name: String, image: RgbaImage) -> Self {
        let (tx, rx) = mpsc::channel();
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
                    Some(path) => save_png(&image, &path).map(|()| Some(path)),
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

/// Writes `image` as a PNG at `path`.
pub fn save_png(image: &RgbaImage, path: &std::path::Path) -> Result<(), String> {
    let buffer =
        image::RgbaImage::from_raw(image.width as u32, image.height as u32, image.rgba.clone())
            .ok_or_else(|| "the image has the wrong number of pixels".to_string())?;
    // RGB: the alpha channel is always opaque, and RGB PNGs load everywhere.
    image::DynamicImage::ImageRgba8(buffer)
        .to_rgb8()
        .save(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
