//! Gradient loops on the input image (no UI): the objectives and steps behind "Dream class",
//! DeepDream on a photo, the adversarial attack, and the layer gallery (a small dream per
//! channel, cached).

pub mod attack;
pub mod attribution;
pub mod deepdream;
pub mod dream;
pub mod examples;
pub mod fooling;
pub mod gallery;
pub mod gradients;
pub mod pipeline;
