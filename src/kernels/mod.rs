//! CPU kernels in f32 for a frozen network: plain slices in, plain vectors out.
//!
//! candle's CPU convolution transposes the input to NHWC with scalar loops, splits a depthwise
//! convolution into one convolution per channel, and its backward runs a naive transposed
//! convolution that also computes kernel gradients nobody asked for; its matmul backward
//! likewise builds the (huge, for VGG's fc6) weight gradient. These kernels compute what a
//! pretrained, frozen backbone needs: each layer's forward pass and its *input* gradient.
//! [`crate::model::program`] strings them together into one differentiable candle op.
//!
//! Rooms: [`simd`] (run-time AVX-512/AVX2 dispatch), [`geometry`] (padding, output sizes),
//! [`gemm`] (checked matrix products), [`conv`] (im2col + gemm), [`winograd`] (3x3 stride-1
//! convolutions), [`depthwise`], [`pool`], [`activation`], [`squeeze_excite`]. Nothing here
//! knows about tensors or networks, so nothing here imports from [`crate::model`].

pub mod activation;
pub mod conv;
pub mod depthwise;
pub mod gemm;
pub mod geometry;
pub mod pool;
pub(crate) mod simd;
pub mod squeeze_excite;
pub mod winograd;

pub use activation::Activation;
pub use geometry::{Geometry, Padding};
pub use pool::PoolWindow;
