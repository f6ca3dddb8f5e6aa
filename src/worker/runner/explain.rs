//! The worker's explanation jobs: dream (a class or a channel, live controls, a frame at
//! most every [`crate::progress::WINDOW_INTERVAL`]) and attack a photo.

use std::time::Duration;

use super::{decode_photo, rgba_of, Runner};
use crate::error::Result;
use crate::explain::attack::{attack, working_photo};
use crate::explain::dream::{dream, DreamStart};
use crate::explain::fooling::fooling;
use crate::progress::Throttle;
use crate::vision::difference::amplified_difference;
use crate::worker::protocol::{
    AttackRequest, AttackResult, CancelToken, DreamControls, DreamRequest, Event, JobId,
};

impl Runner {
    /// Runs a dream, sending a step event each step (an image at most ~20 times a second); waits
    /// while paused. `None` when cancelled before its first step.
    pub(super) fn dream(
        &self,
        job: JobId,
        request: &DreamRequest,
        controls: &DreamControls,
        cancel: &CancelToken,
    ) -> Result<Option<Event>> {
        let model = self.loaded()?;
        let mut settings = request.settings.clone();
        if let Some(photo) = &request.start_photo {
            settings.start = DreamStart::Photo(decode_photo(photo, self.config.max_pixels)?);
        }
        settings.tv_weight = controls.tv_weight();
        let mut previews = Throttle::window();
        let stop = || {
            while controls.is_paused() && !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(20));
            }
            cancel.is_cancelled()
        };
        let outcome = dream(
            model,
            &settings,
            &|| controls.tv_weight(),
            &stop,
            &mut |frame| {
                let due = previews.ready(frame.step == settings.steps);
                let members = frame.scores.len().max(1) as f32;
                self.send(Event::DreamStep {
                    job,
                    step: frame.step,
                    probs: frame.probs.clone(),
                    score: frame.scores.iter().sum::<f32>() / members,
                    penalty: frame.penalty,
                    similarity: frame.similarity,
                    images: due.then(|| frame.images.iter().map(rgba_of).collect()),
                });
            },
        )?;
        Ok(outcome.map(|o| Event::DreamFinished {
            job,
            images: o.images.iter().map(rgba_of).collect(),
            steps: o.steps,
            probs: o.probs,
            ms_per_step: o.ms_per_step,
        }))
    }

    pub(super) fn attack(
        &self,
        job: JobId,
        request: &AttackRequest,
        cancel: &CancelToken,
    ) -> Result<Option<AttackResult>> {
        let model = self.loaded()?;
        // Only the bounded working copy is kept while the attack runs (see the attack's module).
        let photo = {
            let decoded = decode_photo(&request.photo, self.config.max_pixels)?;
            working_photo(&model.preprocess, &decoded).into_owned()
        };
        let outcome = attack(
            model,
            &photo,
            &request.settings,
            &|| cancel.is_cancelled(),
            &mut |p| {
                self.send(Event::AttackStep {
                    job,
                    step: p.step,
                    source_prob: p.source_prob,
                    target_prob: p.target_prob,
                    top_class: p.top_class,
                });
            },
        )?;
        let Some(o) = outcome else { return Ok(None) };
        let perturbation = amplified_difference(&o.original, &o.adversarial, request.settings.eps);
        // The attack stands even where the look inside fails; the failure is logged.
        let target = o.target.unwrap_or(o.last.top_class);
        let inside = fooling(
            model,
            &o.original,
            &o.adversarial,
            (o.source, target),
            &|| cancel.is_cancelled(),
        );
        let inside = match inside {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "could not look inside the attacked network");
                None
            }
        };
        let view = |img: &image::RgbImage| rgba_of(&model.preprocess.network_view(img));
        Ok(Some(AttackResult {
            original: rgba_of(&o.original),
            adversarial: rgba_of(&o.adversarial),
            original_view: view(&o.original),
            adversarial_view: view(&o.adversarial),
            fooling: inside,
            perturbation: rgba_of(&perturbation),
            source: o.source,
            target: o.target,
            top_class: o.last.top_class,
            success: o.success,
            reached: o.reached,
            steps: o.steps,
            source_prob: o.last.source_prob,
            target_prob: o.last.target_prob,
            linf: o.linf,
            l2: o.l2,
            psnr_db: o.psnr_db,
            ms_per_step: o.ms_per_step,
        }))
    }
}
