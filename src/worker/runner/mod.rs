//! The model worker: one thread that owns the device and the loaded model, takes
//! [`Command`]s in order and answers with [`Event`]s, waking the UI after each. Downloads run
//! on threads of their own, so a slow network never holds up the models. Each family of jobs
//! has its file: [`analyse`] (load a model, analyse a photo), [`explain`] (dream, attack),
//! [`deepdream`], [`gallery`] (a layer's channels dreamed, cached), [`examples`] (a
//! layer's dataset examples, cached), [`train`] (scan, train,
//! compare, heads), [`download`] and [`map`] (t-SNE; downloads and maps run on threads of their
//! own).

mod analyse;
mod attribution;
mod deepdream;
mod download;
mod examples;
mod explain;
mod export;
mod gallery;
mod map;
mod train;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use image::RgbImage;

use super::protocol::{Command, Event, HeadSummary, JobId, PhotoSource, RgbaImage};
use crate::error::{Error, Result};
use crate::inference::LoadedModel;
use crate::train::dataset::{scan, ScanOptions};
use crate::train::head::{Head, HeadInfo};
use crate::vision::image_io::{decode_rgb, load_rgb};

/// Called after every event so the UI repaints (egui's `request_repaint`, as a plain closure).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Where the worker finds and puts things.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The weights folder models are loaded from and downloaded into.
    pub weights_dir: PathBuf,
    /// Where trained heads are saved unless the user picks another file.
    pub heads_dir: PathBuf,
    /// A mirror to download from instead of the catalogue's sources (see
    /// [`download::DownloadControl::mirror`]).
    pub mirror: Option<String>,
    /// Largest photo accepted, in pixels.
    pub max_pixels: u64,
    /// Folder of the training feature caches (`None`: nothing cached).
    pub feature_cache: Option<PathBuf>,
    /// Folder of the layer galleries' dreams (`None`: nothing cached).
    pub gallery_cache: Option<PathBuf>,
    /// Folder of the layers' dataset examples (`None`: nothing cached).
    pub examples_cache: Option<PathBuf>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let places = crate::places::Places::current();
        Self {
            weights_dir: places.weights.clone(),
            heads_dir: places.heads.clone(),
            mirror: None,
            max_pixels: crate::vision::image_io::DEFAULT_MAX_PIXELS,
            feature_cache: Some(places.features_cache()),
            gallery_cache: Some(places.gallery_cache()),
            examples_cache: Some(places.examples_cache()),
        }
    }
}

/// The UI's handle on the worker thread.
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker thread.
    pub fn spawn(config: WorkerConfig, waker: Waker) -> std::io::Result<Self> {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let runner = Runner {
            config,
            events: event_tx,
            waker,
            model: None,
            head: None,
            map_input: None,
        };
        let thread = std::thread::Builder::new()
            .name("model-worker".into())
            .spawn(move || {
                lower_priority();
                // The models' own thread pool, at the same lowered priority: on a machine with
                // few cores the window's thread must still get the CPU the moment it asks.
                match low_priority_pool("model") {
                    Ok(pool) => pool.install(|| runner.run(command_rx)),
                    Err(e) => {
                        tracing::warn!("no thread pool for the models ({e}): using the global one");
                        runner.run(command_rx)
                    }
                }
            })?;
        Ok(Self {
            commands,
            events,
            thread: Some(thread),
        })
    }

    /// Queues `command`; false when the worker thread is gone.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// The next event, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        // A job in flight is not waited for: quitting must not hang on a model.
        drop(self.thread.take());
    }
}

/// The worker thread's state: the loaded model and head, and the way back to the window.
struct Runner {
    config: WorkerConfig,
    events: Sender<Event>,
    waker: Waker,
    model: Option<LoadedModel>,
    /// The trained head applied to analysed photos.
    head: Option<ActiveHead>,
    /// The last training's features, for its t-SNE map.
    map_input: Option<map::MapInput>,
}

/// The head in use, with what it was trained on.
struct ActiveHead {
    head: Head,
    info: HeadInfo,
    summary: HeadSummary,
}

impl Runner {
    fn run(mut self, commands: Receiver<Command>) {
        while let Ok(command) = commands.recv() {
            let job = match &command {
                Command::Shutdown => break,
                Command::LoadModel { job, .. }
                | Command::Analyse { job, .. }
                | Command::Download { job, .. }
                | Command::Dream { job, .. }
                | Command::DeepDream { job, .. }
                | Command::DreamGallery { job, .. }
                | Command::ChannelExamples { job, .. }
                | Command::Attack { job, .. }
                | Command::Explain { job, .. }
                | Command::ScanFolder { job, .. }
                | Command::Train { job, .. }
                | Command::Compare { job, .. }
                | Command::LoadHead { job, .. }
                | Command::Thumbnails { job, .. }
                | Command::ClassMaps { job, .. }
                | Command::Export { job, .. }
                | Command::Tsne { job, .. } => *job,
            };
            // A bug in one job must not take the worker (and every later job) down with it.
            let outcome = catch_unwind(AssertUnwindSafe(|| self.handle(command)));
            if let Err(panic) = outcome {
                let what = crate::error::panic_message(panic.as_ref())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(%job, %what, "worker job panicked");
                self.send(Event::Failed {
                    job,
                    error: format!("internal error: {what}"),
                });
            }
        }
        tracing::debug!("model worker stopped");
    }

    fn send(&self, event: Event) {
        if self.events.send(event).is_ok() {
            (self.waker)();
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Shutdown => {}
            Command::LoadModel { job, model, device } => {
                let event = match self.load(&model, device) {
                    Ok(model) => Event::ModelLoaded { job, model },
                    Err(e) => Event::Failed {
                        job,
                        error: format!("{e:#}"),
                    },
                };
                self.send(event);
            }
            Command::Analyse { job, cancel, photo } => {
                let event = if cancel.is_cancelled() {
                    Event::Cancelled { job }
                } else {
                    answer(job, self.analyse(&photo, &cancel), |analysis| {
                        Event::Analysed {
                            job,
                            analysis: Box::new(analysis),
                        }
                    })
                };
                self.send(event);
            }
            Command::Download { job, cancel, model } => self.start_download(job, cancel, model),
            Command::Tsne {
                job,
                cancel,
                options,
            } => self.start_tsne(job, cancel, options),
            Command::Dream {
                job,
                cancel,
                request,
                controls,
            } => {
                let event = answer(job, self.dream(job, &request, &controls, &cancel), |e| e);
                self.send(event);
            }
            Command::DeepDream {
                job,
                cancel,
                request,
            } => {
                let event = answer(job, self.deepdream(job, &request, &cancel), |e| e);
                self.send(event);
            }
            Command::DreamGallery {
                job,
                cancel,
                layer,
                settings,
            } => {
                let event = answer(job, self.gallery(job, &layer, &settings, &cancel), |e| e);
                self.send(event);
            }
            Command::ChannelExamples {
                job,
                cancel,
                folder,
                layer,
                settings,
            } => {
                let result = self.examples(job, &folder, &layer, settings, &cancel);
                let event = answer(job, result, |examples| Event::ExamplesFinished {
                    job,
                    examples: Box::new(examples),
                });
                self.send(event);
            }
            Command::Attack {
                job,
                cancel,
                request,
            } => {
                let event = answer(job, self.attack(job, &request, &cancel), |result| {
                    Event::AttackFinished {
                        job,
                        result: Box::new(result),
                    }
                });
                self.send(event);
            }
            Command::Explain {
                job,
                cancel,
                request,
            } => {
                let event = answer(job, self.explain(job, &request, &cancel), |()| {
                    Event::ExplainFinished { job }
                });
                self.send(event);
            }
            Command::ScanFolder {
                job,
                dir,
                cats_vs_dogs,
            } => {
                let event = match scan(&dir, ScanOptions { cats_vs_dogs }) {
                    Ok(dataset) => Event::FolderScanned {
                        job,
                        summary: train::summarise(&dataset),
                    },
                    Err(e) => Event::Failed {
                        job,
                        error: format!("{e:#}"),
                    },
                };
                self.send(event);
            }
            Command::Train {
                job,
                cancel,
                request,
            } => {
                let result = self.train(job, &request, &cancel);
                let event = answer(job, result, |(report, head)| Event::TrainFinished {
                    job,
                    report: Box::new(report),
                    head,
                });
                self.send(event);
            }
            Command::Compare {
                job,
                cancel,
                request,
            } => {
                let result = self.compare(job, &request, &cancel);
                let event = answer(job, result, |rows| Event::CompareFinished { job, rows });
                self.send(event);
            }
            Command::Thumbnails { job, cancel, paths } => {
                let event = match self.thumbnails(job, &paths, &cancel) {
                    Some(()) => Event::ThumbnailsFinished { job },
                    None => Event::Cancelled { job },
                };
                self.send(event);
            }
            Command::ClassMaps {
                job,
                cancel,
                path,
                classes,
            } => {
                let result = self.class_maps(&path, &classes, &cancel);
                let event = answer(job, result, |maps| Event::ClassMaps { job, path, maps });
                self.send(event);
            }
            Command::Export { job, path } => {
                let result = self.export(&path).map(Some);
                let event = answer(job, result, |report| Event::Exported { job, report });
                self.send(event);
            }
            Command::LoadHead { job, path } => {
                let event = match self.load_head(&path) {
                    Ok(head) => Event::HeadLoaded { job, head },
                    Err(e) => Event::Failed {
                        job,
                        error: format!("{e:#}"),
                    },
                };
                self.send(event);
            }
        }
    }
}

/// The event that answers a cancellable job: `finished` of its result, `Cancelled` when it
/// stopped early, `Failed` with the whole chain of causes.
fn answer<T>(job: JobId, result: Result<Option<T>>, finished: impl FnOnce(T) -> Event) -> Event {
    match result {
        Ok(Some(value)) => finished(value),
        Ok(None) => Event::Cancelled { job },
        Err(e) => Event::Failed {
            job,
            error: format!("{e:#}"),
        },
    }
}

/// Decodes `photo` into RGB8 (alpha dropped, as torchvision's `convert("RGB")` does).
pub fn decode_photo(photo: &PhotoSource, max_pixels: u64) -> Result<RgbImage> {
    match photo {
        PhotoSource::File(path) => load_rgb(path, max_pixels),
        PhotoSource::Encoded { name, bytes } => {
            decode_rgb(bytes, max_pixels).map_err(|reason| Error::image(name, reason))
        }
        PhotoSource::Pixels {
            name,
            width,
            height,
            rgba,
        } => {
            let pixels = (*width as u64) * (*height as u64);
            if pixels == 0 || pixels > max_pixels || rgba.len() as u64 != pixels * 4 {
                return Err(Error::image(
                    name,
                    format!(
                        "a {width}x{height} image with {} bytes of pixels cannot be used \
                         (empty, larger than {max_pixels} pixels, or damaged)",
                        rgba.len()
                    ),
                ));
            }
            let rgb: Vec<u8> = rgba
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            RgbImage::from_raw(*width as u32, *height as u32, rgb)
                .ok_or_else(|| Error::image(name, "the pixels do not fill the image"))
        }
    }
}

/// Makes the calling thread yield to interactive ones, never the whole process (the window
/// must keep its priority): nice 10 for this thread on Linux, the "utility" QoS class on macOS
/// (Apple's class for long jobs the user watches progress of), below-normal on Windows.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
    let lowered = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10) == 0
    };
    #[cfg(target_os = "macos")]
    // SAFETY: sets the calling thread's own QoS class; no memory is shared.
    let lowered = unsafe {
        libc::pthread_set_qos_class_self_np(libc::qos_class_t::QOS_CLASS_UTILITY, 0) == 0
    };
    #[cfg(windows)]
    // SAFETY: GetCurrentThread is a pseudo-handle for the calling thread; nothing is freed.
    let lowered = unsafe {
        use windows_sys::Win32::System::Threading::{
            GetCurrentThread, SetThreadPriority, THREAD_PRIORITY_BELOW_NORMAL,
        };
        SetThreadPriority(GetCurrentThread(), THREAD_PRIORITY_BELOW_NORMAL) != 0
    };
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    let lowered = true;
    if !lowered {
        tracing::debug!("could not lower the model thread's priority");
    }
}

/// A rayon pool whose threads (`name-0`, ...) run at [`lower_priority`].
fn low_priority_pool(
    name: &'static str,
) -> std::result::Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(|_| lower_priority())
        .build()
}

impl Runner {
    /// A way to send events from a thread of the worker's own (a download, a map): each wakes
    /// the window, and a closed window is ignored.
    fn sender(&self) -> impl Fn(Event) + Clone + Send + 'static {
        let events = self.events.clone();
        let waker = self.waker.clone();
        move |event: Event| {
            if events.send(event).is_ok() {
                waker();
            }
        }
    }
}

/// `image` as the window takes it (opaque RGBA).
fn rgba_of(image: &RgbImage) -> RgbaImage {
    RgbaImage {
        width: image.width() as usize,
        height: image.height() as usize,
        rgba: image
            .pixels()
            .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    /// The scheduling priority of the calling thread, as the OS reports it: the nice value on
    /// Linux, whether the QoS class is "utility" on macOS, the thread priority on Windows.
    #[cfg(target_os = "linux")]
    fn lowered() -> bool {
        // SAFETY: reads the calling thread's own priority.
        let nice = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        };
        // 10, or more where the whole test run was already niced further.
        nice >= 10
    }

    #[cfg(target_os = "macos")]
    fn lowered() -> bool {
        let mut class = libc::qos_class_t::QOS_CLASS_UNSPECIFIED;
        let mut relative = 0;
        // SAFETY: both out-pointers are valid locals.
        let ok = unsafe {
            libc::pthread_get_qos_class_np(libc::pthread_self(), &mut class, &mut relative)
        };
        ok == 0 && matches!(class, libc::qos_class_t::QOS_CLASS_UTILITY)
    }

    #[cfg(windows)]
    fn lowered() -> bool {
        use windows_sys::Win32::System::Threading::{
            GetCurrentThread, GetThreadPriority, THREAD_PRIORITY_BELOW_NORMAL,
        };
        // SAFETY: a pseudo-handle for the calling thread.
        unsafe { GetThreadPriority(GetCurrentThread()) == THREAD_PRIORITY_BELOW_NORMAL }
    }

    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    #[test]
    fn pool_threads_run_below_the_window() {
        let pool = super::low_priority_pool("priority-test").expect("a pool");
        assert!(pool.install(lowered), "the pool's threads are lowered");
    }
}
