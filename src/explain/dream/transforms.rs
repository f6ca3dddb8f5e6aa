//! The random transforms a dream's images go through before the network sees them, so that
//! what grows is what the network sees robustly (Lucid's `transform.standard_transforms`):
//! pad 12 px with grey, jitter up to 8 px, scale by 0.9 to 1.1, rotate by -10 to 10 degrees
//! (0 a third of the time), jitter up to 4 px, then resize to the network's input side; and
//! ours last: half the time the resize takes only the canvas's centre (zoom 1.075 to 1.3).
//!
//! Lucid applies them one after another, resampling five times; here they are composed into
//! one map from each input pixel of the network back to the dream's image, sampled once
//! (bilinear), which is sharper and costs four gathers instead of five resamplings. Areas that
//! a transform brings in from outside keep Lucid's fills: grey for the padding, black beyond.

use candle_core::{Device, Tensor};
use rand::Rng;
use rayon::prelude::*;

use crate::error::Result;

/// Lucid's padding, in pixels, filled with grey.
const PAD: usize = 12;
/// Lucid's first and second jitter: shifts of 0 to `d - 1` pixels.
const JITTER: [usize; 2] = [8, 4];
/// Lucid's scales: 0.90, 0.92, ..., 1.10.
const SCALES: [f64; 11] = [
    0.90, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.10,
];

/// Our addition, the zooms of the last step (half of the draws; the other half see the whole
/// canvas, as Lucid). Lucid's canvas is the image padded by 12 px and its final resize undoes
/// its scale, so its network sees the image at most at 224/248 of its size, always with a
/// grey frame; a saved dream opened like a photo (resize to 256, centre crop 224) is seen at
/// 1.14, a view none of Lucid's steps trained for. Zooming the canvas by up to 1.3 (1.3 x 0.9
/// = 1.17) covers it.
const ZOOMS: [f64; 4] = [1.075, 1.15, 1.225, 1.3];

/// One step's draw of the transforms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Draw {
    shift: (usize, usize),
    scale: f64,
    /// Degrees.
    angle: f64,
    shift_after: (usize, usize),
    /// The last step, ours: the network sees the central `1/zoom` of the canvas (1: all of it).
    zoom: f64,
}

impl Draw {
    /// A random draw with Lucid's distributions.
    pub(super) fn random(rng: &mut impl Rng) -> Self {
        // Lucid: list(range(-10, 11)) + 5 * [0].
        let angle = match rng.random_range(0..26) {
            i @ 0..=20 => i as f64 - 10.0,
            _ => 0.0,
        };
        Self {
            shift: (
                rng.random_range(0..JITTER[0]),
                rng.random_range(0..JITTER[0]),
            ),
            scale: SCALES[rng.random_range(0..SCALES.len())],
            angle,
            shift_after: (
                rng.random_range(0..JITTER[1]),
                rng.random_range(0..JITTER[1]),
            ),
            // Drawn last, so Lucid's draws above stay the same sequence.
            zoom: if rng.random_bool(0.5) {
                ZOOMS[rng.random_range(0..ZOOMS.len())]
            } else {
                1.0
            },
        }
    }

    /// No transform at all but the padding and the resize back (for tests).
    #[cfg(test)]
    fn still() -> Self {
        Self {
            shift: (0, 0),
            scale: 1.0,
            angle: 0.0,
            shift_after: (0, 0),
            zoom: 1.0,
        }
    }
}

/// Where each network input pixel reads the dream's image: four bilinear taps and a constant
/// (the fills' share).
pub(super) struct Sampling {
    /// `[4][P]` indices into the image's `S x S` plane, and their weights.
    index: [Tensor; 4],
    weight: [Tensor; 4],
    /// `[1, P]`.
    constant: Tensor,
    out: usize,
    /// The same taps as plain data, for the CPU op.
    taps: std::sync::Arc<Taps>,
}

/// The taps as plain vectors: `index[k][p]`, `weight[k][p]`, `constant[p]`.
struct Taps {
    index: [Vec<u32>; 4],
    weight: [Vec<f32>; 4],
    constant: Vec<f32>,
    plane: usize,
}

/// The sampling as one CPU op: a gather forward and a scatter backward, instead of four
/// index-selects and index-adds through candle's graph (several times slower here).
struct SampleOp(std::sync::Arc<Taps>);

impl candle_core::CustomOp1 for SampleOp {
    fn name(&self) -> &'static str {
        "dream-sample"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("dream sampling needs a contiguous image");
        };
        let x = &s.as_slice::<f32>()?[start..end];
        let t = &self.0;
        let rows = x.len() / t.plane;
        let p = t.constant.len();
        let mut out = vec![0f32; rows * p];
        out.par_chunks_exact_mut(p)
            .zip(x.par_chunks_exact(t.plane))
            .for_each(|(o, row)| {
                for (i, v) in o.iter_mut().enumerate() {
                    let mut acc = t.constant[i];
                    for k in 0..4 {
                        acc += t.weight[k][i] * row[t.index[k][i] as usize];
                    }
                    *v = acc;
                }
            });
        Ok((candle_core::CpuStorage::F32(out), (rows, p).into()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g: Vec<f32> = grad_res.flatten_all()?.to_vec1()?;
        let t = &self.0;
        let p = t.constant.len();
        let mut grad = vec![0f32; arg.elem_count()];
        // Each row (plane) scatters into its own gradient plane, so rows run in parallel.
        grad.par_chunks_exact_mut(t.plane)
            .zip(g.par_chunks_exact(p))
            .for_each(|(row, gr)| {
                for (i, gv) in gr.iter().enumerate() {
                    for k in 0..4 {
                        row[t.index[k][i] as usize] += t.weight[k][i] * gv;
                    }
                }
            });
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}

/// A point of the network's input, followed back through the transforms to the padded image;
/// `None` when it falls outside a canvas (black).
fn source_of(u: f64, v: f64, n_in: usize, n_out: usize, d: &Draw) -> Option<(f64, f64)> {
    let inside = |x: f64, y: f64, side: usize| {
        (0.0..=side as f64 - 1.0).contains(&x) && (0.0..=side as f64 - 1.0).contains(&y)
    };
    // Canvas sides: padded, scaled (then padded back to at least the padded side when it
    // shrank, as Lucid does), rotated (same side).
    let padded = n_in + 2 * PAD;
    let scaled = (d.scale * padded as f64).ceil() as usize;
    let pad_back = padded.saturating_sub(scaled).div_ceil(2);
    let rotated = scaled + 2 * pad_back;
    // Resize to the network's side (align corners, as Lucid's final upsample), of the
    // canvas's central 1/zoom.
    let ratio = (rotated as f64 - 1.0) / (n_out as f64 - 1.0).max(1.0);
    let c = (rotated as f64 - 1.0) / 2.0;
    let (x, y) = (c + (u * ratio - c) / d.zoom, c + (v * ratio - c) / d.zoom);
    // The second jitter moved the content by +shift_after.
    let (x, y) = (x - d.shift_after.0 as f64, y - d.shift_after.1 as f64);
    if !inside(x, y, rotated) {
        return None;
    }
    // The rotation about the canvas centre, inverted.
    let (sin, cos) = libm::sincos(d.angle.to_radians());
    let (dx, dy) = (x - c, y - c);
    let (x, y) = (cos * dx + sin * dy + c, -sin * dx + cos * dy + c);
    if !inside(x, y, rotated) {
        return None;
    }
    // The padding back, then the scale (align corners).
    let (x, y) = (x - pad_back as f64, y - pad_back as f64);
    if !inside(x, y, scaled) {
        return None;
    }
    let back = (padded as f64 - 1.0) / (scaled as f64 - 1.0);
    let (x, y) = (x * back, y * back);
    // The first jitter.
    let (x, y) = (x - d.shift.0 as f64, y - d.shift.1 as f64);
    if !inside(x, y, padded) {
        return None;
    }
    Some((x - PAD as f64, y - PAD as f64))
}

impl Sampling {
    /// The sampling of `draw` from an `n_in` image to an `n_out` network input.
    pub(super) fn new(draw: &Draw, n_in: usize, n_out: usize, device: &Device) -> Result<Self> {
        let p = n_out * n_out;
        let mut index = [(); 4].map(|_| vec![0u32; p]);
        let mut weight = [(); 4].map(|_| vec![0f32; p]);
        let mut constant = vec![0f32; p];
        let last = n_in as f64 - 1.0;
        for v in 0..n_out {
            for u in 0..n_out {
                let i = v * n_out + u;
                let Some((x, y)) = source_of(u as f64, v as f64, n_in, n_out, draw) else {
                    continue;
                };
                let (x0, y0) = (x.floor(), y.floor());
                let (fx, fy) = (x - x0, y - y0);
                let taps = [
                    (x0, y0, (1.0 - fx) * (1.0 - fy)),
                    (x0 + 1.0, y0, fx * (1.0 - fy)),
                    (x0, y0 + 1.0, (1.0 - fx) * fy),
                    (x0 + 1.0, y0 + 1.0, fx * fy),
                ];
                for (k, (tx, ty, w)) in taps.into_iter().enumerate() {
                    if (0.0..=last).contains(&tx) && (0.0..=last).contains(&ty) {
                        index[k][i] = (ty as usize * n_in + tx as usize) as u32;
                        weight[k][i] = w as f32;
                    } else {
                        // Within the grey padding (a tap is at most one pixel out of it).
                        constant[i] += 0.5 * w as f32;
                    }
                }
            }
        }
        let tensor_u32 = |v: &Vec<u32>| Tensor::from_slice(v, p, device);
        let tensor_f32 = |v: &Vec<f32>| Tensor::from_slice(v, (1, p), device);
        let [i0, i1, i2, i3] = &index;
        let [w0, w1, w2, w3] = &weight;
        Ok(Self {
            index: [
                tensor_u32(i0)?,
                tensor_u32(i1)?,
                tensor_u32(i2)?,
                tensor_u32(i3)?,
            ],
            weight: [
                tensor_f32(w0)?,
                tensor_f32(w1)?,
                tensor_f32(w2)?,
                tensor_f32(w3)?,
            ],
            constant: Tensor::from_slice(&constant, (1, p), device)?,
            out: n_out,
            taps: std::sync::Arc::new(Taps {
                index,
                weight,
                constant,
                plane: n_in * n_in,
            }),
        })
    }

    /// The network's view `[B, 3, n_out, n_out]` of `images` `[B, 3, S, S]`, differentiable.
    pub(super) fn apply(&self, images: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = images.dims4()?;
        let flat = images.reshape((b * c, h * w))?;
        if flat.device().is_cpu() && flat.dtype() == candle_core::DType::F32 {
            let flat = flat.contiguous()?;
            let out = flat.apply_op1(SampleOp(self.taps.clone()))?;
            return Ok(out.reshape((b, c, self.out, self.out))?);
        }
        let mut out = self
            .constant
            .broadcast_as((b * c, self.out * self.out))?
            .clone();
        for (index, weight) in self.index.iter().zip(&self.weight) {
            out = (out + flat.index_select(index, 1)?.broadcast_mul(weight)?)?;
        }
        Ok(out.reshape((b, c, self.out, self.out))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn without_random_parts_the_view_is_the_padded_image_resized() {
        let n = 16;
        let img = Tensor::ones((1, 3, n, n), candle_core::DType::F32, &Device::Cpu).unwrap();
        let view = Sampling::new(&Draw::still(), n, n, &Device::Cpu)
            .unwrap()
            .apply(&img)
            .unwrap();
        let v: Vec<f32> = view.flatten_all().unwrap().to_vec1().unwrap();
        // The corners are grey padding, the centre the (white) image.
        assert!((v[0] - 0.5).abs() < 1e-6);
        assert!((v[(n / 2) * n + n / 2] - 1.0).abs() < 1e-6);
        // Pixel by pixel it is the padded image shrunk (40 -> 16 px): the image covers the
        // middle 16 * 16/40 pixels or so.
        let white = v[..n * n]
            .iter()
            .filter(|x| (**x - 1.0).abs() < 1e-6)
            .count();
        assert!((30..=60).contains(&white), "{white}");
    }

    /// The network's `n x n` view of `img` `[B, 3, n, n]` under `d`, flattened.
    fn view(d: &Draw, img: &Tensor, n: usize) -> Vec<f32> {
        Sampling::new(d, n, n, &Device::Cpu)
            .unwrap()
            .apply(img)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn draws_follow_lucids_ranges_and_the_view_keeps_its_mass_where_it_should() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let n = 24;
        let img = Tensor::ones((2, 3, n, n), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut angles = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = Draw::random(&mut rng);
            assert!(d.shift.0 < 8 && d.shift_after.1 < 4);
            assert!((0.9..=1.1).contains(&d.scale) && d.angle.abs() <= 10.0);
            assert!(d.zoom == 1.0 || ZOOMS.contains(&d.zoom));
            angles.insert(d.angle as i32);
            let v = view(&d, &img, n);
            // Everything is a mix of white image, grey padding and black: within [0, 1], and
            // the centre is always the image.
            assert!(v.iter().all(|x| (-1e-6..=1.0 + 1e-6).contains(x)));
            assert!((v[(n / 2) * n + n / 2] - 1.0).abs() < 1e-5);
        }
        assert_eq!(angles.len(), 21);
    }

    #[test]
    fn the_cpu_op_and_candles_ops_agree_forward_and_backward() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let n = 20;
        let s = Sampling::new(&Draw::random(&mut rng), n, 16, &Device::Cpu).unwrap();
        let init = Tensor::rand(0f32, 1.0, (2, 3, n, n), &Device::Cpu).unwrap();
        let var = candle_core::Var::from_tensor(&init).unwrap();
        let weights = Tensor::rand(0f32, 1.0, (2, 3, 16, 16), &Device::Cpu).unwrap();
        let fast = s.apply(var.as_tensor()).unwrap();
        let g_fast = (&fast * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // Candle's own ops, as on a GPU.
        let flat = var.as_tensor().reshape((6, n * n)).unwrap();
        let mut slow = s.constant.broadcast_as((6, 256)).unwrap().clone();
        for (index, weight) in s.index.iter().zip(&s.weight) {
            slow = (slow
                + flat
                    .index_select(index, 1)
                    .unwrap()
                    .broadcast_mul(weight)
                    .unwrap())
            .unwrap();
        }
        let slow = slow.reshape((2, 3, 16, 16)).unwrap();
        let g_slow = (&slow * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(diff(&fast, &slow) < 1e-6);
        let (a, b) = (
            g_fast.get(var.as_tensor()).unwrap(),
            g_slow.get(var.as_tensor()).unwrap(),
        );
        assert!(diff(a, b) < 1e-5);
    }

    #[test]
    fn the_largest_zoom_sees_only_the_image_where_lucids_view_has_its_grey_frame() {
        let n = 100;
        let img = Tensor::ones((1, 3, n, n), candle_core::DType::F32, &Device::Cpu).unwrap();
        let lucid = view(&Draw::still(), &img, n);
        assert!((lucid[0] - 0.5).abs() < 1e-5, "corner {}", lucid[0]);
        let zoomed = view(
            &Draw {
                zoom: ZOOMS[ZOOMS.len() - 1],
                ..Draw::still()
            },
            &img,
            n,
        );
        // 1.3 x 100 / 124 > 1: the central 1/1.3 of the padded canvas is all image.
        assert!(zoomed.iter().all(|v| (v - 1.0).abs() < 1e-5));
    }

    #[test]
    fn the_gradient_reaches_the_image() {
        let n = 8;
        let var =
            candle_core::Var::ones((1, 3, n, n), candle_core::DType::F32, &Device::Cpu).unwrap();
        let s = Sampling::new(&Draw::still(), n, 12, &Device::Cpu).unwrap();
        let out = s.apply(var.as_tensor()).unwrap().sum_all().unwrap();
        let g = out.backward().unwrap();
        let grad = g
            .get(var.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // Every output pixel reading the image passes its weight back: the total is the
        // image's share of the output.
        let img_share = s
            .apply(var.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            - s.constant.sum_all().unwrap().to_scalar::<f32>().unwrap() * 3.0;
        assert!((grad - img_share).abs() < 1e-3, "{grad} vs {img_share}");
    }
}
