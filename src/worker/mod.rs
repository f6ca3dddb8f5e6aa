//! The model worker and its protocol: the window sends [`Command`]s, one thread runs the
//! models and answers with [`Event`]s. Only plain data crosses.

pub mod protocol;
pub mod runner;

pub use protocol::{
    Analysis, AttackRequest, AttackResult, CancelToken, Command, DreamControls, DreamGoal,
    DreamRequest, Event, JobId, LayerMaps, ModelSummary, PhotoSource, Prediction, RgbaImage,
};
pub use runner::{Waker, Worker, WorkerConfig};
