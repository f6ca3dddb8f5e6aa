//! The worker's layer gallery job: every channel of a layer dreamed small (cached on disk),
//! the tiles sent as their batches finish, the progress at most every
//! [`crate::progress::WINDOW_INTERVAL`].

use super::{rgba_of, Runner};
use crate::error::Result;
use crate::explain::gallery::{dream_gallery, GallerySettings};
use crate::progress::Throttle;
use crate::worker::protocol::{CancelToken, Event, JobId};

impl Runner {
    /// Dreams `layer`'s gallery with the loaded model; `None` when cancelled.
    pub(super) fn gallery(
        &self,
        job: JobId,
        layer: &str,
        settings: &GallerySettings,
        cancel: &CancelToken,
    ) -> Result<Option<Event>> {
        let model = self.loaded()?;
        let mut throttle = Throttle::window();
        let gallery = dream_gallery(
            model,
            layer,
            settings,
            self.config.gallery_cache.as_deref(),
            &|| cancel.is_cancelled(),
            &mut |p| {
                // New tiles always go out; step-only progress is throttled.
                if !p.new_tiles.is_empty() || throttle.ready(p.done == p.total) {
                    self.send(Event::GalleryProgress {
                        job,
                        done: p.done,
                        total: p.total,
                        fraction: p.fraction(settings.batch),
                        tiles: p
                            .new_tiles
                            .iter()
                            .map(|(c, image)| (*c, rgba_of(image)))
                            .collect(),
                    });
                }
            },
        )?;
        Ok(gallery.map(|g| Event::GalleryFinished {
            job,
            layer: layer.to_string(),
            channels: g.images.len(),
            layer_channels: g.layer_channels,
            cached: g.cached,
            computed: g.computed,
            seconds: g.seconds,
        }))
    }
}
