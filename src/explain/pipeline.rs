//! The preprocessing (resize, centre crop, normalise) as a differentiable function of a
//! photo's pixels, so that gradient loops can change the photo itself: an adversarial photo
//! saved as PNG then goes through the very same preprocessing when it is loaded again.

use candle_core::{Device, Result, Tensor};
use image::RgbImage;

use crate::vision::preprocess::{resize_matrix_window, Preprocess};

/// `[1, 3, H, W]` pixels (0 to 255, f32) → network input `[1, 3, S, S]`.
///
/// Only the crop's rows and columns of the resize are built, over the source pixels they
/// read: a panorama's whole resize matrix (resized side x photo side) would not fit in memory.
pub struct PhotoPipeline {
    /// The source rows the crop reads: `first_row .. first_row + H'`.
    first_row: usize,
    /// The source columns the crop reads: `first_column .. first_column + W'`.
    first_column: usize,
    /// Rows of the vertical resize that the crop keeps: `[S, H']`.
    rows: Tensor,
    /// Columns of the horizontal resize that the crop keeps, transposed: `[W', S]`.
    columns_t: Tensor,
    /// `[1, 3, 1, 1]`.
    mean: Tensor,
    std: Tensor,
}

impl PhotoPipeline {
    /// The pipeline of `preprocess` for a `width x height` photo.
    pub fn new(preprocess: &Preprocess, width: u32, height: u32, device: &Device) -> Result<Self> {
        let ((rw, rh), (left, top)) = preprocess.view_geometry(width, height);
        let size = preprocess.size;
        let (first_row, vertical, span_h) =
            resize_matrix_window(height, rh, preprocess.filter, top..top + size);
        let (first_column, horizontal, span_w) =
            resize_matrix_window(width, rw, preprocess.filter, left..left + size);
        let rows = Tensor::from_vec(vertical, (size as usize, span_h), device)?;
        let columns_t = Tensor::from_vec(horizontal, (size as usize, span_w), device)?
            .t()?
            .contiguous()?;
        let stats = |v: [f32; 3]| Tensor::from_vec(v.to_vec(), (1, 3, 1, 1), device);
        Ok(Self {
            first_row,
            first_column,
            rows,
            columns_t,
            mean: stats(preprocess.mean)?,
            std: stats(preprocess.std)?,
        })
    }

    /// The network input for `pixels` `[1, 3, H, W]`; pixels outside the crop's reach get a
    /// zero gradient.
    pub fn apply(&self, pixels: &Tensor) -> Result<Tensor> {
        let window = pixels
            .narrow(2, self.first_row, self.rows.dim(1)?)?
            .narrow(3, self.first_column, self.columns_t.dim(0)?)?;
        let resized = self
            .rows
            .broadcast_matmul(&window)?
            .broadcast_matmul(&self.columns_t)?;
        (resized / 255.0)?
            .broadcast_sub(&self.mean)?
            .broadcast_div(&self.std)
    }
}

/// An RGB8 image as `[1, 3, H, W]` f32 pixels (0 to 255).
pub fn pixels_of(image: &RgbImage, device: &Device) -> Result<Tensor> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut chw = vec![0f32; 3 * w * h];
    for (i, p) in image.pixels().enumerate() {
        for c in 0..3 {
            chw[c * w * h + i] = f32::from(p.0[c]);
        }
    }
    Tensor::from_vec(chw, (1, 3, h, w), device)
}

/// `[1, 3, H, W]` pixels back to RGB8, rounded and clamped.
pub fn image_of(pixels: &Tensor) -> Result<RgbImage> {
    let (_, _, h, w) = pixels.dims4()?;
    let values: Vec<f32> = pixels.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
    let plane = w * h;
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        image::Rgb([0, 1, 2].map(|c| values[c * plane + i].round().clamp(0.0, 255.0) as u8))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn the_pipeline_matches_the_exact_preprocessing_to_rounding() {
        let img = RgbImage::from_fn(301, 203, |x, y| {
            image::Rgb([
                (x % 256) as u8,
                (y % 256) as u8,
                ((x * 7 + y * 3) % 256) as u8,
            ])
        });
        let pre = Preprocess::imagenet(64);
        let exact = pre.batch(&[&img], &Device::Cpu).unwrap();
        let pipeline = PhotoPipeline::new(&pre, 301, 203, &Device::Cpu).unwrap();
        let ours = pipeline
            .apply(&pixels_of(&img, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(ours.dims(), exact.dims());
        // PIL rounds each pass to 8 bits: at most ~1 level apart, i.e. 1/255/std.
        let diff = max_abs_diff(&ours, &exact);
        assert!(diff < 1.5 / 255.0 / 0.224, "{diff}");
        assert_eq!(
            image_of(&pixels_of(&img, &Device::Cpu).unwrap()).unwrap(),
            img
        );
    }

    #[test]
    fn a_panorama_pipeline_builds_only_the_crops_part_of_the_resize() {
        // 4 x 2,000,000: the whole horizontal resize would be 128,000,000 x 2,000,000 weights.
        let pre = Preprocess::imagenet(32);
        let pipeline = PhotoPipeline::new(&pre, 2_000_000, 4, &Device::Cpu).unwrap();
        assert_eq!(pipeline.rows.dims(), &[32, 4]);
        let (span_w, out) = pipeline.columns_t.dims2().unwrap();
        assert_eq!(out, 32);
        assert!(span_w < 8, "{span_w} source columns");
        let img = RgbImage::from_fn(2_000_000, 4, |x, _| image::Rgb([(x % 251) as u8, 9, 200]));
        let exact = pre.batch(&[&img], &Device::Cpu).unwrap();
        let ours = pipeline
            .apply(&pixels_of(&img, &Device::Cpu).unwrap())
            .unwrap();
        let diff = max_abs_diff(&ours, &exact);
        assert!(diff < 1.5 / 255.0 / 0.224, "{diff}");
    }
}
