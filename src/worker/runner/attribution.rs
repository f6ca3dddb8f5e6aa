//! The worker's attribution job: the maps of a photo, one method after another, each with
//! its deletion and insertion scores, progress at most ~20 times a second.

use super::{decode_photo, Runner};
use crate::error::{Error, Result};
use crate::explain::attribution::explanation::{explain, Request};
use crate::progress::Throttle;
use crate::worker::protocol::{CancelToken, Event, ExplainRequest, JobId};

impl Runner {
    /// Runs each method of `request` in turn; `None` when cancelled.
    pub(super) fn explain(
        &self,
        job: JobId,
        request: &ExplainRequest,
        cancel: &CancelToken,
    ) -> Result<Option<()>> {
        let model = self.loaded()?;
        let head = match (&self.head, request.head) {
            (Some(active), true) => Some(&active.head),
            (None, true) => {
                return Err(Error::Invalid(
                    "no head is in use: train or load one in the Train tab".into(),
                ))
            }
            (_, false) => None,
        };
        let photo = decode_photo(&request.photo, self.config.max_pixels)?;
        let total = request.methods.len();
        let mut throttle = Throttle::window();
        for (index, &method) in request.methods.iter().enumerate() {
            let one = Request {
                method,
                class: request.class,
                settings: request.settings.clone(),
                causal_steps: request.causal_steps,
            };
            let explained = explain(
                model,
                &photo,
                head,
                &one,
                &|| cancel.is_cancelled(),
                &mut |stage, done, all| {
                    // The map is half of a method's work, each score a quarter.
                    let (offset, share) = match stage {
                        "map" => (0.0, 0.5),
                        "deletion" => (0.5, 0.25),
                        _ => (0.75, 0.25),
                    };
                    let within = offset + share * done as f32 / all.max(1) as f32;
                    if throttle.ready(done == all) {
                        self.send(Event::ExplainProgress {
                            job,
                            index,
                            total,
                            stage: stage.to_string(),
                            fraction: (index as f32 + within) / total.max(1) as f32,
                        });
                    }
                },
            );
            let explanation = match explained {
                Ok(e) => e,
                Err(Error::Cancelled) => return Ok(None),
                Err(e) => return Err(e),
            };
            self.send(Event::Explained {
                job,
                index,
                explanation: Box::new(explanation),
            });
        }
        Ok(Some(()))
    }
}
