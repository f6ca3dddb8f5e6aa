//! The worker's downloads: each on a thread of its own (a slow network never holds up the
//! models), with at most ~20 progress events a second.

use std::sync::{Arc, Mutex};

use super::Runner;
use crate::progress::Throttle;
use crate::weights::{self, download};
use crate::worker::protocol::{CancelToken, Event, JobId};

impl Runner {
    pub(super) fn start_download(&self, job: JobId, cancel: CancelToken, model: String) {
        let send = self.sender();
        let dir = self.config.weights_dir.clone();
        let mirror = self.config.mirror.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("download-{model}"))
            .spawn(move || {
                let spec = match weights::find_model(&model) {
                    Ok(spec) => spec,
                    Err(e) => {
                        return send(Event::Failed {
                            job,
                            error: format!("{e:#}"),
                        })
                    }
                };
                let throttle = Mutex::new(Throttle::window());
                let progress_send = send.clone();
                let control = download::DownloadControl {
                    // At most ~20 progress events a second, and always the last one.
                    progress: Arc::new(move |done, total| {
                        let mut throttle = throttle.lock().unwrap_or_else(|e| e.into_inner());
                        if throttle.ready(Some(done) == total) {
                            progress_send(Event::DownloadProgress { job, done, total });
                        }
                    }),
                    cancel: cancel.flag(),
                    mirror,
                };
                let event = match download::fetch_model(spec, &dir, &control) {
                    Ok(path) => Event::Downloaded {
                        job,
                        model: spec.name.to_string(),
                        path,
                    },
                    Err(_) if cancel.is_cancelled() => Event::Cancelled { job },
                    Err(e) => Event::Failed {
                        job,
                        error: format!("{e:#}"),
                    },
                };
                send(event);
            });
        if let Err(e) = spawned {
            self.send(Event::Failed {
                job,
                error: format!("cannot start the download: {e}"),
            });
        }
    }
}
