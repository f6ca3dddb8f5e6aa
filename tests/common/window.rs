//! The window in a test harness: started on given options, stepped until something holds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cnn_explorer::ui::settings::Settings;
use cnn_explorer::ui::{AppOptions, ExplorerApp};
use cnn_explorer::worker::WorkerConfig;
use egui_kittest::Harness;

/// The window, 1400x900, from default settings and `options`.
pub fn start(options: AppOptions) -> Harness<'static, ExplorerApp> {
    Harness::builder()
        .with_size([1400.0, 900.0])
        .build_eframe(|cc| {
            ExplorerApp::with_settings(&cc.egui_ctx, Settings::default(), options)
                .expect("the app starts")
        })
}

/// Options for the real EfficientNet-Lite0 (fetched when absent), no feature cache.
pub fn real_model_options() -> AppOptions {
    AppOptions {
        worker: WorkerConfig {
            weights_dir: real_weights_dir(),
            feature_cache: None,
            ..WorkerConfig::default()
        },
        model: Some("efficientnet-lite0".into()),
        ..AppOptions::default()
    }
}

/// The folder holding the real EfficientNet-Lite0 weights.
pub fn real_weights_dir() -> PathBuf {
    super::efficientnet_weights()
        .parent()
        .expect("the weights file has a folder")
        .to_path_buf()
}

/// Steps the window until `done` holds (the worker answers on its own thread), for at most
/// two minutes.
pub fn wait_for(
    h: &mut Harness<'static, ExplorerApp>,
    what: &str,
    done: impl Fn(&Harness<'static, ExplorerApp>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(h) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; notice: {:?}",
            h.state().notice()
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(2);
}
