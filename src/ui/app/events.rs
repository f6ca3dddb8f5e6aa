//! The worker's events: drained each frame within a time budget (the rest wait for the next
//! frame, which is asked for at once), each handed to whoever started its job.

use std::time::{Duration, Instant};

use eframe::egui;

use super::ExplorerApp;
use crate::ui::panel::Panel;
use crate::worker::Event;

/// How long the UI may spend on worker events in one frame.
const EVENT_BUDGET: Duration = Duration::from_millis(10);

impl ExplorerApp {
    /// Handles the events waiting, for at most [`EVENT_BUDGET`].
    pub(super) fn drain_events(&mut self, ctx: &egui::Context) {
        let started = Instant::now();
        while let Some(event) = self.worker.try_recv() {
            self.handle_event(ctx, event);
            if started.elapsed() > EVENT_BUDGET {
                ctx.request_repaint();
                break;
            }
        }
    }

    /// Hands `event` to the panel (or the model side) that owns its job, then applies what
    /// that asked for; events of jobs no longer followed are dropped.
    fn handle_event(&mut self, ctx: &egui::Context, event: Event) {
        let job = event.job();
        let mut commands = self.commands();
        // The Attack tab shows the photo Explore analysed (and its top class) before any attack.
        if let Event::Analysed { analysis, .. } = &event {
            if self.explore.owns(job) {
                self.attack.photo_analysed(ctx, analysis);
                self.dream.deepdream_mut().photo_analysed(analysis);
            }
        }
        let panels: [&mut dyn Panel; 4] = [
            &mut self.explore,
            &mut self.dream,
            &mut self.attack,
            &mut self.train,
        ];
        let owner = panels.into_iter().find(|p| p.owns(job));
        if let Some(panel) = owner {
            panel.on_event(ctx, event, &mut commands);
        } else if self.models.owns(job) {
            self.on_models_event(event, &mut commands);
        } else {
            tracing::debug!(%job, "event of a job no longer shown");
        }
        self.apply_all(ctx, commands.into_queue());
    }
}
