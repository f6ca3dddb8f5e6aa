//! Element-wise activations and their gradients: bias plus ReLU/ReLU6 fused in one pass over
//! a convolution's output, PyTorch's gradient rule at the bounds, hard-swish, hard-sigmoid.

use rayon::prelude::*;

use super::simd::multiversion;

/// The element-wise function after a convolution or linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

impl Activation {
    /// The clamp `[0, top]` this activation applies, if any.
    pub fn top(self) -> Option<f32> {
        match self {
            Self::Identity => None,
            Self::Relu => Some(f32::INFINITY),
            Self::Relu6 => Some(6.0),
        }
    }
}

multiversion! {
    /// `act(v + b)` over one plane.
    fn bias_activation_plane(dst: &mut [f32], b: f32, top: f32) {
        for v in dst.iter_mut() {
            *v = (*v + b).max(0.0).min(top);
        }
    }
}

multiversion! {
    /// `v + b` over one plane.
    fn bias_plane(dst: &mut [f32], b: f32) {
        for v in dst.iter_mut() {
            *v += b;
        }
    }
}

/// `out[b, c, p] = act(out[b, c, p] + bias[c])` over planes of `plane` values.
pub fn bias_activation(out: &mut [f32], bias: &[f32], plane: usize, activation: Activation) {
    let channels = bias.len();
    let top = activation.top();
    let one = |(i, dst): (usize, &mut [f32])| {
        let b = bias[i % channels];
        match top {
            None => bias_plane(dst, b),
            Some(top) => bias_activation_plane(dst, b, top),
        }
    };
    if plane == 1 {
        // A vector: one "plane" per value.
        for (i, v) in out.iter_mut().enumerate() {
            let b = bias[i % channels];
            *v = match top {
                None => *v + b,
                Some(top) => (*v + b).max(0.0).min(top),
            };
        }
    } else if out.len() < PARALLEL_MIN {
        out.chunks_mut(plane).enumerate().for_each(one);
    } else {
        out.par_chunks_mut(plane).enumerate().for_each(one);
    }
}

/// Zeroes `grad` where the activation's output `out` is at a bound (PyTorch's rule: no
/// gradient at 0 or at the top).
pub fn mask_gradient(grad: &mut [f32], out: &[f32], activation: Activation) {
    if let Some(top) = activation.top() {
        mask_outside_band(grad, out, top);
    }
}

multiversion! {
    /// Zeroes the gradients whose value (input or output of the activation: the same test)
    /// is not strictly inside `(0, top)`.
    fn mask_chunk(grad: &mut [f32], values: &[f32], top: f32) {
        for (g, &v) in grad.iter_mut().zip(values) {
            *g = if v > 0.0 && v < top { *g } else { 0.0 };
        }
    }
}

/// Below this many values an element-wise pass runs on the calling thread: waking the pool
/// costs more than it saves.
pub const PARALLEL_MIN: usize = 1 << 15;

/// The gradient rule of ReLU (`top` infinite) and ReLU6 (`top` 6), PyTorch's: no gradient at
/// 0 or at the top. `values` are the activation's inputs or outputs.
pub fn mask_outside_band(grad: &mut [f32], values: &[f32], top: f32) {
    if grad.len() < PARALLEL_MIN {
        mask_chunk(grad, values, top);
        return;
    }
    grad.par_chunks_mut(PARALLEL_MIN)
        .zip(values.par_chunks(PARALLEL_MIN))
        .for_each(|(g, v)| mask_chunk(g, v, top));
}

/// `x * relu6(x + 3) / 6`.
pub fn hard_swish(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// The derivative of [`hard_swish`] (PyTorch's: 0 below -3, `x / 3 + 1/2` up to 3, then 1).
pub fn hard_swish_slope(x: f32) -> f32 {
    if x < -3.0 {
        0.0
    } else if x <= 3.0 {
        x / 3.0 + 0.5
    } else {
        1.0
    }
}

/// `relu6(x + 3) / 6`.
pub fn hard_sigmoid(x: f32) -> f32 {
    (x + 3.0).clamp(0.0, 6.0) / 6.0
}
