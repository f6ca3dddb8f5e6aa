//! Applying what the panels, the toolbar and the input handling asked for
//! ([`AppCommand`]s), after drawing, in the order they were asked.

use std::collections::VecDeque;
use std::path::Path;

use eframe::egui;

use super::ExplorerApp;
use crate::ui::command::{AppCommand, Commands, Notice, NoticeKind};
use crate::ui::panel::{PanelEnv, Tab};
use crate::worker::PhotoSource;

impl ExplorerApp {
    /// Applies `queue`, then whatever applying it asked for in turn.
    pub(super) fn apply_all(&mut self, ctx: &egui::Context, queue: Vec<AppCommand>) {
        let mut queue = VecDeque::from(queue);
        while let Some(command) = queue.pop_front() {
            let mut more = self.commands();
            self.apply(ctx, command, &mut more);
            queue.extend(more.into_queue());
        }
    }

    fn apply(&mut self, ctx: &egui::Context, command: AppCommand, commands: &mut Commands) {
        match command {
            AppCommand::Worker(command) => {
                if !self.worker.send(command) {
                    tracing::warn!("the model worker has stopped");
                }
            }
            AppCommand::OpenPhoto(photo) => self.open_photo(photo, commands),
            AppCommand::PhotoShown(photo) => self.photo = photo,
            AppCommand::TrainOnFolder(dir) => self.train_on_folder(&dir, commands),
            AppCommand::ShowTab(tab) => self.tab = tab,
            AppCommand::DreamChannel { layer, channel } => {
                self.dream.aim_at_channel(layer, channel);
                self.tab = Tab::Dream;
                self.dream.start(&self.photo, commands);
            }
            AppCommand::UseHead(head) => {
                tracing::info!(head = %head.name, backbone = %head.backbone, "head in use");
                self.head = Some(head);
                self.explore.show_head_predictions();
                // Classify the photo shown with the new head too (a photo still on its way is
                // analysed after the training, with the new head already).
                if self.explore.analysis().is_some() && self.explore.analysing().is_none() {
                    self.open_photo(self.photo.clone(), commands);
                }
            }
            AppCommand::OpenDialog => self.open_photo_dialog(ctx),
            AppCommand::Paste => ctx.send_viewport_cmd(egui::ViewportCommand::RequestPaste),
            AppCommand::UseModel(name) => self.models.use_model(name, commands),
            AppCommand::UseDevice(device) => self.models.use_device(device, commands),
            AppCommand::Download(model) => self.models.download(model, commands),
            AppCommand::CancelDownload => {
                if let Some(model) = self.models.cancel_download() {
                    self.notice = Some(Notice::new(
                        NoticeKind::Download,
                        format!("Download of {model} cancelled."),
                    ));
                }
            }
            AppCommand::ShowModels(show) => self.models.show_screen(show, &self.config.weights_dir),
            AppCommand::Notify(notice) => self.notice = Some(notice),
            AppCommand::DismissNotice => self.notice = None,
            AppCommand::ClearNotice(kind) => {
                if self.notice.as_ref().is_some_and(|n| n.kind == kind) {
                    self.notice = None;
                }
            }
        }
    }

    /// Opens `photo`: the model runs on it and, if it can be read, it replaces the photo shown.
    fn open_photo(&mut self, photo: PhotoSource, commands: &mut Commands) {
        self.explore.cancel_analysis();
        if self.models.loaded().is_none() && !self.models.is_loading() {
            // Nothing to run it on yet: show it as soon as a model is ready.
            self.notice = Some(Notice::new(
                NoticeKind::PhotoWaiting,
                format!("{} will be shown once a model is installed.", photo.name()),
            ));
            self.photo = photo;
            return;
        }
        self.explore.analyse(photo, commands);
    }

    /// Uses `dir` as the Train tab's folder and shows that tab.
    fn train_on_folder(&mut self, dir: &Path, commands: &mut Commands) {
        self.tab = Tab::Train;
        let installed = self.models.installed();
        let heads_dir = self.heads_dir();
        let env = PanelEnv {
            photo: &self.photo,
            model: self.models.loaded(),
            head: self.head.as_ref(),
            installed: &installed,
            heads_dir: &heads_dir,
            dataset: None,
        };
        self.train.set_folder(dir, &env, commands);
    }
}
