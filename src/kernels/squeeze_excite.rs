//! Squeeze-and-excitation (Hu et al. 2018, <https://arxiv.org/abs/1709.01507>; MobileNetV3's
//! variant): each channel scaled by `hard_sigmoid(expand(relu(reduce(mean over space))))`,
//! forward and input gradient, one image per thread.

use candle_core::Result;
use rayon::prelude::*;

use super::activation::hard_sigmoid;

/// A squeeze-and-excitation step's weights as plain vectors.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    /// `[R, C]`, `[R]`, `[C, R]`, `[C]`.
    reduce_w: Vec<f32>,
    reduce_b: Vec<f32>,
    expand_w: Vec<f32>,
    expand_b: Vec<f32>,
    c: usize,
    r: usize,
}

/// One image's squeeze-and-excitation intermediates.
struct Excitation {
    /// Hidden activations after ReLU `[R]`, gate inputs `[C]`.
    hidden: Vec<f32>,
    gate_in: Vec<f32>,
}

impl SqueezeExcite {
    /// The weights `[R, C]`, `[R]`, `[C, R]`, `[C]`, checked against each other.
    pub fn new(
        (reduce_w, reduce_b): (Vec<f32>, Vec<f32>),
        (expand_w, expand_b): (Vec<f32>, Vec<f32>),
    ) -> Result<Self> {
        let (r, c) = (reduce_b.len(), expand_b.len());
        if reduce_w.len() != r * c || expand_w.len() != c * r {
            candle_core::bail!(
                "squeeze-excite weights of {} and {} values for {c} channels reduced to {r}",
                reduce_w.len(),
                expand_w.len()
            );
        }
        Ok(Self {
            reduce_w,
            reduce_b,
            expand_w,
            expand_b,
            c,
            r,
        })
    }

    /// Channels of the activation it scales.
    pub fn channels(&self) -> usize {
        self.c
    }

    fn excite(&self, image: &[f32], plane: usize) -> Excitation {
        let mean: Vec<f32> = image
            .chunks(plane)
            .map(|p| p.iter().sum::<f32>() / plane as f32)
            .collect();
        let hidden: Vec<f32> = (0..self.r)
            .map(|j| {
                let row = &self.reduce_w[j * self.c..(j + 1) * self.c];
                let z: f32 = row.iter().zip(&mean).map(|(w, m)| w * m).sum();
                (z + self.reduce_b[j]).max(0.0)
            })
            .collect();
        let gate_in: Vec<f32> = (0..self.c)
            .map(|k| {
                let row = &self.expand_w[k * self.r..(k + 1) * self.r];
                let z: f32 = row.iter().zip(&hidden).map(|(w, h)| w * h).sum();
                z + self.expand_b[k]
            })
            .collect();
        Excitation { hidden, gate_in }
    }

    /// `[B, C, plane]` -> the same, each channel scaled by its gate.
    pub fn forward(&self, x: &[f32], batch: usize, plane: usize) -> Vec<f32> {
        let mut out = x.to_vec();
        let image_len = self.c * plane;
        out.par_chunks_mut(image_len.max(1))
            .take(batch)
            .for_each(|image| {
                let e = self.excite(image, plane);
                for (p, z) in image.chunks_mut(plane).zip(&e.gate_in) {
                    let s = hard_sigmoid(*z);
                    p.iter_mut().for_each(|v| *v *= s);
                }
            });
        out
    }

    /// The input gradient for the output gradient `grad`, both `[B, C, plane]`.
    pub fn backward(&self, x: &[f32], grad: &[f32], batch: usize, plane: usize) -> Vec<f32> {
        let image_len = self.c * plane;
        let mut out = vec![0f32; batch * image_len];
        out.par_chunks_mut(image_len.max(1))
            .enumerate()
            .for_each(|(b, dst)| {
                let image = &x[b * image_len..(b + 1) * image_len];
                let g = &grad[b * image_len..(b + 1) * image_len];
                let e = self.excite(image, plane);
                // Through the gate: d(gate input) per channel.
                let d_gate: Vec<f32> = (0..self.c)
                    .map(|k| {
                        let z = e.gate_in[k];
                        if z > -3.0 && z < 3.0 {
                            let gx = &g[k * plane..(k + 1) * plane];
                            let xs = &image[k * plane..(k + 1) * plane];
                            gx.iter().zip(xs).map(|(a, b)| a * b).sum::<f32>() / 6.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mut d_hidden = vec![0f32; self.r];
                for (k, dz) in d_gate.iter().enumerate() {
                    if *dz != 0.0 {
                        let row = &self.expand_w[k * self.r..(k + 1) * self.r];
                        d_hidden.iter_mut().zip(row).for_each(|(d, w)| *d += dz * w);
                    }
                }
                let mut d_mean = vec![0f32; self.c];
                for (j, dh) in d_hidden.iter().enumerate() {
                    if e.hidden[j] > 0.0 {
                        let row = &self.reduce_w[j * self.c..(j + 1) * self.c];
                        d_mean.iter_mut().zip(row).for_each(|(d, w)| *d += dh * w);
                    }
                }
                for k in 0..self.c {
                    let s = hard_sigmoid(e.gate_in[k]);
                    let spread = d_mean[k] / plane as f32;
                    let (dp, gp) = (
                        &mut dst[k * plane..(k + 1) * plane],
                        &g[k * plane..(k + 1) * plane],
                    );
                    dp.iter_mut()
                        .zip(gp)
                        .for_each(|(d, gv)| *d = gv * s + spread);
                }
            });
        out
    }
}
