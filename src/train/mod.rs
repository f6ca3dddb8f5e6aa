//! Transfer learning: a new classifier head on a frozen pretrained backbone.
//!
//! [`dataset`] reads labelled photos from a folder, [`split`] divides them into training and
//! validation, [`features`] computes (and caches) the backbone's pooled features, and
//! [`head`] trains, evaluates, saves and loads the head; [`finetune`] trains the backbone's
//! last block along with it; [`compare`] runs the same training with several backbones.

pub mod compare;
pub mod dataset;
pub mod features;
pub mod finetune;
pub mod head;
pub mod pipeline;
pub mod split;
