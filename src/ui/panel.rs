//! What every tab of the window is: a [`Panel`] that owns its state, draws its columns and
//! its view, and handles the worker's events for the jobs it started. The app draws them all
//! with one layout ([`show`]); the [`Tab`] list drives the toolbar and the tests.

use std::path::Path;

use eframe::egui;

use super::command::Commands;
pub use super::tab::Tab;
use crate::worker::{Event, HeadSummary, JobId, ModelSummary, PhotoSource};

/// A resizable column on the left of a tab.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SideColumn {
    /// egui's id of the column (keeps its width between frames).
    pub id: &'static str,
    pub default_width: f32,
    pub min_width: f32,
    pub max_width: f32,
}

/// What the rest of the window tells a panel while it draws.
#[derive(Clone, Copy)]
pub struct PanelEnv<'a> {
    /// The photo shown in Explore (what Dream and Attack start from).
    pub photo: &'a PhotoSource,
    /// The loaded model, if any.
    pub model: Option<&'a ModelSummary>,
    /// The trained head the predictions panel uses, if any.
    pub head: Option<&'a HeadSummary>,
    /// Models whose weights are installed, in catalogue order.
    pub installed: &'a [String],
    /// Where trained heads are saved by default.
    pub heads_dir: &'a Path,
    /// The Train tab's folder once read (where Explore finds dataset examples).
    pub dataset: Option<&'a Path>,
}

/// One tab of the window.
pub trait Panel {
    /// The columns drawn on the left, in order (the view takes the rest).
    fn columns(&self) -> &'static [SideColumn];

    /// Draws column `index` of [`Self::columns`].
    fn column(&mut self, index: usize, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands);

    /// Draws the central view.
    fn view(&mut self, ui: &mut egui::Ui, env: &PanelEnv, commands: &mut Commands);

    /// Whether `job` is one this panel started and still follows.
    fn owns(&self, job: JobId) -> bool;

    /// Handles an event of a job it [owns](Self::owns).
    fn on_event(&mut self, ctx: &egui::Context, event: Event, commands: &mut Commands);
}

/// Draws `panel` (the `tab`'s): its columns on the left, its view in the centre under the
/// tab's "What am I seeing?".
pub fn show(
    ui: &mut egui::Ui,
    (tab, panel): (Tab, &mut dyn Panel),
    env: &PanelEnv,
    commands: &mut Commands,
) {
    for (index, column) in panel.columns().iter().enumerate() {
        egui::Panel::left(column.id)
            .resizable(true)
            .default_size(column.default_width)
            .size_range(column.min_width..=column.max_width)
            .show(ui, |ui| panel.column(index, ui, env, commands));
    }
    egui::CentralPanel::default().show(ui, |ui| {
        super::lesson::what_am_i_seeing(ui, tab);
        panel.view(ui, env, commands);
    });
}
