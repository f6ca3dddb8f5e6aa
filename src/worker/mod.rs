//! The model worker and its protocol: the window sends [`Command`]s, one thread runs the
//! models and answers with [`Event`]s. Only plain data crosses.

pub mod protocol;
pub mod runner;

pub use protocol::{
    Analysis, AttackRequest, AttackResult, CancelToken, Command, CompareRequest, ComparisonRow,
    DatasetSummary, DreamControls, DreamGoal, DreamRequest, EpochRow, Event, HeadPredictions,
    HeadSummary, JobId, LayerMaps, Misclassified, ModelSummary, PhotoSource, Prediction, RgbaImage,
    TrainReport, TrainRequest,
};
pub use runner::{Waker, Worker, WorkerConfig};
