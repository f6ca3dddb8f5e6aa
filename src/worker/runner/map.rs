//! The worker's t-SNE maps of the last training's features: each on a thread of its own at
//! lowered priority (the models stay free for Explore meanwhile), the map sent back about ten
//! times a second as it forms.

use std::sync::Arc;
use std::time::Duration;

use super::{low_priority_pool, lower_priority, Runner};
use crate::error::Error;
use crate::progress::Throttle;
use crate::train::tsne::{tsne_2d, TsneOptions};
use crate::worker::protocol::{CancelToken, Event, JobId};

/// How often the forming map is sent to the window.
const FRAME: Duration = Duration::from_millis(100);

impl Runner {
    pub(super) fn start_tsne(&self, job: JobId, cancel: CancelToken, options: TsneOptions) {
        let Some(input) = self.map_input.clone() else {
            return self.send(Event::Failed {
                job,
                error: "no dataset map to refine: train a head on a folder first".into(),
            });
        };
        let send = self.sender();
        let spawned = std::thread::Builder::new()
            .name("tsne".into())
            .spawn(move || {
                lower_priority();
                let pool = low_priority_pool("tsne");
                let mut throttle = Throttle::new(FRAME);
                let mut fit = || {
                    tsne_2d(&input, &options, &mut |p| {
                        if throttle.ready(p.epoch == p.epochs) {
                            send(Event::TsneProgress {
                                job,
                                epoch: p.epoch,
                                epochs: p.epochs,
                                points: p.points.chunks_exact(2).map(|q| [q[0], q[1]]).collect(),
                            });
                        }
                        !cancel.is_cancelled()
                    })
                };
                let result = match &pool {
                    Ok(pool) => pool.install(fit),
                    Err(_) => fit(),
                };
                send(match result {
                    Ok(map) => Event::TsneFinished { job, map },
                    Err(Error::Cancelled) => Event::Cancelled { job },
                    Err(e) => Event::Failed {
                        job,
                        error: format!("{e:#}"),
                    },
                });
            });
        if let Err(e) = spawned {
            self.send(Event::Failed {
                job,
                error: format!("cannot start the t-SNE map: {e}"),
            });
        }
    }
}

/// The features a t-SNE map is made of, shared with its thread.
pub(super) type MapInput = Arc<crate::train::tsne::TsneInput>;
