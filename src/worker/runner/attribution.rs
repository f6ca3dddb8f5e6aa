//! The worker's attribution job: the maps of a photo, one method after another, each with
//! its deletion and insertion scores, progress at most ~20 times a second.

use std::path::Path;

use super::{decode_photo, rgba_of, Runner};
use crate::error::{Error, Result};
use crate::explain::attribution::explanation::{explain, Request};
use crate::explain::attribution::Method;
use crate::progress::Throttle;
use crate::vision::heatmap::{overlay, Heatmap};
use crate::vision::image_io::load_rgb;
use crate::worker::protocol::{CancelToken, ClassMap, Event, ExplainRequest, JobId};

/// How strongly a class map covers the photo in the Train tab's review.
const REVIEW_OPACITY: f32 = 0.5;

impl Runner {
    /// Runs each method of `request` in turn; `None` when cancelled.
    pub(super) fn explain(
        &self,
        job: JobId,
        request: &ExplainRequest,
        cancel: &CancelToken,
    ) -> Result<Option<()>> {
        let model = self.loaded()?;
        let head = if request.head {
            Some(self.head_in_use()?)
        } else {
            None
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

    /// The trained head in use, or why there is none.
    fn head_in_use(&self) -> Result<&crate::train::head::Head> {
        self.head
            .as_ref()
            .map(|active| &active.head)
            .ok_or_else(|| {
                Error::Invalid("no head is in use: train or load one in the Train tab".into())
            })
    }

    /// Grad-CAM of the photo at `path` for each of the head's `classes`, over its network
    /// view; `None` when cancelled.
    pub(super) fn class_maps(
        &self,
        path: &Path,
        classes: &[usize],
        cancel: &CancelToken,
    ) -> Result<Option<Vec<ClassMap>>> {
        let model = self.loaded()?;
        let head = self.head_in_use()?;
        if let Some(&c) = classes.iter().find(|&&c| c >= head.classes.len()) {
            return Err(Error::Invalid(format!(
                "class {c} is not one of the head's {} classes",
                head.classes.len()
            )));
        }
        let photo = load_rgb(path, self.config.max_pixels)?;
        let view = model.preprocess.network_view(&photo);
        let mut maps = Vec::with_capacity(classes.len());
        for &class in classes {
            let request = Request {
                method: Method::GradCam,
                class: Some(class),
                causal_steps: 0,
                ..Request::default()
            };
            let explained = explain(
                model,
                &photo,
                Some(head),
                &request,
                &|| cancel.is_cancelled(),
                &mut |_, _, _| {},
            );
            let e = match explained {
                Ok(e) => e,
                Err(Error::Cancelled) => return Ok(None),
                Err(e) => return Err(e),
            };
            let map = Heatmap {
                values: &e.full,
                height: e.full_height,
                width: e.full_width,
                signed: false,
            };
            maps.push(ClassMap {
                class,
                probability: e.probability,
                overlay: rgba_of(&overlay(&view, &map, REVIEW_OPACITY)),
            });
        }
        Ok(Some(maps))
    }
}
