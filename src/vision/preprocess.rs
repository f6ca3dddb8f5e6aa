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
                // Only the crop of the resized photo is computed: a panorama's full resize
                // would be gigabytes (20 x 5,000,000 pixels become 256 x 64,000,000).
                let (w, h) = image.dimensions();
                let (new_w, new_h) = resized_short_side(w, h, self.resize_short_side());
                let (left, top) = crop_offsets(new_w, new_h, self.size, self.size);
                let cols = left..left.saturating_add(self.size).min(new_w);
                let rows = top..top.saturating_add(self.size).min(new_h);
                let window = resize_pil_window(image, (new_w, new_h), self.filter, cols, rows);
                // Pads with black where the resized photo is smaller than the crop, as
                // torchvision's `CenterCrop` does.
                center_crop(&window, self.size, self.size)
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
///
/// A longer side beyond `u32::MAX` (a 1 x 100,000,000 panorama resized to 256 wide) saturates
/// there (PIL cannot make such an image at all); an empty side counts as one pixel.
pub fn resized_short_side(w: u32, h: u32, short: u32) -> (u32, u32) {
    let long = |long_in: u32, short_in: u32| {
        let long = u64::from(short) * u64::from(long_in) / u64::from(short_in.max(1));
        u32::try_from(long).unwrap_or(u32::MAX)
    };
    if w <= h {
        (short, long(h, w))
    } else {
        (long(w, h), short)
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
    let plane = w as usize * h as usize;
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

/// PIL's `precompute_coeffs` for `filter`, for the output pixels `out_range` of `out_size`:
/// each one's first source pixel and normalised float weights (each output pixel's weights
/// depend on its own position only, so a sub-range is the same as slicing the whole).
fn filter_weights(
    in_size: u32,
    out_size: u32,
    filter: ResizeFilter,
    out_range: std::ops::Range<u32>,
) -> Vec<(usize, Vec<f64>)> {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    out_range
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

/// The float weights then PIL's `normalize_coeffs_8bpc` fixed point, for `out_range`. Equal
/// sizes give the identity (PIL skips that pass; a weight of one reproduces each pixel).
fn filter_coefficients(
    in_size: u32,
    out_size: u32,
    filter: ResizeFilter,
    out_range: std::ops::Range<u32>,
) -> Vec<Taps> {
    if in_size == out_size {
        return out_range
            .map(|x| Taps {
                start: x as usize,
                weights: vec![1 << PRECISION_BITS],
            })
            .collect();
    }
    filter_weights(in_size, out_size, filter, out_range)
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
    for (row, (start, weights)) in filter_weights(in_size, out_size, filter, 0..out_size)
        .into_iter()
        .enumerate()
    {
        for (k, w) in weights.into_iter().enumerate() {
            m[row * n_in + start + k] = w as f32;
        }
    }
    m
}

/// The rows `out_range` of [`resize_matrix`] restricted to the source pixels they read:
/// `(first source pixel, [out_range.len() * span] row-major, span)`. Its size depends on the
/// crop, not on the whole resized photo (a panorama's full matrix would not fit in memory).
pub fn resize_matrix_window(
    in_size: u32,
    out_size: u32,
    filter: ResizeFilter,
    out_range: std::ops::Range<u32>,
) -> (usize, Vec<f32>, usize) {
    let rows: Vec<(usize, Vec<f64>)> = if in_size == out_size {
        out_range.map(|x| (x as usize, vec![1.0])).collect()
    } else {
        filter_weights(in_size, out_size, filter, out_range)
    };
    let first = rows.iter().map(|(s, _)| *s).min().unwrap_or(0);
    let end = rows.iter().map(|(s, w)| s + w.len()).max().unwrap_or(first);
    let span = end - first;
    let mut m = vec![0f32; rows.len() * span];
    for (row, (start, weights)) in rows.into_iter().enumerate() {
        for (k, w) in weights.into_iter().enumerate() {
            m[row * span + start - first + k] = w as f32;
        }
    }
    (first, m, span)
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
    resize_pil_window(image, (out_w, out_h), filter, 0..out_w, 0..out_h)
}

/// The columns `cols` and rows `rows` of [`resize_pil`]'s `out_w x out_h` output, computing
/// nothing else: bit for bit the same pixels, since each output pixel of a pass depends only
/// on its own taps. The passes run in the order PIL picks for the whole image, over only the
/// source pixels the window reads, so the work and memory follow the window's size.
pub fn resize_pil_window(
    image: &RgbImage,
    (out_w, out_h): (u32, u32),
    filter: ResizeFilter,
    cols: std::ops::Range<u32>,
    rows: std::ops::Range<u32>,
) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    let cols = cols.start.min(out_w)..cols.end.min(out_w);
    let rows = rows.start.min(out_h)..rows.end.min(out_h);
    let (win_w, win_h) = (cols.len() as u32, rows.len() as u32);
    if cols.is_empty() || rows.is_empty() || in_w == 0 || in_h == 0 {
        return RgbImage::new(win_w, win_h);
    }
    let horizontal = filter_coefficients(in_w, out_w, filter, cols.clone());
    let vertical = filter_coefficients(in_h, out_h, filter, rows.clone());
    let shrink_h = i64::from(in_h) - i64::from(out_h);
    let horizontal_first = !(shrink_h > 0 && shrink_h > (i64::from(in_w) - i64::from(out_w)) * 2);
    let src = Region {
        data: image.as_raw(),
        width: in_w as usize,
        first_row: 0,
        first_col: 0,
    };
    let (cols, rows) = (
        cols.start as usize..cols.end as usize,
        rows.start as usize..rows.end as usize,
    );
    let out = if horizontal_first {
        // The window's columns, over the source rows its rows read.
        let (first, end) = span(&vertical);
        let mid = resample_rows(src, first..end, &horizontal);
        let mid = Region {
            data: &mid,
            width: cols.len(),
            first_row: first,
            first_col: cols.start,
        };
        resample_columns(mid, cols, &vertical)
    } else {
        // The window's rows, over the source columns its columns read.
        let (first, end) = span(&horizontal);
        let mid = resample_columns(src, first..end, &vertical);
        let mid = Region {
            data: &mid,
            width: end - first,
            first_row: rows.start,
            first_col: first,
        };
        resample_rows(mid, rows, &horizontal)
    };
    RgbImage::from_raw(win_w, win_h, out).unwrap_or_else(|| RgbImage::new(win_w, win_h))
}

/// The source pixels `taps` read: `first..end`.
fn span(taps: &[Taps]) -> (usize, usize) {
    let first = taps.iter().map(|t| t.start).min().unwrap_or(0);
    let end = taps
        .iter()
        .map(|t| t.start + t.weights.len())
        .max()
        .unwrap_or(first);
    (first, end)
}

/// Interleaved RGB8 pixels of a rectangle of an image: its row 0 and column 0 are the image's
/// `first_row` and `first_col`.
#[derive(Clone, Copy)]
struct Region<'a> {
    data: &'a [u8],
    width: usize,
    first_row: usize,
    first_col: usize,
}

impl Region<'_> {
    /// The offset of the image's pixel (`row`, `col`) in `data`.
    fn at(&self, row: usize, col: usize) -> usize {
        ((row - self.first_row) * self.width + col - self.first_col) * 3
    }
}

/// PIL's horizontal pass over the image rows `rows` of `src`, one output pixel per tap set:
/// `rows.len() x taps.len()` pixels.
fn resample_rows(src: Region, rows: std::ops::Range<usize>, taps: &[Taps]) -> Vec<u8> {
    let half = 1i64 << (PRECISION_BITS - 1);
    let mut data = Vec::with_capacity(rows.len() * taps.len() * 3);
    for y in rows {
        for t in taps {
            let first = src.at(y, t.start);
            let mut acc = [half; 3];
            for (k, &w) in t.weights.iter().enumerate() {
                let pixel = &src.data[first + k * 3..first + k * 3 + 3];
                for (a, &v) in acc.iter_mut().zip(pixel) {
                    *a += i64::from(v) * i64::from(w);
                }
            }
            data.extend(acc.map(clip8));
        }
    }
    data
}

/// PIL's vertical pass over the image columns `cols` of `src`, one output row per tap set:
/// `taps.len() x cols.len()` pixels.
fn resample_columns(src: Region, cols: std::ops::Range<usize>, taps: &[Taps]) -> Vec<u8> {
    let half = 1i64 << (PRECISION_BITS - 1);
    let stride = src.width * 3;
    let mut data = Vec::with_capacity(taps.len() * cols.len() * 3);
    for t in taps {
        let (lo, hi) = (src.at(t.start, cols.start), src.at(t.start, cols.end));
        for x in lo..hi {
            let mut acc = half;
            for (k, &w) in t.weights.iter().enumerate() {
                acc += i64::from(src.data[x + k * stride]) * i64::from(w);
            }
            data.push(clip8(acc));
        }
    }
    data
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

    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = x
                .wrapping_mul(2654435761)
                .wrapping_add(y.wrapping_mul(40503));
            image::Rgb([(v >> 3) as u8, (x * 7 + y) as u8, (v >> 11) as u8])
        })
    }

    /// The crop-only resize is bit for bit the full resize then the crop, in both pass orders
    /// (the vertical one first when the height shrinks much more), up and down, and for
    /// windows at the edges.
    #[test]
    fn a_window_of_the_resize_is_the_crop_of_the_full_resize() {
        let img = pattern(37, 61);
        for filter in [ResizeFilter::Bilinear, ResizeFilter::Bicubic] {
            for (ow, oh) in [(20, 9), (80, 50), (37, 20), (15, 61), (90, 130), (5, 200)] {
                let full = resize_pil(&img, ow, oh, filter);
                for (cols, rows) in [
                    (0..ow, 0..oh),
                    (1..ow - 2, 3..oh - 1),
                    (ow - 1..ow, 0..1),
                    (2..4, oh / 2..oh),
                ] {
                    let window =
                        resize_pil_window(&img, (ow, oh), filter, cols.clone(), rows.clone());
                    let crop = image::imageops::crop_imm(
                        &full,
                        cols.start,
                        rows.start,
                        cols.len() as u32,
                        rows.len() as u32,
                    )
                    .to_image();
                    assert_eq!(window, crop, "{filter:?} {ow}x{oh} {cols:?} {rows:?}");
                }
            }
        }
        // The network view computes only the crop and is still the full resize's crop.
        for (w, h) in [(3, 300), (300, 3), (41, 29)] {
            let img = pattern(w, h);
            let p = Preprocess::imagenet(24).with_filter(ResizeFilter::Bicubic);
            let (rw, rh) = resized_short_side(w, h, p.resize_short_side());
            let full = center_crop(&resize_pil(&img, rw, rh, p.filter), 24, 24);
            assert_eq!(p.network_view(&img), full, "{w}x{h}");
        }
    }

    /// A panorama under the pixel limit is preprocessed without building its full resize
    /// (2 x 2,000,000 pixels resize to 256 x 256,000,000: 197 GB).
    #[test]
    fn a_panorama_is_preprocessed_without_its_full_resize() {
        let tall = RgbImage::from_pixel(2, 2_000_000, image::Rgb([10, 200, 30]));
        let view = Preprocess::default().network_view(&tall);
        assert_eq!(view.dimensions(), (224, 224));
        assert!(view.pixels().all(|p| p.0 == [10, 200, 30]));
        let wide = RgbImage::from_pixel(1_000_000, 3, image::Rgb([5, 6, 7]));
        let view = Preprocess::default().network_view(&wide);
        assert!(view.pixels().all(|p| p.0 == [5, 6, 7]));
        // The longer side would not fit in u32: it saturates instead of wrapping around.
        assert_eq!(resized_short_side(1, 100_000_000, 256), (256, u32::MAX),);
        assert_eq!(resized_short_side(0, 5, 256), (256, 1280));
    }

    #[test]
    fn the_resize_matrix_window_is_a_slice_of_the_whole_matrix() {
        for (n_in, n_out, range) in [(41u32, 17u32, 3..12u32), (10, 40, 0..40), (9, 9, 2..5)] {
            let full = resize_matrix(n_in, n_out, ResizeFilter::Bicubic);
            let (first, window, span) =
                resize_matrix_window(n_in, n_out, ResizeFilter::Bicubic, range.clone());
            for (row, out) in range.enumerate() {
                for x in 0..n_in as usize {
                    let want = full[out as usize * n_in as usize + x];
                    let got = if (first..first + span).contains(&x) {
                        window[row * span + x - first]
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "{n_in}->{n_out} row {out} col {x}");
                }
            }
        }
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
