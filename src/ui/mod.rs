//! The desktop window (egui). Never imports Candle: it sees models only as plain data.
//!
//! For now a placeholder that says what the app will do and which models are installed; the
//! explorer window arrives with the GUI issue.

use crate::weights::ModelStatus;

/// Opens the placeholder window; returns when it is closed.
pub fn run_placeholder_window(models: Vec<ModelStatus>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title("cnn-explorer")
            .with_inner_size([720.0, 420.0]),
        ..Default::default()
    };
    eframe::run_ui_native("cnn-explorer", options, move |ui, _frame| {
        placeholder_ui(ui, &models);
    })
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

/// The placeholder's contents.
pub fn placeholder_ui(ui: &mut eframe::egui::Ui, models: &[ModelStatus]) {
    eframe::egui::CentralPanel::default().show(ui, |ui| {
        ui.heading("cnn-explorer");
        ui.label(
            "See inside a pretrained convolutional network, and use it for transfer learning.",
        );
        ui.add_space(8.0);
        ui.label(
            "The explorer window (drop a photo, see every layer) is on its way. Meanwhile the \
             command line does the work: `cnn-explorer predict PHOTO`, `cnn-explorer layers`, \
             `cnn-explorer features PHOTO --layer conv3_1`.",
        );
        ui.add_space(8.0);
        ui.strong("Models");
        for m in models {
            let state = if m.present {
                "installed".to_string()
            } else {
                format!("not installed: `cnn-explorer fetch {}`", m.name)
            };
            ui.label(format!(
                "{} ({}, {:.0} MB, {}): {state}",
                m.name,
                m.arch,
                m.size_bytes as f64 / 1e6,
                m.source
            ));
        }
    });
}
