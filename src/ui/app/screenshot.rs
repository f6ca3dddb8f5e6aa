//! `--screenshot`: once the photo is analysed and its layer drawn, wait a few frames for the
//! layout to settle, ask egui for a picture of the window, save it as a PNG and close the
//! window; give up (and say why) after a timeout or when no model can be loaded.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui::{self, ColorImage};

/// Asks the app to save a picture of its window once everything is drawn, then quit.
#[derive(Debug, Clone)]
pub struct ScreenshotRequest {
    pub path: PathBuf,
    /// Filled with the outcome before the window closes.
    pub outcome: Arc<Mutex<Option<Result<String, String>>>>,
    /// Give up (and fail) after this long.
    pub timeout: Duration,
}

/// What the window is doing, as the screenshot needs to know it each frame.
pub struct Readiness {
    /// A model or a photo is on its way.
    pub busy: bool,
    /// The analysis is shown (and on the Explore tab, its layer drawn).
    pub drawn: bool,
    /// No model is loaded, loading or downloading.
    pub no_model: bool,
    /// The message shown at the top of the window (the reason to give on failure).
    pub notice: Option<String>,
    /// The frame times while the model ran, for the report.
    pub frame_summary: Option<String>,
}

/// A screenshot in progress.
pub struct Screenshotter {
    request: ScreenshotRequest,
    started: Instant,
    ready_frames: u32,
    requested: bool,
    image: Arc<Mutex<Option<Arc<ColorImage>>>>,
    finished: bool,
}

impl Screenshotter {
    /// Starts waiting for the window to be ready.
    pub fn new(request: ScreenshotRequest) -> Self {
        Self {
            request,
            started: Instant::now(),
            ready_frames: 0,
            requested: false,
            image: Arc::default(),
            finished: false,
        }
    }

    /// Moves the screenshot on by one frame.
    pub fn step(&mut self, ctx: &egui::Context, ready: Readiness) {
        if self.finished {
            return;
        }
        let taken = self.image.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(image) = taken {
            let open = crate::ui::widgets::open_files(ctx);
            let outcome = save_png(&image, &self.request.path, &open).map(|()| {
                let mut text = format!(
                    "saved a {}x{} screenshot to {}",
                    image.size[0],
                    image.size[1],
                    self.request.path.display()
                );
                if let Some(s) = ready.frame_summary {
                    text.push_str(&format!("\nUI frame time: {s}"));
                }
                text
            });
            self.finish(ctx, outcome);
            return;
        }
        if self.started.elapsed() > self.request.timeout {
            let why = ready
                .notice
                .unwrap_or_else(|| "the photo was not analysed in time".into());
            self.finish(ctx, Err(format!("no screenshot: {why}")));
            return;
        }
        // Without a model, a failure (a load, a download) is an error; with nothing installed
        // and nothing failed, the first-run view is what there is to show.
        let welcome = ready.no_model && !ready.busy && ready.notice.is_none();
        if ready.no_model && !ready.busy && !welcome {
            let why = ready.notice.unwrap_or_default();
            self.finish(ctx, Err(format!("no screenshot: {why}")));
            return;
        }
        if !self.requested {
            if (ready.drawn || welcome) && !ready.busy {
                self.ready_frames += 1;
            }
            // A few frames after everything arrived, so layout and textures have settled.
            if self.ready_frames >= 5 {
                self.requested = true;
                let slot = self.image.clone();
                let repaint = ctx.clone();
                ctx.request_screenshot(move |image| {
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(image);
                    repaint.request_repaint();
                });
            }
        }
        ctx.request_repaint_after(Duration::from_millis(50));
    }

    fn finish(&mut self, ctx: &egui::Context, outcome: Result<String, String>) {
        *self
            .request
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        self.finished = true;
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }
}

/// Saves the screenshot, never over one of `open`, the files the window has open.
fn save_png(
    image: &ColorImage,
    path: &std::path::Path,
    open: &[std::path::PathBuf],
) -> Result<(), String> {
    let [w, h] = image.size;
    let rgba: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|c| c.to_srgba_unmultiplied())
        .collect();
    let buffer = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
        .ok_or_else(|| "the screenshot has the wrong number of pixels".to_string())?;
    let png = image::DynamicImage::ImageRgba8(buffer);
    crate::ui::widgets::save_guarded(path, open, |inputs| {
        crate::output::save_png(path, inputs, &png)
    })
}
