//! The model worker and its protocol: the window sends [`Command`]s, one thread runs the
//! models and answers with [`Event`]s. Only plain data crosses.

pub mod protocol;
pub mod runner;

pub use protocol::{
    Analysis, Arch, AttackRequest, AttackResult, AttackSettings, Attribution, AttributionSettings,
    CancelToken, CausalScore, ChannelExample, ChannelExamples, ClassMap, ClassScore, Command,
    CompareFailure, CompareRequest, CompareRow, ComparisonRow, DatasetSummary, DeepDreamRequest,
    DeepDreamSettings, DeviceChoice, DreamControls, DreamRequest, DreamSettings, DreamTarget,
    EpochMetrics, Event, ExampleSettings, ExplainRequest, Explanation, Fooling, GallerySettings,
    HeadKind, HeadPredictions, HeadSummary, JobId, LayerChange, LayerMaps, Layout, MapPoint,
    Method, ModelSummary, Parameterisation, PhotoSource, ReceptiveField, RgbaImage, TapKind,
    Thumbnail, TrainReport, TrainRequest, Tsne, TsneOptions, ValPrediction, MAX_BATCH,
    THUMBNAIL_SIDE, TSNE_MIN_POINTS,
};
pub use runner::{Waker, Worker, WorkerConfig};
