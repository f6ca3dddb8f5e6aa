//! Gradient loops on the input image (no UI): the objectives and steps behind "Dream class"
//! and the adversarial attack.

pub mod gradients;
