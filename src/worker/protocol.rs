//! What the window and the model worker say to each other: [`Command`]s (UI → worker) and
//! [`Event`]s (worker → UI), plain data only (ids, strings, numbers, RGBA bytes), so neither
//! side sees the other's types: no egui here, no Candle there. Where the library already has
//! a plain-data type (a class score, an epoch's metrics, an attack's, a dream's or a DeepDream's
//! settings, a tap's kind), the protocol uses it, re-exported here so the window needs no other path.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

pub use crate::device::DeviceChoice;
pub use crate::explain::attack::AttackSettings;
pub use crate::explain::attribution::explanation::{CausalScore, Explanation};
pub use crate::explain::attribution::{Attribution, Method, Settings as AttributionSettings};
pub use crate::explain::deepdream::DeepDreamSettings;
pub use crate::explain::dream::{DreamSettings, DreamTarget, Parameterisation, MAX_BATCH};
pub use crate::explain::examples::{ChannelExample, ChannelExamples, ExampleSettings};
pub use crate::explain::fooling::{Fooling, LayerChange};
pub use crate::explain::gallery::GallerySettings;
pub use crate::export::ExportReport;
pub use crate::inference::ClassScore;
pub use crate::model::receptive::ReceptiveField;
pub use crate::model::{Arch, TapKind};
pub use crate::train::compare::CompareRow;
pub use crate::train::dataset::Layout;
pub use crate::train::head::{EpochMetrics, HeadKind};
pub use crate::train::review::ValPrediction;
pub use crate::train::tsne::{Tsne, TsneOptions, MIN_POINTS as TSNE_MIN_POINTS};
pub use crate::train::TrainRequest;
use crate::vision::atlas::{Atlas, ChannelStats};

/// Names one job; the UI makes a new one per request and ignores events of jobs it no longer
/// shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job {}", self.0)
    }
}

/// Set by the UI to stop a job; a busy worker never reads the channel, so the job itself
/// checks its token between steps.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself, for code that takes an `Arc<AtomicBool>` (downloads).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// Where a photo comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PhotoSource {
    /// A file on disk (opened or dropped).
    File(PathBuf),
    /// Encoded image bytes (the bundled photo, a dropped file without a path).
    Encoded { name: String, bytes: Arc<[u8]> },
    /// Decoded RGBA8 pixels (pasted from the clipboard), `[height * width * 4]`.
    Pixels {
        name: String,
        width: usize,
        height: usize,
        rgba: Arc<[u8]>,
    },
}

impl PhotoSource {
    /// A short name for messages and the window ("chelsea.png", "clipboard image").
    pub fn name(&self) -> String {
        match self {
            Self::File(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            Self::Encoded { name, .. } | Self::Pixels { name, .. } => name.clone(),
        }
    }
}

/// A dream as the window asks for it.
#[derive(Debug, Clone)]
pub struct DreamRequest {
    /// What to dream and how; its `start` is noise unless `start_photo` is given (the window
    /// does not decode photos: the worker does, and starts from it).
    pub settings: DreamSettings,
    /// Start from this photo instead of noise.
    pub start_photo: Option<PhotoSource>,
}

/// A running dream's live controls, shared by the window and the worker.
#[derive(Debug, Clone, Default)]
pub struct DreamControls {
    tv_weight: Arc<AtomicU32>,
    paused: Arc<AtomicBool>,
}

impl DreamControls {
    pub fn new(tv_weight: f32) -> Self {
        let c = Self::default();
        c.set_tv_weight(tv_weight);
        c
    }

    /// Changes the total-variation weight from the next step on.
    pub fn set_tv_weight(&self, weight: f32) {
        self.tv_weight.store(weight.to_bits(), Ordering::Relaxed);
    }

    pub fn tv_weight(&self) -> f32 {
        f32::from_bits(self.tv_weight.load(Ordering::Relaxed))
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
}

/// A DeepDream of a photo (the worker decodes it and dreams it at its working size).
#[derive(Debug, Clone, PartialEq)]
pub struct DeepDreamRequest {
    pub photo: PhotoSource,
    pub settings: DeepDreamSettings,
}

/// An adversarial attack on a photo.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackRequest {
    pub photo: PhotoSource,
    pub settings: AttackSettings,
}

/// Attribution maps of a photo: one method, or several side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainRequest {
    pub photo: PhotoSource,
    /// The methods to run, in this order, each answered as it finishes.
    pub methods: Vec<Method>,
    /// The class (ImageNet's, or the head's with `head`); `None`: the top class.
    pub class: Option<usize>,
    /// Explain a class of the head in use rather than an ImageNet class.
    pub head: bool,
    pub settings: AttributionSettings,
    /// Deletion and insertion steps (0: none).
    pub causal_steps: usize,
}

/// A finished attack.
#[derive(Debug, Clone)]
pub struct AttackResult {
    pub original: RgbaImage,
    pub adversarial: RgbaImage,
    /// What the network sees of each (its preprocessing), where the maps of `fooling` lie.
    pub original_view: RgbaImage,
    pub adversarial_view: RgbaImage,
    /// Inside the network: each layer's change and the Grad-CAMs of source and target
    /// (`None` when it could not be computed; the attack itself stands).
    pub fooling: Option<Fooling>,
    /// The change, amplified to fill the 8-bit range around mid-grey.
    pub perturbation: RgbaImage,
    pub source: usize,
    pub target: Option<usize>,
    pub top_class: usize,
    /// The top class is the target (untargeted: not the source).
    pub success: bool,
    /// And with the confidence the settings asked for.
    pub reached: bool,
    pub steps: usize,
    pub source_prob: f32,
    pub target_prob: f32,
    pub linf: u8,
    pub l2: f64,
    pub psnr_db: f64,
    pub ms_per_step: f64,
}

/// A folder of labelled photos as scanned (names and sizes only, nothing decoded yet).
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    pub root: PathBuf,
    pub layout: Layout,
    pub classes: Vec<String>,
    /// Photos per class, `[classes]`.
    pub counts: Vec<usize>,
    /// Files left out at the scan (empty, not images), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Compare backbones on a folder: `train`'s head and split with each of `models` (its
/// `output` and fine-tuning are not used: nothing is saved).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRequest {
    pub models: Vec<String>,
    pub train: TrainRequest,
}

/// Why one backbone of a comparison could not run.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareFailure {
    pub model: String,
    /// Its architecture, when the catalogue knows the model.
    pub arch: Option<Arch>,
    pub error: String,
}

/// One backbone's result in a comparison: its numbers, or why it could not run.
pub type ComparisonRow = Result<CompareRow, CompareFailure>;

/// A small version of a photo for a gallery (at most [`THUMBNAIL_SIDE`] pixels a side).
#[derive(Debug, Clone)]
pub struct Thumbnail {
    pub path: PathBuf,
    pub image: RgbaImage,
}

/// A head class's Grad-CAM over a photo.
#[derive(Debug, Clone)]
pub struct ClassMap {
    /// The head's class.
    pub class: usize,
    /// The head's probability of it on the photo.
    pub probability: f32,
    /// The map over the photo as the network sees it (its preprocessing).
    pub overlay: RgbaImage,
}

/// A photo on the dataset map (its features' two principal components).
#[derive(Debug, Clone, PartialEq)]
pub struct MapPoint {
    pub path: PathBuf,
    pub truth: usize,
    pub xy: [f32; 2],
    /// The head's class for a validation photo; `None` for a training photo.
    pub predicted: Option<usize>,
}

/// The longest side of a [`Thumbnail`].
pub const THUMBNAIL_SIDE: u32 = 96;

/// A finished training.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub classes: Vec<String>,
    /// `[true][predicted]` counts on the validation photos.
    pub confusion: Vec<Vec<usize>>,
    /// Validation accuracy of the kept (best) epoch.
    pub val_accuracy: f32,
    /// The kept epoch's number (1-based).
    pub best_epoch: usize,
    pub epochs: Vec<EpochMetrics>,
    /// Every validation photo's prediction and probabilities (the confusion matrix's cells,
    /// the top losses).
    pub predictions: Vec<ValPrediction>,
    /// Thumbnails of the misclassified photos with the highest loss (the first of the top
    /// losses); others come on request ([`Command::Thumbnails`]).
    pub thumbnails: Vec<Thumbnail>,
    /// Every photo that decoded on the 2-D PCA map of its features.
    pub map: Vec<MapPoint>,
    pub train_count: usize,
    pub val_count: usize,
    /// Photos that could not be decoded (skipped), with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    pub features_computed: usize,
    pub features_from_cache: usize,
    /// Feature extraction speed, decoding included (0 when everything came from the cache).
    pub images_per_s: f64,
    pub saved_to: PathBuf,
}

/// A trained head the worker holds and applies to every analysed photo.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadSummary {
    pub path: PathBuf,
    /// The weights file's name without extension.
    pub name: String,
    /// The model whose features it takes.
    pub backbone: String,
    pub classes: Vec<String>,
    pub kind: HeadKind,
    /// The backbone's last block was fine-tuned with it (and is saved with it).
    pub fine_tuned: bool,
    pub val_accuracy: Option<f32>,
}

/// A trained head's view of a photo.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadPredictions {
    pub head: String,
    /// Most likely first (at most five); `index` is the head's class index.
    pub top: Vec<ClassScore>,
}

/// A request to the worker.
#[derive(Debug, Clone)]
pub enum Command {
    /// Load (or switch to) a model of the catalogue on a device. Answered by
    /// [`Event::ModelLoaded`] or [`Event::Failed`].
    LoadModel {
        job: JobId,
        model: String,
        device: DeviceChoice,
    },
    /// Decode a photo and run the loaded model on it: predictions and every layer's maps.
    /// Answered by [`Event::Analysed`], [`Event::Cancelled`] or [`Event::Failed`].
    Analyse {
        job: JobId,
        cancel: CancelToken,
        photo: PhotoSource,
    },
    /// Download a model's weights into the weights folder (on a thread of its own, so the
    /// worker stays free). Answered by [`Event::DownloadProgress`]s, then
    /// [`Event::Downloaded`], [`Event::Cancelled`] or [`Event::Failed`].
    Download {
        job: JobId,
        cancel: CancelToken,
        model: String,
    },
    /// Dream with the loaded model. Answered by [`Event::DreamStep`]s, then
    /// [`Event::DreamFinished`], [`Event::Cancelled`] or [`Event::Failed`]. Stopping keeps the
    /// image so far (it finishes); cancelling before the first step answers `Cancelled`.
    Dream {
        job: JobId,
        cancel: CancelToken,
        request: DreamRequest,
        controls: DreamControls,
    },
    /// DeepDream a photo. Answered by [`Event::DeepDreamStep`]s, then
    /// [`Event::DeepDreamFinished`], [`Event::Cancelled`] or [`Event::Failed`]. Stopping keeps
    /// the image so far (it finishes); cancelling before the first step answers `Cancelled`.
    DeepDream {
        job: JobId,
        cancel: CancelToken,
        request: DeepDreamRequest,
    },
    /// Dream every channel of `layer` (or the first `settings.limit`) small, with the loaded
    /// model, reading and filling the gallery cache. Answered by [`Event::GalleryProgress`]es
    /// (the cached tiles first, then each batch's as it finishes), then
    /// [`Event::GalleryFinished`], [`Event::Cancelled`] or [`Event::Failed`]; what finished
    /// before a cancel stays cached.
    DreamGallery {
        job: JobId,
        cancel: CancelToken,
        layer: String,
        settings: GallerySettings,
    },
    /// The photos of `folder` (one the Train tab reads) that excite each channel of `layer`
    /// most, cropped around the strongest cell, with the loaded model, reading and filling the
    /// examples cache. Answered by [`Event::ExamplesProgress`]es, then
    /// [`Event::ExamplesFinished`], [`Event::Cancelled`] or [`Event::Failed`].
    ChannelExamples {
        job: JobId,
        cancel: CancelToken,
        folder: PathBuf,
        layer: String,
        settings: ExampleSettings,
    },
    /// Attack a photo. Answered by [`Event::AttackStep`]s, then [`Event::AttackFinished`],
    /// [`Event::Cancelled`] or [`Event::Failed`].
    Attack {
        job: JobId,
        cancel: CancelToken,
        request: AttackRequest,
    },
    /// Attribution maps of a photo with the loaded model (and head). Answered by
    /// [`Event::ExplainProgress`]es and an [`Event::Explained`] per method, then
    /// [`Event::ExplainFinished`], [`Event::Cancelled`] or [`Event::Failed`].
    Explain {
        job: JobId,
        cancel: CancelToken,
        request: Box<ExplainRequest>,
    },
    /// Read a training folder's classes and counts. Answered by [`Event::FolderScanned`] or
    /// [`Event::Failed`].
    ScanFolder {
        job: JobId,
        dir: PathBuf,
        cats_vs_dogs: bool,
    },
    /// Train a head on a folder with the loaded model, save it and use it. Answered by
    /// [`Event::TrainScanned`], [`Event::TrainFeatures`], [`Event::TrainStep`]s and
    /// [`Event::TrainEpoch`]s, then [`Event::TrainFinished`], [`Event::Cancelled`] or
    /// [`Event::Failed`].
    Train {
        job: JobId,
        cancel: CancelToken,
        request: Box<TrainRequest>,
    },
    /// Train the same head with several backbones (each loaded for the job, the window's model
    /// stays). Answered by [`Event::CompareProgress`]s, [`Event::CompareRow`]s, then
    /// [`Event::CompareFinished`], [`Event::Cancelled`] or [`Event::Failed`].
    Compare {
        job: JobId,
        cancel: CancelToken,
        request: Box<CompareRequest>,
    },
    /// Load a saved head and use it for every analysed photo. Answered by
    /// [`Event::HeadLoaded`] or [`Event::Failed`].
    LoadHead { job: JobId, path: PathBuf },
    /// Small versions of photos for a gallery. Answered by an [`Event::Thumbnail`] per photo
    /// that decodes (others are skipped), then [`Event::ThumbnailsFinished`] or
    /// [`Event::Cancelled`].
    Thumbnails {
        job: JobId,
        cancel: CancelToken,
        paths: Vec<PathBuf>,
    },
    /// Grad-CAM of a photo for several of the head's classes (a mistake's true and predicted
    /// class), drawn over the photo as the network sees it. Answered by
    /// [`Event::ClassMaps`], [`Event::Cancelled`] or [`Event::Failed`].
    ClassMaps {
        job: JobId,
        cancel: CancelToken,
        path: PathBuf,
        classes: Vec<usize>,
    },
    /// Export the head in use with the loaded model's backbone (and its fine-tuned block) to
    /// `path`: `.onnx` or `.safetensors` with timm's names. Answered by [`Event::Exported`] or
    /// [`Event::Failed`].
    Export { job: JobId, path: PathBuf },
    /// A t-SNE map of the last training's features (the points of [`TrainReport::map`], in
    /// order), on a thread of its own. Answered by [`Event::TsneProgress`]es (the forming map),
    /// then [`Event::TsneFinished`], [`Event::Cancelled`] or [`Event::Failed`].
    Tsne {
        job: JobId,
        cancel: CancelToken,
        options: TsneOptions,
    },
    /// Stop the worker thread.
    Shutdown,
}

/// The loaded model, as the window shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub name: String,
    pub arch: String,
    /// "CPU", "CUDA GPU 0", ...
    pub device: String,
    pub weights: PathBuf,
    /// Input side in pixels (224).
    pub input_size: u32,
    /// What fine-tuning trains ("conv5_1 to conv5_3", ...); `None` where the model has no
    /// block that can be fine-tuned.
    pub last_block: Option<String>,
}

/// An RGBA8 image, `[height * width * 4]`.
#[derive(Debug, Clone)]
pub struct RgbaImage {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

/// One tapped layer's activations for the photo.
#[derive(Debug, Clone)]
pub struct LayerMaps {
    pub name: String,
    pub kind: TapKind,
    /// One image's activation shape: `[C, H, W]`, or `[F]` for vectors.
    pub shape: Vec<usize>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `[channels * height * width]`, channel-major.
    pub values: Vec<f32>,
    /// `[channels]`.
    pub stats: Vec<ChannelStats>,
    pub atlas: Atlas,
    /// What one cell sees of the network's view, where the architecture tells.
    pub receptive_field: Option<ReceptiveField>,
}

impl LayerMaps {
    /// The activation at (`channel`, `y`, `x`).
    pub fn value(&self, channel: usize, y: usize, x: usize) -> Option<f32> {
        (channel < self.channels && y < self.height && x < self.width)
            .then(|| self.values[(channel * self.height + y) * self.width + x])
    }

    /// Whether this is a vector layer (fully connected, logits).
    pub fn is_vector(&self) -> bool {
        self.height * self.width == 1
    }

    /// `64×224×224`, `4096`.
    pub fn shape_text(&self) -> String {
        self.shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("×")
    }
}

/// What the model made of one photo.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub photo_name: String,
    /// The photo's size before preprocessing.
    pub original_width: u32,
    pub original_height: u32,
    /// What the network sees: the resized, centre-cropped photo (`input_size` square).
    pub network_view: RgbaImage,
    /// The five most likely classes, most likely first.
    pub top5: Vec<ClassScore>,
    /// Every tap in network order, the logits last.
    pub layers: Vec<LayerMaps>,
    /// The trained head's classes for the photo, when one is in use.
    pub head: Option<HeadPredictions>,
    /// Why the head in use could not classify the photo (trained on another backbone, ...).
    pub head_note: Option<String>,
    /// Time of the forward pass alone, and of the whole job (decode to atlases).
    pub forward_ms: f64,
    pub total_ms: f64,
}

/// A message from the worker.
#[derive(Debug, Clone)]
pub enum Event {
    ModelLoaded {
        job: JobId,
        model: ModelSummary,
    },
    /// Model `index` (of `total`) of a comparison is at `stage` ("features 120/400", ...),
    /// `fraction` of its way.
    CompareProgress {
        job: JobId,
        model: String,
        index: usize,
        total: usize,
        stage: String,
        fraction: f32,
    },
    CompareRow {
        job: JobId,
        row: ComparisonRow,
    },
    CompareFinished {
        job: JobId,
        rows: Vec<ComparisonRow>,
    },
    Analysed {
        job: JobId,
        analysis: Box<Analysis>,
    },
    DownloadProgress {
        job: JobId,
        done: u64,
        total: Option<u64>,
    },
    Downloaded {
        job: JobId,
        model: String,
        path: PathBuf,
    },
    /// One dream step; `images` (one per member) come at most ~20 times a second (and with
    /// the last step).
    DreamStep {
        job: JobId,
        step: usize,
        /// Each member's probability of its class (else of its top class).
        probs: Vec<f32>,
        /// The members' mean score.
        score: f32,
        penalty: f32,
        /// Lucid's diversity term (mean Gram similarity to the other members), 0 for one.
        similarity: f32,
        images: Option<Vec<RgbaImage>>,
    },
    DreamFinished {
        job: JobId,
        images: Vec<RgbaImage>,
        steps: usize,
        /// Each image's probability when opened like a photo.
        probs: Vec<f32>,
        ms_per_step: f64,
    },
    /// One DeepDream step: `step` of `steps` in octave `octave` (0 the smallest) of
    /// `octaves`; `image` (at the octave's size) comes at most ~20 times a second, and with
    /// the last step.
    DeepDreamStep {
        job: JobId,
        octave: usize,
        octaves: usize,
        step: usize,
        steps: usize,
        /// The mean squared activation this step saw.
        objective: f32,
        image: Option<RgbaImage>,
    },
    /// The dreamed photo at its working size (a stopped one: with the detail so far).
    DeepDreamFinished {
        job: JobId,
        image: RgbaImage,
        steps: usize,
        stopped: bool,
        /// The objective of the photo, and of the dreamed image.
        objective_start: f32,
        objective_end: f32,
        ms_per_step: f64,
    },
    /// A gallery's progress: `done` of `total` channels ready, `fraction` of the work done
    /// (steps of the running batch included), and the tiles ready since the last event as
    /// `(channel, image)`. Step-only events come at most ~20 times a second.
    GalleryProgress {
        job: JobId,
        done: usize,
        total: usize,
        fraction: f32,
        tiles: Vec<(usize, RgbaImage)>,
    },
    /// A gallery is complete: `channels` of the layer's `layer_channels`, `cached` of them read
    /// from the cache and `computed` dreamed now, in `seconds`.
    GalleryFinished {
        job: JobId,
        layer: String,
        channels: usize,
        layer_channels: usize,
        cached: usize,
        computed: usize,
        seconds: f64,
    },
    /// A dataset-examples search: `done` of the folder's `total` photos looked at.
    ExamplesProgress {
        job: JobId,
        done: usize,
        total: usize,
    },
    /// A layer's dataset examples, complete.
    ExamplesFinished {
        job: JobId,
        examples: Box<ChannelExamples>,
    },
    AttackStep {
        job: JobId,
        step: usize,
        source_prob: f32,
        target_prob: f32,
        top_class: usize,
    },
    AttackFinished {
        job: JobId,
        result: Box<AttackResult>,
    },
    /// Method `index` of `total` is at `stage` ("map", "deletion", "insertion"), `fraction`
    /// of the whole job done (at most ~20 a second, and each stage's last).
    ExplainProgress {
        job: JobId,
        index: usize,
        total: usize,
        stage: String,
        fraction: f32,
    },
    /// Method `index`'s map, with its scores.
    Explained {
        job: JobId,
        index: usize,
        explanation: Box<Explanation>,
    },
    ExplainFinished {
        job: JobId,
    },
    FolderScanned {
        job: JobId,
        summary: DatasetSummary,
    },
    TrainScanned {
        job: JobId,
        summary: DatasetSummary,
    },
    /// Feature extraction progress (at most ~20 a second, and the last: see
    /// [`crate::progress::WINDOW_INTERVAL`]).
    TrainFeatures {
        job: JobId,
        done: usize,
        total: usize,
        cached: usize,
        images_per_s: f32,
        eta_s: f32,
    },
    TrainStep {
        job: JobId,
        step: usize,
        loss: f32,
    },
    TrainEpoch {
        job: JobId,
        row: EpochMetrics,
    },
    TrainFinished {
        job: JobId,
        report: Box<TrainReport>,
        head: HeadSummary,
    },
    HeadLoaded {
        job: JobId,
        head: HeadSummary,
    },
    Thumbnail {
        job: JobId,
        thumbnail: Thumbnail,
    },
    ThumbnailsFinished {
        job: JobId,
    },
    ClassMaps {
        job: JobId,
        path: PathBuf,
        /// One per requested class, in order.
        maps: Vec<ClassMap>,
    },
    Exported {
        job: JobId,
        report: ExportReport,
    },
    /// The t-SNE map after `epoch` of `epochs`, about ten times a second (and after the last).
    TsneProgress {
        job: JobId,
        epoch: usize,
        epochs: usize,
        /// One per point of [`TrainReport::map`], in order.
        points: Vec<[f32; 2]>,
    },
    TsneFinished {
        job: JobId,
        map: Tsne,
    },
    Cancelled {
        job: JobId,
    },
    /// The job failed; `error` is the whole chain of causes, ready to show.
    Failed {
        job: JobId,
        error: String,
    },
}

impl Event {
    /// The job this event answers.
    pub fn job(&self) -> JobId {
        match self {
            Self::ModelLoaded { job, .. }
            | Self::CompareProgress { job, .. }
            | Self::CompareRow { job, .. }
            | Self::CompareFinished { job, .. }
            | Self::Analysed { job, .. }
            | Self::DownloadProgress { job, .. }
            | Self::Downloaded { job, .. }
            | Self::DreamStep { job, .. }
            | Self::DreamFinished { job, .. }
            | Self::DeepDreamStep { job, .. }
            | Self::DeepDreamFinished { job, .. }
            | Self::GalleryProgress { job, .. }
            | Self::GalleryFinished { job, .. }
            | Self::ExamplesProgress { job, .. }
            | Self::ExamplesFinished { job, .. }
            | Self::AttackStep { job, .. }
            | Self::AttackFinished { job, .. }
            | Self::ExplainProgress { job, .. }
            | Self::Explained { job, .. }
            | Self::ExplainFinished { job }
            | Self::FolderScanned { job, .. }
            | Self::TrainScanned { job, .. }
            | Self::TrainFeatures { job, .. }
            | Self::TrainStep { job, .. }
            | Self::TrainEpoch { job, .. }
            | Self::TrainFinished { job, .. }
            | Self::Thumbnail { job, .. }
            | Self::ThumbnailsFinished { job }
            | Self::ClassMaps { job, .. }
            | Self::Exported { job, .. }
            | Self::TsneProgress { job, .. }
            | Self::TsneFinished { job, .. }
            | Self::HeadLoaded { job, .. }
            | Self::Cancelled { job }
            | Self::Failed { job, .. } => *job,
        }
    }
}
