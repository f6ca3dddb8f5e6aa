//! The one way a panel asks the app for something: it pushes an [`AppCommand`] on the frame's
//! [`Commands`] queue while it draws (or handles an event), and the app applies the queue
//! once everything is drawn. Job ids come from the same place, [`JobIds`], so every job in
//! the window is numbered one way.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use super::tab::Tab;
use crate::device::DeviceChoice;
use crate::worker::{Command, HeadSummary, JobId, PhotoSource};

/// What a panel (or the toolbar, the models screen, the input handling) asks of the app;
/// applied after drawing, in the order pushed.
#[must_use = "a command does nothing until it is pushed on the queue and applied"]
#[derive(Debug, Clone)]
pub enum AppCommand {
    /// Send this to the model worker (its job id came from [`Commands::start_job`]).
    Worker(Command),
    /// Run the model on a photo; if it can be read, it replaces the photo shown.
    OpenPhoto(PhotoSource),
    /// The photo just analysed is the one shown now (what Dream and Attack start from).
    PhotoShown(PhotoSource),
    /// Use this folder as the Train tab's training set, and show that tab.
    TrainOnFolder(PathBuf),
    /// Show a tab.
    ShowTab(Tab),
    /// Show the Dream tab and dream one channel of one layer.
    DreamChannel { layer: String, channel: usize },
    /// A trained (or loaded) head is ready: use it in the predictions panel.
    UseHead(HeadSummary),
    /// Open the native "Open a photo" dialog.
    OpenDialog,
    /// Ask the platform for the clipboard's contents (they arrive as paste events).
    Paste,
    /// Load a model of the catalogue (or, if it is not installed, show the models screen).
    UseModel(String),
    /// Reload the chosen model on another device.
    UseDevice(DeviceChoice),
    /// Download a model's weights.
    Download(String),
    /// Stop the download in progress.
    CancelDownload,
    /// Show or hide the models screen.
    ShowModels(bool),
    /// Show a message at the top of the window (replacing the one shown).
    Notify(Notice),
    /// Take the message at the top of the window away, whatever it is.
    DismissNotice,
    /// Take the message at the top of the window away if it is of this kind.
    ClearNotice(NoticeKind),
}

/// What a message at the top of the window is about; a later event clears the notices of
/// its own kind (a photo that opens clears "could not open the photo").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// A photo could not be opened or analysed.
    PhotoFailed,
    /// A photo waits for a model to be installed.
    PhotoWaiting,
    /// A model could not be loaded.
    ModelFailed,
    /// A download failed, was cancelled or finished.
    Download,
    /// Dropped files, the clipboard or a dialog.
    Input,
}

/// A message at the top of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub text: String,
}

impl Notice {
    pub fn new(kind: NoticeKind, text: impl Into<String>) -> Self {
        Self {
            kind,
            text: text.into(),
        }
    }
}

/// Hands out job ids: the only place the window makes them. The app makes one; its clones
/// (one per [`Commands`] queue) count on the same counter.
#[derive(Debug, Clone, Default)]
pub struct JobIds(Rc<Cell<u64>>);

impl JobIds {
    /// A job id never handed out before.
    pub fn mint(&self) -> JobId {
        let next = self.0.get() + 1;
        self.0.set(next);
        JobId(next)
    }
}

/// A queue of [`AppCommand`]s, with the job ids to number worker jobs.
pub struct Commands {
    ids: JobIds,
    queue: Vec<AppCommand>,
}

impl Commands {
    /// An empty queue numbering jobs from `ids`.
    pub fn new(ids: JobIds) -> Self {
        Self {
            ids,
            queue: Vec::new(),
        }
    }

    /// Asks the app for `command` once drawing is done.
    pub fn push(&mut self, command: AppCommand) {
        self.queue.push(command);
    }

    /// Queues the worker command `make` builds for a fresh job id; returns the id.
    pub fn start_job(&mut self, make: impl FnOnce(JobId) -> Command) -> JobId {
        let job = self.ids.mint();
        self.queue.push(AppCommand::Worker(make(job)));
        job
    }

    /// A fresh job id for a job the caller sends itself.
    pub fn mint(&mut self) -> JobId {
        self.ids.mint()
    }

    /// The commands pushed, in order.
    pub fn into_queue(self) -> Vec<AppCommand> {
        self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_fresh_and_worker_jobs_are_queued_in_order() {
        let ids = JobIds::default();
        let first = ids.mint();
        let mut commands = Commands::new(ids.clone());
        let second = commands.start_job(|job| Command::LoadHead {
            job,
            path: "a.safetensors".into(),
        });
        commands.push(AppCommand::ShowTab(Tab::Train));
        assert!(second > first);
        let queue = commands.into_queue();
        assert!(matches!(
            &queue[0],
            AppCommand::Worker(Command::LoadHead { job, .. }) if *job == second
        ));
        assert!(matches!(queue[1], AppCommand::ShowTab(Tab::Train)));
        assert!(ids.mint() > second);
    }
}
