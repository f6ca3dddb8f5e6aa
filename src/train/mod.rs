//! Transfer learning: a new classifier head on a frozen pretrained backbone.
//!
//! [`dataset`] reads labelled photos from a folder, [`split`] divides them into training and
//! validation, [`features`] computes the backbone's pooled features (cached on disk by
//! `feature_cache`), and [`head`] trains, evaluates, saves and loads the head; [`finetune`]
//! trains the backbone's last block along with it; [`pipeline`] runs the whole job on a
//! folder and [`compare`] runs it with several backbones; [`metrics`] scores a confusion matrix
//! per class and [`review`] sorts the validation photos for error analysis; [`projection`]
//! (PCA) and [`tsne`] draw the dataset map. Every front end describes a run as a
//! [`TrainRequest`] and follows it through a [`TrainObserver`] ([`observe`]).

pub mod compare;
pub mod dataset;
mod feature_cache;
pub mod features;
pub mod finetune;
pub mod head;
pub mod metrics;
pub mod observe;
pub mod pipeline;
pub mod projection;
pub mod request;
pub mod review;
pub mod split;
pub mod tsne;

pub use observe::{Silent, TrainEvent, TrainObserver};
pub use request::TrainRequest;
