//! The worker's dataset-examples job: a folder's photos that excite each channel of a layer
//! most, with their crops (cached on disk), the progress at most every
//! [`crate::progress::WINDOW_INTERVAL`].

use std::path::Path;

use super::Runner;
use crate::error::Result;
use crate::explain::examples::{find_examples, ChannelExamples, ExampleSettings};
use crate::progress::Throttle;
use crate::train::dataset::{scan, ScanOptions};
use crate::worker::protocol::{CancelToken, Event, JobId};

impl Runner {
    /// `layer`'s dataset examples among `folder`'s photos (a folder the Train tab reads) with
    /// the loaded model; `None` when cancelled.
    pub(super) fn examples(
        &self,
        job: JobId,
        folder: &Path,
        layer: &str,
        settings: ExampleSettings,
        cancel: &CancelToken,
    ) -> Result<Option<ChannelExamples>> {
        let model = self.loaded()?;
        let dataset = scan(folder, ScanOptions::default())?;
        let mut throttle = Throttle::window();
        find_examples(
            model,
            layer,
            &dataset.items,
            settings,
            self.config.examples_cache.as_deref(),
            &|| cancel.is_cancelled(),
            &mut |p| {
                if throttle.ready(p.done == p.total) {
                    self.send(Event::ExamplesProgress {
                        job,
                        done: p.done,
                        total: p.total,
                    });
                }
            },
        )
    }
}
