//! Gradient loops on the input image (no UI): the objectives and steps behind "Dream class"
//! and the adversarial attack.

pub mod attack;
pub mod dream;
pub mod gradients;
pub mod pipeline;
