//! The worker's DeepDream job: a photo dreamed octave by octave, every step reported, its
//! image at most every [`crate::progress::WINDOW_INTERVAL`] (and with the last step).

use super::{decode_photo, rgba_of, Runner};
use crate::error::Result;
use crate::explain::deepdream::{deepdream, working_photo};
use crate::progress::Throttle;
use crate::worker::protocol::{CancelToken, DeepDreamRequest, Event, JobId};

impl Runner {
    /// Runs a DeepDream: step events, then its `DeepDreamFinished` (`None` when cancelled
    /// before the first step).
    pub(super) fn deepdream(
        &self,
        job: JobId,
        request: &DeepDreamRequest,
        cancel: &CancelToken,
    ) -> Result<Option<Event>> {
        let model = self.loaded()?;
        // Only the bounded working copy is kept while the dream runs.
        let photo = {
            let decoded = decode_photo(&request.photo, self.config.max_pixels)?;
            working_photo(&decoded, request.settings.max_side).into_owned()
        };
        let mut previews = Throttle::window();
        let outcome = deepdream(
            model,
            &photo,
            &request.settings,
            &|| cancel.is_cancelled(),
            &mut |frame| {
                let last = frame.octave + 1 == frame.octaves && frame.step == frame.steps;
                let due = previews.ready(last);
                self.send(Event::DeepDreamStep {
                    job,
                    octave: frame.octave,
                    octaves: frame.octaves,
                    step: frame.step,
                    steps: frame.steps,
                    objective: frame.objective,
                    image: due.then(|| rgba_of(&frame.image)),
                });
            },
        )?;
        Ok(outcome.map(|o| Event::DeepDreamFinished {
            job,
            image: rgba_of(&o.image),
            steps: o.steps,
            stopped: o.stopped,
            objective_start: o.objective_start,
            objective_end: o.objective_end,
            ms_per_step: o.ms_per_step,
        }))
    }
}
