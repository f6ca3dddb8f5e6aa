//! Gradient loops on the input image (no UI): the objectives and steps behind "Dream class",
//! DeepDream on a photo and the adversarial attack.

pub mod attack;
pub mod deepdream;
pub mod dream;
pub mod gradients;
pub mod pipeline;
