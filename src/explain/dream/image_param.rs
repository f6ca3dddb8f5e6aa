//! How a dream's image is represented while it is optimised: Lucid's Fourier parameterisation
//! (the default) or the pixels themselves.
//!
//! Lucid's (Olah et al. 2017, <https://distill.pub/2017/feature-visualization/>; Lucent's
//! `param.image`): the trainable parameters are the real and imaginary parts of a 2-D real
//! spectrum, scaled by 1/frequency so that every frequency moves the image about as fast
//! (plain pixels favour high frequencies, which the network's gradient is full of); the
//! inverse FFT (orthonormal, divided by Lucid's "magic" 4) gives an image in a decorrelated
//! colour space, mixed into RGB by the square root of ImageNet's colour correlation and squashed
//! into (0, 1) by a sigmoid. On the CPU the inverse transform is an FFT op ([`super::fft`]) and
//! the colour mix with the sigmoid one more ([`super::colour`]); on other devices (candle has
//! no FFT) it is two real matrix products with cosine and sine tables, then candle's ops.

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};

use super::colour::ColourSigmoid;
use super::fft::InverseRfft2;

use crate::error::{Error, Result};

/// Lucid's colour correlation square root (`color_correlation_svd_sqrt`).
const COLOUR_SQRT: [[f64; 3]; 3] = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];

/// Lucid divides the inverse FFT by this ("increasing this seems to reduce saturation").
const MAGIC: f64 = 4.0;

/// Standard deviation of the initial spectrum (Lucid's `sd`).
const INIT_SD: f32 = 0.01;

/// Lucid's colour mix, normalised by its largest column norm: `rgb = MIX · decorrelated`.
fn colour_mix() -> [[f64; 3]; 3] {
    let max_norm = (0..3)
        .map(|j| {
            (0..3)
                .map(|i| COLOUR_SQRT[i][j].powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .fold(0f64, f64::max);
    COLOUR_SQRT.map(|row| row.map(|v| v / max_norm))
}

/// The number of kept columns of a real spectrum of width `w`.
fn half_width(w: usize) -> usize {
    w / 2 + 1
}

/// The inverse real 2-D DFT (orthonormal) as two matrices, for an `h x w` image:
/// `image = [Ar | Ai] · right` with `[Ar; Ai] = left · [Sr; Si]`, where `Sr`, `Si` `[h, w/2+1]`
/// are the spectrum's real and imaginary parts. `left` is `[2h, 2h]`, `right` `[2(w/2+1), w]`.
pub(super) fn inverse_dft_tables(h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
    let wf = half_width(w);
    let tau = std::f64::consts::TAU;
    // Inverse DFT along y (complex to complex): A = (Cy + i Sy)(Sr + i Si).
    let mut left = vec![0f32; 4 * h * h];
    for y in 0..h {
        for ky in 0..h {
            let a = tau * (ky * y) as f64 / h as f64;
            let (c, s) = (libm::cos(a) as f32, libm::sin(a) as f32);
            left[y * 2 * h + ky] = c;
            left[y * 2 * h + h + ky] = -s;
            left[(h + y) * 2 * h + ky] = s;
            left[(h + y) * 2 * h + h + ky] = c;
        }
    }
    // Along x, complex to real: each column but the DC (and Nyquist) stands for its mirror too.
    let norm = 1.0 / ((h * w) as f64).sqrt();
    let mut right = vec![0f32; 2 * wf * w];
    for kx in 0..wf {
        let twice = kx != 0 && !(w.is_multiple_of(2) && kx == w / 2);
        let weight = if twice { 2.0 } else { 1.0 } * norm;
        for x in 0..w {
            let a = tau * (kx * x) as f64 / w as f64;
            right[kx * w + x] = (weight * libm::cos(a)) as f32;
            right[(wf + kx) * w + x] = (-weight * libm::sin(a)) as f32;
        }
    }
    (left, right)
}

/// Lucid's 1/frequency scale `[h, w/2+1]` (`1 / max(|f|, 1/max(h, w))`, f in cycles/pixel).
fn spectrum_scale(h: usize, w: usize) -> Vec<f32> {
    let freq = |k: usize, n: usize| {
        // numpy's fftfreq: 0, 1/n, ..., then negative frequencies.
        let k = k as f64;
        let n_f = n as f64;
        if k < n_f / 2.0 || (k == n_f / 2.0 && n % 2 == 1) {
            k / n_f
        } else {
            (k - n_f) / n_f
        }
    };
    let wf = half_width(w);
    let floor = 1.0 / h.max(w) as f64;
    let mut scale = vec![0f32; h * wf];
    for ky in 0..h {
        for kx in 0..wf {
            let (fy, fx) = (freq(ky, h), kx as f64 / w as f64);
            scale[ky * wf + kx] = (1.0 / (fy * fy + fx * fx).sqrt().max(floor)) as f32;
        }
    }
    scale
}

/// The forward real 2-D DFT (orthonormal) of `image` `[h, w]`: the spectrum stacked as
/// `[Sr; Si]` `[2h, w/2+1]`, the exact inverse of [`inverse_dft_tables`]'s transform.
fn forward_dft(image: &[f64], h: usize, w: usize) -> Vec<f64> {
    let wf = half_width(w);
    let tau = std::f64::consts::TAU;
    let norm = 1.0 / ((h * w) as f64).sqrt();
    // Along x: B[y, kx] = sum_x g[y, x] e^{-i 2 pi kx x / w}.
    let mut br = vec![0f64; h * wf];
    let mut bi = vec![0f64; h * wf];
    for kx in 0..wf {
        let table: Vec<(f64, f64)> = (0..w)
            .map(|x| {
                let a = tau * (kx * x) as f64 / w as f64;
                (libm::cos(a), libm::sin(a))
            })
            .collect();
        for y in 0..h {
            let row = &image[y * w..(y + 1) * w];
            let (mut re, mut im) = (0.0, 0.0);
            for (g, (c, s)) in row.iter().zip(&table) {
                re += g * c;
                im -= g * s;
            }
            br[y * wf + kx] = re;
            bi[y * wf + kx] = im;
        }
    }
    // Along y: S[ky] = sum_y e^{-i 2 pi ky y / h} B[y].
    let mut out = vec![0f64; 2 * h * wf];
    for ky in 0..h {
        for y in 0..h {
            let a = tau * (ky * y) as f64 / h as f64;
            let (c, s) = (libm::cos(a), libm::sin(a));
            for kx in 0..wf {
                let (r, i) = (br[y * wf + kx], bi[y * wf + kx]);
                out[ky * wf + kx] += (c * r + s * i) * norm;
                out[(h + ky) * wf + kx] += (c * i - s * r) * norm;
            }
        }
    }
    out
}

/// Lucid's Fourier basis for `[B, 3, S, S]` images.
struct Fourier {
    /// The 1/frequency scale, stacked for the real and imaginary parts: `[2S, S/2+1]`.
    scale: Tensor,
    inverse: Inverse,
}

/// How the scaled spectrum becomes RGB, chosen once for the device.
enum Inverse {
    /// On the CPU: the inverse FFT as one op, then the colour mix over the magic factor and
    /// the sigmoid as another.
    Ops {
        fft: InverseRfft2,
        colour: ColourSigmoid,
    },
    /// Elsewhere (candle has no FFT): the tables `[2S, 2S]` and `[2(S/2+1), S]` (see
    /// [`inverse_dft_tables`]) and the colour mix `[3, 3]`, through candle's ops.
    Tables {
        left: Tensor,
        right: Tensor,
        mix: Tensor,
    },
}

/// How the trainable parameters become pixels.
enum Basis {
    /// The parameters are the pixels, kept in [0, 1].
    Pixels,
    Fourier(Fourier),
}

/// The images `[B, 3, S, S]` in [0, 1] as a differentiable function of trainable parameters.
pub(super) struct ImageParam {
    basis: Basis,
    /// Fourier: `[B, 3, 2S, S/2+1]` (real parts above imaginary ones); pixels: `[B, 3, S, S]`.
    pub(super) param: Var,
    batch: usize,
    size: usize,
}

impl ImageParam {
    /// `batch` images of `size` x `size` from faint seeded noise, or from `start` `[3, S, S]`
    /// pixels in [0, 1] (every member the same photo).
    pub(super) fn new(
        fourier: bool,
        start: Option<&[f32]>,
        batch: usize,
        size: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let plane = size * size;
        if let Some(start) = start {
            if start.len() != 3 * plane {
                return Err(Error::Invalid("the start image has the wrong size".into()));
            }
        }
        if !fourier {
            let one: Vec<f32> = match start {
                Some(p) => p.to_vec(),
                None => Vec::new(),
            };
            let mut init = Vec::with_capacity(batch * 3 * plane);
            for _ in 0..batch {
                for i in 0..3 * plane {
                    init.push(match one.get(i) {
                        Some(v) => *v,
                        None => 0.5 + rng.random_range(-0.05..0.05),
                    });
                }
            }
            let init = Tensor::from_vec(init, (batch, 3, size, size), device)?;
            return Ok(Self {
                basis: Basis::Pixels,
                param: Var::from_tensor(&init)?,
                batch,
                size,
            });
        }
        let wf = half_width(size);
        let scale = spectrum_scale(size, size);
        let stacked: Vec<f32> = scale.iter().chain(&scale).copied().collect();
        let mix = colour_mix();
        let init: Vec<f32> = match start {
            Some(pixels) => {
                let one = photo_spectrum(pixels, size, &mix, &scale)?;
                (0..batch).flat_map(|_| one.iter().copied()).collect()
            }
            None => (0..batch * 3 * 2 * size * wf)
                .map(|_| INIT_SD * gaussian(&mut rng))
                .collect(),
        };
        let init = Tensor::from_vec(init, (batch, 3, 2 * size, wf), device)?;
        let inverse = if device.is_cpu() {
            Inverse::Ops {
                fft: InverseRfft2::new(size),
                colour: ColourSigmoid::new(mix.map(|row| row.map(|v| (v / MAGIC) as f32))),
            }
        } else {
            let (left, right) = inverse_dft_tables(size, size);
            let mix_flat: Vec<f32> = mix.iter().flatten().map(|v| *v as f32).collect();
            Inverse::Tables {
                left: Tensor::from_vec(left, (2 * size, 2 * size), device)?,
                right: Tensor::from_vec(right, (2 * wf, size), device)?,
                mix: Tensor::from_vec(mix_flat, (3, 3), device)?,
            }
        };
        Ok(Self {
            basis: Basis::Fourier(Fourier {
                scale: Tensor::from_vec(stacked, (2 * size, wf), device)?,
                inverse,
            }),
            param: Var::from_tensor(&init)?,
            batch,
            size,
        })
    }

    /// The images in [0, 1], `[B, 3, S, S]`, as a differentiable function of the parameters.
    pub(super) fn images(&self) -> Result<Tensor> {
        let p = self.param.as_tensor();
        let Basis::Fourier(f) = &self.basis else {
            return Ok(p.clone());
        };
        let (b, s) = (self.batch, self.size);
        let scaled = p.broadcast_mul(&f.scale)?;
        let (left, right, mix) = match &f.inverse {
            Inverse::Ops { fft, colour } => {
                let image = fft.clone().apply(&scaled)?;
                return Ok(colour.apply(&image)?);
            }
            Inverse::Tables { left, right, mix } => (left, right, mix),
        };
        let a = left.broadcast_matmul(&scaled)?;
        // [Ar; Ai] [B, 3, 2S, wf] -> [Ar | Ai] [B, 3, S, 2 wf].
        let a = a.contiguous()?;
        let side = Tensor::cat(&[a.narrow(2, 0, s)?, a.narrow(2, s, s)?], 3)?.contiguous()?;
        let image = side.broadcast_matmul(right)?;
        let decorrelated = (image / MAGIC)?;
        let rgb = mix
            .broadcast_matmul(&decorrelated.reshape((b, 3, s * s))?)?
            .reshape((b, 3, s, s))?;
        Ok(candle_nn::ops::sigmoid(&rgb)?)
    }

    /// Keeps pixel parameters within [0, 1] after an update (Fourier ones need nothing).
    pub(super) fn project(&self) -> Result<()> {
        if matches!(self.basis, Basis::Pixels) {
            self.param.set(&self.param.as_tensor().clamp(0f32, 1f32)?)?;
        }
        Ok(())
    }
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut impl Rng) -> f32 {
    let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
    ((-2.0 * libm::log(u1)).sqrt() * libm::cos(std::f64::consts::TAU * u2)) as f32
}

/// The spectrum parameters `[3, 2S, S/2+1]` whose image is `pixels` `[3, S, S]` (in [0, 1]):
/// the sigmoid, colour mix, magic factor and scale inverted, then the forward DFT.
fn photo_spectrum(
    pixels: &[f32],
    size: usize,
    mix: &[[f64; 3]; 3],
    scale: &[f32],
) -> Result<Vec<f32>> {
    let inv = inverse3(mix)?;
    let plane = size * size;
    let logit: Vec<f64> = pixels
        .iter()
        .map(|p| {
            let p = f64::from(*p).clamp(0.01, 0.99);
            libm::log(p / (1.0 - p))
        })
        .collect();
    let wf = half_width(size);
    let mut out = Vec::with_capacity(3 * 2 * size * wf);
    for row in &inv {
        let channel: Vec<f64> = (0..plane)
            .map(|i| MAGIC * (0..3).map(|j| row[j] * logit[j * plane + i]).sum::<f64>())
            .collect();
        let spectrum = forward_dft(&channel, size, size);
        for (i, v) in spectrum.iter().enumerate() {
            out.push((v / f64::from(scale[i % (size * wf)])) as f32);
        }
    }
    Ok(out)
}

/// Inverse of a 3x3 matrix.
fn inverse3(m: &[[f64; 3]; 3]) -> Result<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return Err(Error::Invalid("singular colour matrix".into()));
    }
    let mut inv = [[0f64; 3]; 3];
    for (i, row) in inv.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            // The cofactor of (j, i), over the determinant.
            let (r0, r1) = ([1, 0, 0][j], [2, 2, 1][j]);
            let (c0, c1) = ([1, 0, 0][i], [2, 2, 1][i]);
            let minor = m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
            *v = if (i + j) % 2 == 0 { minor } else { -minor } / det;
        }
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse DFT by its definition (the full Hermitian spectrum, orthonormal).
    fn naive_inverse(sr: &[f64], si: &[f64], h: usize, w: usize) -> Vec<f64> {
        let wf = half_width(w);
        let tau = std::f64::consts::TAU;
        let mut out = vec![0f64; h * w];
        for y in 0..h {
            for x in 0..w {
                let mut v = 0.0;
                for ky in 0..h {
                    for kx in 0..w {
                        // The full spectrum from the half one: S[ky, kx] or conj(S[-ky, -kx]).
                        let (re, im) = if kx < wf {
                            (sr[ky * wf + kx], si[ky * wf + kx])
                        } else {
                            let (my, mx) = ((h - ky) % h, w - kx);
                            (sr[my * wf + mx], -si[my * wf + mx])
                        };
                        let a = tau * ((ky * y) as f64 / h as f64 + (kx * x) as f64 / w as f64);
                        v += re * libm::cos(a) - im * libm::sin(a);
                    }
                }
                out[y * w + x] = v / ((h * w) as f64).sqrt();
            }
        }
        out
    }

    #[test]
    fn the_matrix_transform_is_the_inverse_dft_and_the_forward_one_inverts_it() {
        for (h, w) in [(6, 6), (5, 7), (4, 9)] {
            let image: Vec<f64> = (0..h * w)
                .map(|i| ((i * 37 % 11) as f64) / 11.0 - 0.4)
                .collect();
            let spectrum = forward_dft(&image, h, w);
            let wf = half_width(w);
            let (sr, si) = spectrum.split_at(h * wf);
            // The forward transform of a real image is Hermitian, so the naive inverse of it is
            // the image, and so is the matrix transform.
            let naive = naive_inverse(sr, si, h, w);
            let (left, right) = inverse_dft_tables(h, w);
            let d = Device::Cpu;
            let p = Tensor::from_vec(
                spectrum.iter().map(|v| *v as f32).collect::<Vec<_>>(),
                (2 * h, wf),
                &d,
            )
            .unwrap();
            let l = Tensor::from_vec(left, (2 * h, 2 * h), &d).unwrap();
            let r = Tensor::from_vec(right, (2 * wf, w), &d).unwrap();
            let a = l.matmul(&p).unwrap();
            let side =
                Tensor::cat(&[a.narrow(0, 0, h).unwrap(), a.narrow(0, h, h).unwrap()], 1).unwrap();
            let fast: Vec<f32> = side
                .matmul(&r)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for i in 0..h * w {
                assert!((naive[i] - image[i]).abs() < 1e-9, "{h}x{w}: naive {i}");
                assert!(
                    (f64::from(fast[i]) - image[i]).abs() < 1e-5,
                    "{h}x{w}: fast {i}"
                );
            }
        }
    }

    #[test]
    fn lucids_scale_and_colour_mix() {
        let s = spectrum_scale(4, 4);
        // DC is floored at 1/max(h, w); (ky=1, kx=0) is 1/0.25; (ky=2, kx=2) is |(-0.5, 0.5)|.
        assert_eq!(s[0], 4.0);
        assert_eq!(s[3], 4.0);
        assert!((s[2 * 3 + 2] - (1.0 / 0.5f64.hypot(0.5)) as f32).abs() < 1e-6);
        let m = colour_mix();
        let inv = inverse3(&m).unwrap();
        for (i, row) in m.iter().enumerate() {
            for (j, expected) in [1.0, 0.0, 0.0]
                .iter()
                .cycle()
                .skip(3 - i)
                .take(3)
                .enumerate()
            {
                let v: f64 = row.iter().zip(&inv).map(|(a, r)| a * r[j]).sum();
                assert!((v - expected).abs() < 1e-9, "{i} {j}");
            }
        }
    }

    #[test]
    fn a_photo_start_gives_back_the_photo() {
        let size = 8;
        let pixels: Vec<f32> = (0..3 * size * size)
            .map(|i| 0.1 + 0.8 * ((i * 7 % 13) as f32 / 13.0))
            .collect();
        let param = ImageParam::new(true, Some(&pixels), 2, size, 0, &Device::Cpu).unwrap();
        let images: Vec<f32> = param
            .images()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, v) in images.iter().enumerate() {
            assert!((v - pixels[i % pixels.len()]).abs() < 1e-4, "{i}: {v}");
        }
    }
}
