//! The desktop window (egui/eframe). Never imports Candle: it sees models only through the
//! worker's plain-data protocol (`crate::worker`).
//!
//! - [`app`]: the shell (toolbar, worker events, job ids, commands, screenshot);
//! - [`panel`]: what a tab is, and the one layout they share; [`command`]: how panels ask
//!   the app for things;
//! - the tabs: [`explore`], [`dream`] (with its [`deepdream`] section), [`attack`], [`train`]
//!   (with its backbone comparison);
//! - [`settings`]: what is saved between runs; [`setup`]: the models screen;
//! - shared pieces: [`widgets`], [`class_picker`], [`predictions`], [`frame_stats`].

pub mod app;
pub mod attack;
mod attack_inside;
pub mod class_picker;
pub mod command;
pub mod deepdream;
pub mod dream;
pub mod dream_view;
pub mod explore;
pub mod frame_stats;
pub mod lesson;
pub mod message;
pub mod panel;
pub mod predictions;
pub mod settings;
pub mod setup;
pub mod tab;
pub mod train;
pub mod widgets;

use std::sync::Arc;

pub use app::{AppOptions, ExplorerApp, ScreenshotRequest};

/// The window's size when it first opens (and the size of `--screenshot` pictures).
pub const DEFAULT_WINDOW_SIZE: [f32; 2] = [1400.0, 900.0];

/// Opens the window and returns when it is closed. With a screenshot request, returns what
/// became of it (an error if no screenshot was written).
pub fn run_app(options: AppOptions) -> anyhow::Result<()> {
    let mut viewport = eframe::egui::ViewportBuilder::default()
        .with_title("cnn-explorer")
        .with_app_id("cnn-explorer")
        .with_inner_size(DEFAULT_WINDOW_SIZE)
        .with_min_inner_size([800.0, 500.0])
        .with_drag_and_drop(true);
    match eframe::icon_data::from_png_bytes(include_bytes!("../../assets/icon.png")) {
        Ok(icon) => viewport = viewport.with_icon(Arc::new(icon)),
        Err(e) => tracing::warn!("the window icon cannot be decoded: {e}"),
    }
    let screenshot = options.screenshot.clone();
    let native = eframe::NativeOptions {
        viewport,
        // A screenshot run must not pick up (or change) the size saved by earlier runs.
        persist_window: screenshot.is_none(),
        // `app.ron` in `$CNN_EXPLORER_STATE_DIR`, else where eframe keeps it by default.
        persistence_path: Some(crate::places::Places::current().settings),
        ..Default::default()
    };
    eframe::run_native(
        "cnn-explorer",
        native,
        Box::new(move |cc| {
            let app = ExplorerApp::new(cc, options)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    if let Some(request) = screenshot {
        let outcome = request
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match outcome {
            Some(Ok(message)) => eprintln!("{message}"),
            Some(Err(message)) => anyhow::bail!(message),
            None => anyhow::bail!("the window closed before the screenshot was taken"),
        }
    }
    Ok(())
}
