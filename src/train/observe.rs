//! What a training run tells whoever started it, and how they stop it: [`TrainEvent`]s go out
//! to a [`TrainObserver`], which is also asked at every batch and optimiser step whether the
//! run is cancelled (burn's `LearnerEvent`s and `Interrupter`, as one value instead of a
//! callback pair threaded through every signature).
//!
//! The command line prints the events, the worker turns them into protocol events for the
//! window; each throttles what it shows with [`crate::progress::Throttle`], so the run itself
//! reports everything.

use serde::{Deserialize, Serialize};

use super::dataset::Dataset;

/// How far extraction is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    /// Read from the cache (counted in `done`).
    pub cached: usize,
    /// Photos computed per second so far.
    pub images_per_s: f32,
    /// Seconds left at that rate.
    pub eta_s: f32,
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f32,
    pub train_acc: f32,
    pub val_loss: f32,
    pub val_acc: f32,
}

/// What a training run reports as it goes, in this order: `Scanned` once, `Features` from the
/// first batch to the last, then `Step`s with an `Epoch` after each epoch's steps.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// The folder was read: classes and counts, before any computing.
    Scanned(&'a Dataset),
    /// Feature extraction so far (the first report before any batch, one after each).
    Features(Progress),
    /// One optimiser step (numbered from 1 over the whole run) and its mini-batch loss.
    Step { step: usize, loss: f32 },
    /// An epoch's training and validation numbers.
    Epoch(&'a EpochMetrics),
}

/// Receives a training run's events and says whether to stop.
pub trait TrainObserver {
    /// One event, as it happens (the default ignores it).
    fn on_event(&mut self, event: TrainEvent<'_>) {
        let _ = event;
    }

    /// Polled between feature batches and before every optimiser step: `true` ends the run
    /// with [`crate::Error::Cancelled`] (the default never cancels).
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// An observer that ignores every event and never cancels, for callers that only want the
/// result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl TrainObserver for Silent {}

/// An observer made of two closures, one for events and one for the cancel check; see
/// [`observer`] (a training run's) and [`super::compare::compare_observer`] (a comparison's).
pub struct FnObserver<E, C> {
    pub(super) on_event: E,
    pub(super) cancelled: C,
}

/// An observer calling `on_event` with each event and `cancelled` for the cancel check.
pub fn observer<E, C>(on_event: E, cancelled: C) -> FnObserver<E, C>
where
    E: FnMut(TrainEvent<'_>),
    C: Fn() -> bool,
{
    FnObserver {
        on_event,
        cancelled,
    }
}

impl<E, C> TrainObserver for FnObserver<E, C>
where
    E: FnMut(TrainEvent<'_>),
    C: Fn() -> bool,
{
    fn on_event(&mut self, event: TrainEvent<'_>) {
        (self.on_event)(event);
    }

    fn is_cancelled(&self) -> bool {
        (self.cancelled)()
    }
}
