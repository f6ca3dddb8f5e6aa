//! The model worker: one thread that owns the device and the loaded model, takes
//! [`Command`]s in order and answers with [`Event`]s, waking the UI after each. Downloads run
//! on threads of their own, so a slow network never holds up the models.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::{IndexOp, Tensor};
use image::RgbImage;

use super::protocol::{
    Analysis, AttackRequest, AttackResult, CancelToken, Command, CompareRequest, ComparisonRow,
    DatasetSummary, DreamControls, DreamGoal, DreamRequest, EpochRow, Event, HeadPredictions,
    HeadSummary, JobId, LayerMaps, Misclassified, ModelSummary, PhotoSource, Prediction, RgbaImage,
    TrainReport, TrainRequest,
};
use crate::device::{describe_device, select_device, DeviceChoice};
use crate::error::{Error, Result};
use crate::explain::attack::{attack, AttackSettings};
use crate::explain::dream::{dream, DreamSettings, DreamStart, DreamTarget, Parameterisation};
use crate::inference::{channel_maps, load_model, ranked, top_k, ClassScore, LoadedModel};
use crate::progress::Throttle;
use crate::train::compare::{compare_backbones, compare_observer, CompareEntry, CompareEvent};
use crate::train::dataset::{scan, Dataset, ScanOptions};
use crate::train::head::{EpochMetrics, Head, HeadInfo, HeadKind};
use crate::train::observe::{observer, TrainEvent};
use crate::train::pipeline::{classify_with_head, train_on_folder, TrainConfig};
use crate::vision::atlas::{build_atlas, channel_stats};
use crate::vision::image_io::{decode_rgb, load_rgb};
use crate::vision::preprocess::normalize_chw;
use crate::weights::{self, download};

/// Called after every event so the UI repaints (egui's `request_repaint`, as a plain closure).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Where the worker finds and puts things.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The weights folder models are loaded from and downloaded into.
    pub weights_dir: PathBuf,
    /// A mirror to download from instead of the catalogue's sources (see
    /// [`download::DownloadControl::mirror`]).
    pub mirror: Option<String>,
    /// Largest photo accepted, in pixels.
    pub max_pixels: u64,
    /// Folder of the training feature caches (`None`: nothing cached).
    pub feature_cache: Option<PathBuf>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            weights_dir: weights::weights_dir(),
            mirror: None,
            max_pixels: crate::vision::image_io::DEFAULT_MAX_PIXELS,
            feature_cache: Some(crate::train::features::default_cache_dir()),
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
        };
        let thread = std::thread::Builder::new()
            .name("model-worker".into())
            .spawn(move || {
                lower_priority();
                // The models' own thread pool, at the same lowered priority: on a machine with
                // few cores the window's thread must still get the CPU the moment it asks.
                let pool = rayon::ThreadPoolBuilder::new()
                    .thread_name(|i| format!("model-{i}"))
                    .start_handler(|_| lower_priority())
                    .build();
                match pool {
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

/// Misclassified photos sent back with thumbnails (the rest are only counted).
const MAX_GALLERY: usize = 60;

struct Runner {
    config: WorkerConfig,
    events: Sender<Event>,
    waker: Waker,
    model: Option<LoadedModel>,
    /// The trained head applied to analysed photos.
    head: Option<ActiveHead>,
}

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
                | Command::Attack { job, .. }
                | Command::ScanFolder { job, .. }
                | Command::Train { job, .. }
                | Command::Compare { job, .. }
                | Command::LoadHead { job, .. } => *job,
            };
            // A bug in one job must not take the worker (and every later job) down with it.
            let outcome = catch_unwind(AssertUnwindSafe(|| self.handle(command)));
            if let Err(panic) = outcome {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
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
            Command::Dream {
                job,
                cancel,
                request,
                controls,
            } => {
                let event = answer(job, self.dream(job, &request, &controls, &cancel), |e| e);
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
            Command::ScanFolder {
                job,
                dir,
                cats_vs_dogs,
            } => {
                let event = match scan(&dir, ScanOptions { cats_vs_dogs }) {
                    Ok(dataset) => Event::FolderScanned {
                        job,
                        summary: summarise(&dataset),
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

    /// The training set-up `request` asks for, with the worker's feature cache.
    fn train_config(&self, request: &TrainRequest) -> TrainConfig {
        request.config(self.config.feature_cache.clone())
    }

    /// Trains the request's head with each of its models on the loaded model's device (the
    /// CPU before any is loaded); `None` when cancelled.
    fn compare(
        &self,
        job: JobId,
        request: &CompareRequest,
        cancel: &CancelToken,
    ) -> Result<Option<Vec<ComparisonRow>>> {
        let specs = request
            .models
            .iter()
            .map(|name| weights::find_model(name))
            .collect::<Result<Vec<_>>>()?;
        let mut config = self.train_config(&request.train);
        config.fine_tune = None;
        let epochs = config.head.epochs.max(1);
        let device = self
            .model
            .as_ref()
            .map_or(candle_core::Device::Cpu, |m| m.device.clone());
        let mut current = (String::new(), 0, 0);
        let mut throttle = Throttle::window();
        let progress = |current: &(String, usize, usize), stage: String, fraction: f32| {
            self.send(Event::CompareProgress {
                job,
                model: current.0.clone(),
                index: current.1,
                total: current.2,
                stage,
                fraction,
            })
        };
        let on_event = |event: CompareEvent| match event {
            CompareEvent::Started {
                model,
                index,
                total,
            } => {
                current = (model.to_string(), index, total);
                progress(&current, "loading weights".into(), 0.0);
            }
            CompareEvent::Train(TrainEvent::Features(p)) => {
                if throttle.ready(p.done == p.total) {
                    let stage = format!("features {}/{} ({} cached)", p.done, p.total, p.cached);
                    progress(&current, stage, 0.8 * p.done as f32 / p.total.max(1) as f32);
                }
            }
            CompareEvent::Train(TrainEvent::Epoch(m)) => {
                let stage = format!("epoch {}/{epochs}", m.epoch);
                progress(&current, stage, 0.8 + 0.2 * m.epoch as f32 / epochs as f32);
            }
            CompareEvent::Train(_) => {}
            CompareEvent::Finished(entry) => self.send(Event::CompareRow {
                job,
                row: comparison_row(entry),
            }),
        };
        let entries = match compare_backbones(
            &specs,
            &request.train.dir,
            &self.config.weights_dir,
            &config,
            &device,
            &mut compare_observer(on_event, || cancel.is_cancelled()),
        ) {
            Ok(entries) => entries,
            Err(Error::Cancelled) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(entries.iter().map(comparison_row).collect()))
    }

    /// Trains a head on a folder with the loaded model, saves it and makes it the head in
    /// use. `None` when cancelled.
    fn train(
        &mut self,
        job: JobId,
        request: &TrainRequest,
        cancel: &CancelToken,
    ) -> Result<Option<(TrainReport, HeadSummary)>> {
        let model = self.loaded()?;
        let config = self.train_config(request);
        let mut throttle = Throttle::window();
        let on_event = |event: TrainEvent| match event {
            TrainEvent::Scanned(dataset) => self.send(Event::TrainScanned {
                job,
                summary: summarise(dataset),
            }),
            TrainEvent::Features(p) => {
                if throttle.ready(p.done == p.total) {
                    self.send(Event::TrainFeatures {
                        job,
                        done: p.done,
                        total: p.total,
                        cached: p.cached,
                        images_per_s: p.images_per_s,
                        eta_s: p.eta_s,
                    });
                }
            }
            TrainEvent::Step { step, loss } => self.send(Event::TrainStep { job, step, loss }),
            TrainEvent::Epoch(m) => self.send(Event::TrainEpoch {
                job,
                row: epoch_row(m),
            }),
        };
        let mut watch = observer(on_event, || cancel.is_cancelled());
        let outcome = match train_on_folder(model, &request.dir, &config, &mut watch) {
            Ok(outcome) => outcome,
            Err(Error::Cancelled) => return Ok(None),
            Err(e) => return Err(e),
        };
        if cancel.is_cancelled() {
            return Ok(None);
        }
        outcome
            .head
            .save(&request.output, model.spec.name, &model.preprocess)?;
        // Saved: from here on the run finishes (a late cancel only skips the thumbnails).
        let mut mistakes = Vec::new();
        for m in outcome.mistakes.iter().take(MAX_GALLERY) {
            if cancel.is_cancelled() {
                break;
            }
            // The photo decoded a moment ago; if it has gone since, it simply has no picture.
            let thumbnail = load_rgb(&m.path, self.config.max_pixels)
                .map(|img| rgba_of(&thumbnail_of(&img, 96)))
                .unwrap_or(RgbaImage {
                    width: 1,
                    height: 1,
                    rgba: vec![128, 128, 128, 255],
                });
            mistakes.push(Misclassified {
                path: m.path.clone(),
                truth: m.truth,
                predicted: m.predicted,
                thumbnail,
            });
        }
        let head = &outcome.head;
        let report = TrainReport {
            classes: head.classes.clone(),
            confusion: outcome.confusion.clone(),
            val_accuracy: outcome.val_accuracy,
            best_epoch: head.metrics.get(head.best_epoch).map_or(0, |m| m.epoch),
            epochs: head.metrics.iter().map(epoch_row).collect(),
            mistakes,
            mistakes_total: outcome.mistakes.len(),
            train_count: outcome.split.train.len(),
            val_count: outcome.split.val.len(),
            unreadable: outcome
                .failed
                .iter()
                .map(|f| (f.path.clone(), f.reason.clone()))
                .collect(),
            features_computed: outcome.features_computed,
            features_from_cache: outcome.features_from_cache,
            images_per_s: outcome.images_per_s,
            saved_to: request.output.clone(),
        };
        let info = head.info(model.spec.name, &model.preprocess);
        let summary = head_summary(&request.output, &info);
        self.head = Some(ActiveHead {
            head: outcome.head,
            info,
            summary: summary.clone(),
        });
        Ok(Some((report, summary)))
    }

    /// Loads a saved head and makes it the head in use (the one before stays if it fails).
    fn load_head(&mut self, path: &std::path::Path) -> Result<HeadSummary> {
        let (head, info) = Head::load(path)?;
        let summary = head_summary(path, &info);
        self.head = Some(ActiveHead {
            head,
            info,
            summary: summary.clone(),
        });
        Ok(summary)
    }

    /// The head in use's top classes for `image`, or why it cannot classify it.
    fn head_predictions(
        &self,
        model: &LoadedModel,
        image: &RgbImage,
    ) -> (Option<HeadPredictions>, Option<String>) {
        let Some(active) = &self.head else {
            return (None, None);
        };
        if active.info.backbone != model.spec.name {
            let note = format!(
                "The head {} was trained on {} features: choose {} to use it.",
                active.summary.name, active.info.backbone, active.info.backbone
            );
            return (None, Some(note));
        }
        match classify_with_head(model, &active.head, &[image]) {
            Ok(probs) => {
                let row = probs.into_iter().next().unwrap_or_default();
                let top = ranked(&row, 5, |i| {
                    active.head.classes.get(i).cloned().unwrap_or_default()
                })
                .into_iter()
                .map(prediction_of)
                .collect();
                let predictions = HeadPredictions {
                    head: active.summary.name.clone(),
                    top,
                };
                (Some(predictions), None)
            }
            Err(e) => (
                None,
                Some(format!("The head could not classify the photo: {e:#}")),
            ),
        }
    }

    fn loaded(&self) -> Result<&LoadedModel> {
        self.model.as_ref().ok_or_else(|| {
            Error::Invalid("no model is loaded yet: install or choose one first".into())
        })
    }

    /// Runs a dream, sending a step event each step (an image at most every 50 ms); waits
    /// while paused. `None` when cancelled before its first step.
    fn dream(
        &self,
        job: JobId,
        request: &DreamRequest,
        controls: &DreamControls,
        cancel: &CancelToken,
    ) -> Result<Option<Event>> {
        let model = self.loaded()?;
        let mut settings = DreamSettings::new(match &request.goal {
            DreamGoal::Class(c) => DreamTarget::Class(*c),
            DreamGoal::Channel { layer, channel } => DreamTarget::Channel {
                layer: layer.clone(),
                channel: *channel,
            },
        });
        settings.parameterisation = if request.fourier {
            Parameterisation::Fourier
        } else {
            Parameterisation::Pixels
        };
        if let Some(photo) = &request.start {
            settings.start = DreamStart::Photo(decode_photo(photo, self.config.max_pixels)?);
        }
        settings.steps = request.steps;
        settings.learning_rate = request.learning_rate;
        settings.size = request.size;
        settings.jitter = request.jitter;
        settings.seed = request.seed;
        settings.log_softmax = request.log_softmax;
        settings.tv_weight = controls.tv_weight();
        let mut last_image: Option<Instant> = None;
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
                let due = last_image.is_none_or(|t| t.elapsed() >= Duration::from_millis(50))
                    || frame.step == settings.steps;
                if due {
                    last_image = Some(Instant::now());
                }
                self.send(Event::DreamStep {
                    job,
                    step: frame.step,
                    prob: frame.prob,
                    score: frame.score,
                    penalty: frame.penalty,
                    image: due.then(|| rgba_of(&frame.image)),
                });
            },
        )?;
        Ok(outcome.map(|o| Event::DreamFinished {
            job,
            image: rgba_of(&o.image),
            steps: o.steps,
            prob: o.prob,
            ms_per_step: o.ms_per_step,
        }))
    }

    fn attack(
        &self,
        job: JobId,
        request: &AttackRequest,
        cancel: &CancelToken,
    ) -> Result<Option<AttackResult>> {
        let model = self.loaded()?;
        let photo = decode_photo(&request.photo, self.config.max_pixels)?;
        let settings = AttackSettings {
            target: request.target,
            eps: request.eps,
            step: request.step,
            max_steps: request.max_steps,
        };
        let outcome = attack(
            model,
            &photo,
            &settings,
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
        let gain = 127.0 / request.eps.max(1.0);
        let perturbation = RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
            let (a, b) = (photo.get_pixel(x, y).0, o.adversarial.get_pixel(x, y).0);
            image::Rgb([0, 1, 2].map(|c| {
                (128.0 + (f32::from(b[c]) - f32::from(a[c])) * gain).clamp(0.0, 255.0) as u8
            }))
        });
        Ok(Some(AttackResult {
            original: rgba_of(&photo),
            adversarial: rgba_of(&o.adversarial),
            perturbation: rgba_of(&perturbation),
            source: o.source,
            target: o.target,
            top_class: o.last.top_class,
            success: o.success,
            steps: o.steps,
            source_prob: o.last.source_prob,
            target_prob: o.last.target_prob,
            linf: o.linf,
            l2: o.l2,
            psnr_db: o.psnr_db,
            ms_per_step: o.ms_per_step,
        }))
    }

    fn load(&mut self, name: &str, choice: DeviceChoice) -> Result<ModelSummary> {
        let spec = weights::find_model(name)?;
        let path = spec.path_in(&self.config.weights_dir);
        if !path.is_file() {
            return Err(Error::WeightsMissing {
                model: spec.name.to_string(),
                path,
            });
        }
        let device = select_device(choice)?;
        // The old model stays loaded until the new one is: if this one fails, the window
        // carries on with the old.
        let model = load_model(name, Some(&path), &device)?;
        let summary = ModelSummary {
            name: spec.name.to_string(),
            arch: spec.arch.to_string(),
            device: describe_device(&device),
            weights: path,
            input_size: model.preprocess.size,
            last_block: model.backbone.last_block().map(|b| {
                let skip = if b.residual { " with its skip" } else { "" };
                format!(
                    "{} convolution(s) after {}{skip}",
                    b.convs.len(),
                    b.input_tap
                )
            }),
        };
        self.model = Some(model);
        Ok(summary)
    }

    /// Runs the loaded model on `photo`; `None` when cancelled.
    fn analyse(&self, photo: &PhotoSource, cancel: &CancelToken) -> Result<Option<Analysis>> {
        let started = Instant::now();
        let model = self.loaded()?;
        let image = decode_photo(photo, self.config.max_pixels)?;
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let view = model.preprocess.network_view(&image);
        let size = view.width() as usize;
        let chw = normalize_chw(&view, &model.preprocess.mean, &model.preprocess.std);
        let input = Tensor::from_vec(chw, (1, 3, size, size), &model.device)?;
        let forward_started = Instant::now();
        let taps = model.backbone.forward_taps(&input)?;
        let forward_ms = forward_started.elapsed().as_secs_f64() * 1e3;
        let logits = taps
            .last()
            .map(|t| t.tensor.clone())
            .ok_or_else(|| Error::Invalid("the model reported no layers".into()))?;
        let top5 = top_k(&logits, 5)?
            .into_iter()
            .next()
            .unwrap_or_default()
            .into_iter()
            .map(prediction_of)
            .collect();
        let (head, head_note) = self.head_predictions(model, &image);
        let mut layers = Vec::with_capacity(taps.len());
        for tap in &taps {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let maps = channel_maps(&tap.tensor.i(0)?)?;
            let stats = channel_stats(&maps);
            let atlas = build_atlas(&maps, &stats);
            layers.push(LayerMaps {
                name: tap.name.clone(),
                kind: format!("{:?}", tap.kind).to_lowercase(),
                shape: tap.tensor.dims()[1..].to_vec(),
                channels: maps.channels,
                height: maps.height,
                width: maps.width,
                values: maps.values,
                stats,
                atlas,
            });
        }
        Ok(Some(Analysis {
            photo_name: photo.name(),
            original_width: image.width(),
            original_height: image.height(),
            network_view: rgba_of(&view),
            top5,
            layers,
            head,
            head_note,
            forward_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        }))
    }

    fn start_download(&self, job: JobId, cancel: CancelToken, model: String) {
        let events = self.events.clone();
        let waker = self.waker.clone();
        let dir = self.config.weights_dir.clone();
        let mirror = self.config.mirror.clone();
        let send = move |event: Event| {
            if events.send(event).is_ok() {
                waker();
            }
        };
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
                let last_report = Mutex::new(None::<Instant>);
                let progress_send = send.clone();
                let control = download::DownloadControl {
                    // At most ~10 progress events a second, and always the last one.
                    progress: Arc::new(move |done, total| {
                        let mut last = last_report.lock().unwrap_or_else(|e| e.into_inner());
                        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
                        if due || Some(done) == total {
                            *last = Some(Instant::now());
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

/// A comparison entry as the window shows it.
fn comparison_row(entry: &CompareEntry) -> ComparisonRow {
    match &entry.result {
        Ok(r) => ComparisonRow {
            model: r.model.clone(),
            arch: r.arch.to_string(),
            error: None,
            val_accuracy: r.val_accuracy,
            best_epoch: r.best_epoch,
            train_count: r.train_photos,
            val_count: r.val_photos,
            feature_ms_per_image: r.feature_ms_per_image,
            parameters: r.parameters,
            weights_bytes: r.weights_bytes,
            embedding_dim: r.embedding_dim,
        },
        Err(error) => ComparisonRow {
            model: entry.model.clone(),
            arch: weights::find_model(&entry.model)
                .map_or_else(|_| String::new(), |m| m.arch.to_string()),
            error: Some(error.clone()),
            val_accuracy: 0.0,
            best_epoch: 0,
            train_count: 0,
            val_count: 0,
            feature_ms_per_image: 0.0,
            parameters: 0,
            weights_bytes: 0,
            embedding_dim: 0,
        },
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

/// Makes the calling thread yield to interactive ones (nice 10). Linux only: elsewhere
/// `setpriority` would lower the whole process, window included.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
        let result = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 10)
        };
        if result != 0 {
            tracing::debug!("could not lower the model thread's priority");
        }
    }
}

fn prediction_of(c: ClassScore) -> Prediction {
    Prediction {
        index: c.index,
        label: c.label,
        prob: c.prob,
    }
}

fn epoch_row(m: &EpochMetrics) -> EpochRow {
    EpochRow {
        epoch: m.epoch,
        train_loss: m.train_loss,
        train_acc: m.train_acc,
        val_loss: m.val_loss,
        val_acc: m.val_acc,
    }
}

/// `image` shrunk to fit a `side` square, keeping its proportions.
fn thumbnail_of(image: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let scale = f64::from(side) / f64::from(w.max(h).max(1));
    let size = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(1, side);
    image::imageops::thumbnail(image, size(w), size(h))
}

/// A scanned folder as the window shows it.
fn summarise(dataset: &Dataset) -> DatasetSummary {
    DatasetSummary {
        root: dataset.root.clone(),
        layout: dataset.layout.to_string(),
        classes: dataset.classes.clone(),
        counts: dataset.class_counts(),
        skipped: dataset
            .skipped
            .iter()
            .map(|s| (s.path.clone(), s.reason.clone()))
            .collect(),
    }
}

fn head_summary(path: &std::path::Path, info: &HeadInfo) -> HeadSummary {
    let mut kind = match info.kind {
        HeadKind::Linear => "linear".to_string(),
        HeadKind::Mlp { hidden, .. } => format!("MLP {hidden}"),
    };
    if info.block.is_some() {
        kind.push_str(" + fine-tuned last block");
    }
    HeadSummary {
        path: path.to_path_buf(),
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "head".into()),
        backbone: info.backbone.clone(),
        classes: info.classes.clone(),
        kind,
        val_accuracy: info.metrics.get(info.best_epoch).map(|m| m.val_acc),
    }
}

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
