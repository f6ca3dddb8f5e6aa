//! torchvision's ImageNet preprocessing, reproduced bit for bit: `Resize(256)` on a PIL image
//! (PIL's antialiased bilinear or bicubic resampling with its 8-bit fixed-point arithmetic),
//! `CenterCrop(224)`, `ToTensor()` and `Normalize(mean, std)`. timm's evaluation transform
//! for a model is the same torchvision transform with the model's interpolation.
//!
//! PIL's algorithm: `Pillow/src/libImaging/Resample.c` (a separable triangle or cubic filter
//! whose support grows with the downscale factor, each pass rounded to u8).

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::error::Result;

/// ImageNet channel means used by torchvision's pretrained models.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations used by torchvision's pretrained models.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How a photo becomes a square network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// torchvision's evaluation transform: shorter side to `size * 256 / 224`, centre crop.
    #[default]
    CenterCrop,
    /// The whole photo squeezed to `size x size` (nothing cut off, aspect not kept).
    Whole,
}

/// PIL's resampling filter for the resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// Triangle filter (torchvision's default; its own ImageNet weights).
    #[default]
    Bilinear,
    /// Keys' cubic filter with a = -0.5 (timm's models trained with bicubic resizing).
    Bicubic,
}

impl ResizeFilter {
    /// The filter's support at scale 1.
    fn support(self) -> f64 {
        match self {
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    /// PIL's `bilinear_filter` / `bicubic_filter`.
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Self::Bilinear => (1.0 - x).max(0.0),
            Self::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// The preprocessing a backbone expects.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocess {
    /// Side of the square input (224 for ImageNet models).
    pub size: u32,
    pub mode: ResizeMode,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    #[serde(default)]
    pub filter: ResizeFilter,
}

impl Default for Preprocess {
    fn default() -> Self {
        Self::imagenet(224)
    }
}

impl Preprocess {
    /// torchvision's ImageNet evaluation transform at `size` (224: Resize(256), CenterCrop(224)).
    pub const fn imagenet(size: u32) -> Self {
        Self {
            size,
            mode: ResizeMode::CenterCrop,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            filter: ResizeFilter::Bilinear,
        }
    }

    /// The same transform resizing with `filter`.
    pub const fn with_filter(self, filter: ResizeFilter) -> Self {
        Self { filter, ..self }
    }

    /// The side the shorter edge is resized to before the centre crop (256 for 224).
    pub fn resize_short_side(&self) -> u32 {
        (f64::from(self.size) * 256.0 / 224.0).round() as u32
    }

    /// The resized and cropped RGB8 image the network sees, `size x size`.
    pub fn network_view(&self, image: &RgbImage) -> RgbImage {
        match self.mode {
            ResizeMode::Whole => resize_pil(image, self.size, self.size, self.filter),
            ResizeMode::CenterCrop => {
                let (w, h) = image.dimensions();
                let (new_w, new_h) = resized_short_side(w, h, self.resize_short_side());
                let resized = resize_pil(image, new_w, new_h, self.filter);
                center_crop(&resized, self.size, self.size)
            }
        }
    }

    /// Where the network view comes from in a `w x h` photo: the size the photo is resized
    /// to, and the (left, top) of the `size x size` crop in it.
    pub fn view_geometry(&self, w: u32, h: u32) -> ((u32, u32), (u32, u32)) {
        match self.mode {
            ResizeMode::Whole => ((self.size, self.size), (0, 0)),
            ResizeMode::CenterCrop => {
                let (rw, rh) = resized_short_side(w, h, self.resize_short_side());
                ((rw, rh), crop_offsets(rw, rh, self.size, self.size))
            }
        }
    }

    /// Normalised CHW floats of the network view: `[3 * size * size]`.
    pub fn to_chw(&self, image: &RgbImage) -> Vec<f32> {
        let view = self.network_view(image);
        normalize_chw(&view, &self.mean, &self.std)
    }

    /// A batch of images as the network input tensor `[B, 3, size, size]`.
    pub fn batch(&self, images: &[&RgbImage], device: &Device) -> Result<Tensor> {
        let side = self.size as usize;
        let mut data = Vec::with_capacity(images.len() * 3 * side * side);
        for image in images {
            data.extend(self.to_chw(image));
        }
        Ok(Tensor::from_vec(
            data,
            (images.len(), 3, side, side),
            device,
        )?)
    }

    /// Undoes the normalisation of one CHW image `[3, S, S]` back to RGB8 (clamped).
    pub fn denormalize(&self, chw: &[f32], side: u32) -> RgbImage {
        let plane = (side * side) as usize;
        RgbImage::from_fn(side, side, |x, y| {
            let i = (y * side + x) as usize;
            let px = |c: usize| {
                let v = chw[c * plane + i] * self.std[c] + self.mean[c];
                (v * 255.0).round().clamp(0.0, 255.0) as u8
            };
            image::Rgb([px(0), px(1), px(2)])
        })
    }
}

/// torchvision's `Resize(int)` output size: the shorter side becomes `short`, the longer side
/// `int(short * long / short_in)` (truncated, as Python's `int`).
pub fn resized_short_side(w: u32, h: u32, short: u32) -> (u32, u32) {
    if w <= h {
        let long = (u64::from(short) * u64::from(h) / u64::from(w)) as u32;
        (short, long)
    } else {
        let long = (u64::from(short) * u64::from(w) / u64::from(h)) as u32;
        (long, short)
    }
}

/// torchvision's `CenterCrop`: offsets `int(round((in - out) / 2))` with Python's
/// round-half-to-even.
pub fn center_crop(image: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let (left, top) = crop_offsets(w, h, out_w, out_h);
    RgbImage::from_fn(out_w, out_h, |x, y| {
        let (sx, sy) = (x + left, y + top);
        if sx < w && sy < h {
            *image.get_pixel(sx, sy)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// The (left, top) of torchvision's `CenterCrop(out)` in a `w x h` image.
pub fn crop_offsets(w: u32, h: u32, out_w: u32, out_h: u32) -> (u32, u32) {
    let left = ((f64::from(w) - f64::from(out_w)) / 2.0)
        .round_ties_even()
        .max(0.0) as u32;
    let top = ((f64::from(h) - f64::from(out_h)) / 2.0)
        .round_ties_even()
        .max(0.0) as u32;
    (left, top)
}

/// `ToTensor()` then `Normalize(mean, std)` in f32, exactly as torch computes it.
pub fn normalize_chw(image: &RgbImage, mean: &[f32; 3], std: &[f32; 3]) -> Vec<f32> {
    let (w, h) = image.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px.0[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output pixel's source span and fixed-point weights.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// PIL's `precompute_coeffs` for `filter`: each output pixel's first source pixel and
/// normalised float weights.
fn filter_weights(in_size: u32, out_size: u32, filter: ResizeFilter) -> Vec<(usize, Vec<f64>)> {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (f64::from(xx) + 0.5) * scale;
            let ss = 1.0 / filter_scale;
            // C's (int) truncates toward zero; the bounds are clamped to the image anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
            let count = xmax.saturating_sub(xmin);
            let mut weights: Vec<f64> = (0..count)
                .map(|x| filter.weight(((x + xmin) as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            (xmin, weights)
        })
        .collect()
}

/// The float weights then PIL's `normalize_coeffs_8bpc` fixed point.
fn filter_coefficients(in_size: u32, out_size: u32, filter: ResizeFilter) -> Vec<Taps> {
    filter_weights(in_size, out_size, filter)
        .into_iter()
        .map(|(start, weights)| Taps {
            start,
            weights: weights
                .iter()
                .map(|&w| {
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    if w < 0.0 {
                        (-0.5 + scaled) as i32
                    } else {
                        (0.5 + scaled) as i32
                    }
                })
                .collect(),
        })
        .collect()
}

/// PIL's resize with `filter` along one axis as a linear map, without its 8-bit rounding:
/// `[out_size * in_size]` row-major (the identity when the sizes agree, as PIL skips the pass).
/// Gradient loops use it to differentiate through the preprocessing.
pub fn resize_matrix(in_size: u32, out_size: u32, filter: ResizeFilter) -> Vec<f32> {
    let (n_in, n_out) = (in_size as usize, out_size as usize);
    let mut m = vec![0f32; n_out * n_in];
    if in_size == out_size {
        (0..n_in).for_each(|i| m[i * n_in + i] = 1.0);
        return m;
    }
    for (row, (start, weights)) in filter_weights(in_size, out_size, filter)
        .into_iter()
        .enumerate()
    {
        for (k, w) in weights.into_iter().enumerate() {
            m[row * n_in + start + k] = w as f32;
        }
    }
    m
}

fn clip8(acc: i64) -> u8 {
    if acc >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// PIL's `Image.resize(size, BILINEAR)` on an RGB image (Pillow 13): antialiased when
/// shrinking, each separable pass rounded to 8 bits like PIL's `ImagingResample`. The
/// horizontal pass runs first, over only the rows the vertical pass reads, unless the height
/// shrinks by more than twice as many pixels as the width (Pillow >= 13 then runs the vertical
/// pass first; Pillow <= 12 always ran the horizontal one first).
pub fn resize_bilinear_pil(image: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    resize_pil(image, out_w, out_h, ResizeFilter::Bilinear)
}

/// PIL's `Image.resize(size, filter)` on an RGB image, as [`resize_bilinear_pil`] describes
/// (the passes are the same for every filter; bicubic weights can be negative, and each pass
/// clamps to 0..255).
pub fn resize_pil(image: &RgbImage, out_w: u32, out_h: u32, filter: ResizeFilter) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    if (in_w, in_h) == (out_w, out_h) {
        return image.clone();
    }
    let horizontal = filter_coefficients(in_w, out_w, filter);
    let vertical = filter_coefficients(in_h, out_h, filter);
    let (need_h, need_v) = (in_w != out_w, in_h != out_h);
    let shrink_h = i64::from(in_h) - i64::from(out_h);
    let horizontal_first = !(shrink_h > 0 && shrink_h > (i64::from(in_w) - i64::from(out_w)) * 2);
    let src = Plane {
        data: image.as_raw().clone(),
        width: in_w as usize,
    };
    let out = if horizontal_first {
        let (first, last) = if need_v {
            let first = vertical.first().map_or(0, |t| t.start);
            let last = vertical
                .last()
                .map_or(in_h as usize, |t| t.start + t.weights.len());
            (first, last)
        } else {
            (0, in_h as usize)
        };
        let mid = if need_h {
            resample_rows(&src, first..last, &horizontal)
        } else {
            src.rows(first..last)
        };
        if need_v {
            resample_columns(&mid, &vertical, first)
        } else {
            mid
        }
    } else {
        let mid = resample_columns(&src, &vertical, 0);
        if need_h {
            resample_rows(&mid, 0..out_h as usize, &horizontal)
        } else {
            mid
        }
    };
    let width = out.width as u32;
    RgbImage::from_raw(width, out_h, out.data).unwrap_or_else(|| RgbImage::new(width, out_h))
}

/// Interleaved RGB8 rows of one width.
struct Plane {
    data: Vec<u8>,
    width: usize,
}

impl Plane {
    fn rows(&self, rows: std::ops::Range<usize>) -> Plane {
        let stride = self.width * 3;
        Plane {
            data: self.data[rows.start * stride..rows.end * stride].to_vec(),
            width: self.width,
        }
    }
}

/// PIL's horizontal pass over `rows` of `src`.
fn resample_rows(src: &Plane, rows: std::ops::Range<usize>, taps: &[Taps]) -> Plane {
    let half = 1i64 << (PRECISION_BITS - 1);
    let (in_stride, out_w) = (src.width * 3, taps.len());
    let mut data = Vec::with_capacity(rows.len() * out_w * 3);
    for y in rows {
        let row = &src.data[y * in_stride..(y + 1) * in_stride];
        for t in taps {
            let mut acc = [half; 3];
            for (k, &w) in t.weights.iter().enumerate() {
                let p = (t.start + k) * 3;
                for c in 0..3 {
                    acc[c] += i64::from(row[p + c]) * i64::from(w);
                }
            }
            data.extend(acc.map(clip8));
        }
    }
    Plane { data, width: out_w }
}

/// PIL's vertical pass; `src` holds the source rows from `first_row` on.
fn resample_columns(src: &Plane, taps: &[Taps], first_row: usize) -> Plane {
    let half = 1i64 << (PRECISION_BITS - 1);
    let stride = src.width * 3;
    let mut data = Vec::with_capacity(taps.len() * stride);
    for t in taps {
        for x in 0..stride {
            let mut acc = half;
            for (k, &w) in t.weights.iter().enumerate() {
                acc += i64::from(src.data[(t.start - first_row + k) * stride + x]) * i64::from(w);
            }
            data.push(clip8(acc));
        }
    }
    Plane {
        data,
        width: src.width,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_output_sizes_follow_torchvision() {
        assert_eq!(resized_short_side(451, 300, 256), (384, 256));
        assert_eq!(resized_short_side(300, 451, 256), (256, 384));
        assert_eq!(resized_short_side(256, 256, 256), (256, 256));
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        // (5 - 2) / 2 = 1.5 rounds to 2; (4 - 1) / 2 = 1.5 -> 2; (3 - 2) / 2 = 0.5 -> 0.
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = center_crop(&img, 2, 2);
        assert_eq!(c.get_pixel(0, 0).0, [2, 0, 0]);
    }

    #[test]
    fn the_resize_matrix_is_pils_resize_before_rounding() {
        let img = RgbImage::from_fn(41, 29, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x * y) % 256) as u8])
        });
        let (ow, oh) = (17u32, 23u32);
        let rh = resize_matrix(41, ow, ResizeFilter::Bilinear);
        let rv = resize_matrix(29, oh, ResizeFilter::Bilinear);
        let exact = resize_bilinear_pil(&img, ow, oh);
        for c in 0..3 {
            for oy in 0..oh as usize {
                for ox in 0..ow as usize {
                    let mut v = 0f32;
                    for y in 0..29 {
                        for x in 0..41 {
                            v += rv[oy * 29 + y]
                                * rh[ox * 41 + x]
                                * f32::from(img.get_pixel(x as u32, y as u32).0[c]);
                        }
                    }
                    let e = f32::from(exact.get_pixel(ox as u32, oy as u32).0[c]);
                    assert!((v - e).abs() <= 1.5, "({ox}, {oy}, {c}): {v} vs {e}");
                }
            }
        }
        assert_eq!(
            resize_matrix(3, 3, ResizeFilter::Bilinear),
            vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]
        );
    }

    #[test]
    fn resizing_a_flat_image_keeps_its_colour() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        for (w, h) in [(10, 7), (80, 50), (37, 5), (3, 23)] {
            let out = resize_bilinear_pil(&img, w, h);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [200, 10, 99]));
        }
    }
}
