//! The last step of Lucid's image, as one CPU op: the decorrelated colour planes mixed into RGB
//! and squashed by a sigmoid, `rgb = sigmoid(M · x)` per pixel, with `M` the 3x3 colour mix
//! (already divided by Lucid's magic factor). Through candle's ops this is a broadcast matrix
//! product, a division and a sigmoid, each with its own buffers forward and backward; here it
//! is one pass over the pixels each way.
//!
//! Backward: `g' = g ⊙ y ⊙ (1 - y)` (the sigmoid's derivative from its output), then
//! `dx = Mᵀ · g'`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The op on `[B, 3, H, W]` f32 planes on the CPU.
#[derive(Clone, Copy)]
pub(super) struct ColourSigmoid {
    mix: [[f32; 3]; 3],
}

impl ColourSigmoid {
    /// `mix[c][j]`: the weight of decorrelated plane `j` in output channel `c`.
    pub(super) fn new(mix: [[f32; 3]; 3]) -> Self {
        Self { mix }
    }

    /// Applies the op to `planes` `[B, 3, H, W]`.
    pub(super) fn apply(self, planes: &Tensor) -> Result<Tensor> {
        planes.contiguous()?.apply_op1(self)
    }
}

/// `1 / (1 + e^-x)`, as candle's sigmoid computes it, with `libm`'s `expf` (the same bits on
/// every OS; the platform's differs in the last bit between glibc and Windows).
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

impl CustomOp1 for ColourSigmoid {
    fn name(&self) -> &'static str {
        "colour-sigmoid"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims();
        let &[_, 3, h, w] = dims else {
            candle_core::bail!("colour-sigmoid needs [B, 3, H, W], got {dims:?}");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("colour-sigmoid needs a contiguous input");
        };
        let input = &storage.as_slice::<f32>()?[start..end];
        let plane = h * w;
        let mut out = vec![0f32; input.len()];
        let m = &self.mix;
        out.par_chunks_mut(3 * plane)
            .zip(input.par_chunks(3 * plane))
            .for_each(|(o, x)| {
                let (x0, x1, x2) = (&x[..plane], &x[plane..2 * plane], &x[2 * plane..]);
                for (c, oc) in o.chunks_mut(plane).enumerate() {
                    let r = m[c];
                    for (i, y) in oc.iter_mut().enumerate() {
                        *y = sigmoid(r[0] * x0[i] + r[1] * x1[i] + r[2] * x2[i]);
                    }
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = res.dims4()?;
        let plane = h * w;
        let y: Vec<f32> = res.flatten_all()?.to_vec1()?;
        let g: Vec<f32> = grad_res.flatten_all()?.to_vec1()?;
        let mut out = vec![0f32; y.len()];
        let m = &self.mix;
        out.par_chunks_mut(3 * plane)
            .zip(y.par_chunks(3 * plane).zip(g.par_chunks(3 * plane)))
            .for_each(|(o, (y, g))| {
                for i in 0..plane {
                    let d = [0, 1, 2].map(|c| {
                        let yc = y[c * plane + i];
                        g[c * plane + i] * yc * (1.0 - yc)
                    });
                    for (j, oj) in o.chunks_mut(plane).enumerate() {
                        oj[i] = m[0][j] * d[0] + m[1][j] * d[1] + m[2][j] * d[2];
                    }
                }
            });
        Ok(Some(Tensor::from_vec(out, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::ColourSigmoid;
    use crate::explain::dream::test_support::value_and_gradient;

    #[test]
    fn the_op_is_candles_mix_and_sigmoid_forward_and_backward() {
        let mix = [[0.56, 0.19, 0.04], [0.58, 0.0, -0.11], [0.58, -0.19, 0.06]];
        let init = Tensor::randn(0f32, 2f32, (2, 3, 5, 7), &Device::Cpu).unwrap();
        let upstream = Tensor::randn(0f32, 1f32, (2, 3, 5, 7), &Device::Cpu).unwrap();
        let run = |op: bool| {
            value_and_gradient(&init, &upstream, |x| {
                if op {
                    return ColourSigmoid::new(mix).apply(x).unwrap();
                }
                let flat: Vec<f32> = mix.iter().flatten().copied().collect();
                let m = Tensor::from_vec(flat, (3, 3), &Device::Cpu).unwrap();
                let mixed = m
                    .broadcast_matmul(&x.reshape((2, 3, 35)).unwrap())
                    .unwrap()
                    .reshape((2, 3, 5, 7))
                    .unwrap();
                candle_nn::ops::sigmoid(&mixed).unwrap()
            })
        };
        let ((a, ga), (b, gb)) = (run(true), run(false));
        let err = |x: &Tensor, y: &Tensor| {
            let d = (x - y).unwrap().abs().unwrap().max_all().unwrap();
            d.to_scalar::<f32>().unwrap()
        };
        assert!(err(&a, &b) < 1e-6, "values {}", err(&a, &b));
        assert!(err(&ga, &gb) < 1e-6, "gradients {}", err(&ga, &gb));
    }
}
