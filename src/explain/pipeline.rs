//! The preprocessing (resize, centre crop, normalise) as a differentiable function of a
//! photo's pixels, so that gradient loops can change the photo itself: an adversarial photo
//! saved as PNG then goes through the very same preprocessing when it is loaded again.

use candle_core::{Device, Result, Tensor};
use image::RgbImage;

use crate::vision::preprocess::{resize_matrix, Preprocess};

/// `[1, 3, H, W]` pixels (0 to 255, f32) → network input `[1, 3, S, S]`.
pub struct PhotoPipeline {
    /// Rows of the vertical resize that the crop keeps: `[S, H]`.
    rows: Tensor,
    /// Columns of the horizontal resize that the crop keeps, transposed: `[W, S]`.
    columns_t: Tensor,
    /// `[1, 3, 1, 1]`.
    mean: Tensor,
    std: Tensor,
}

impl PhotoPipeline {
    /// The pipeline of `preprocess` for a `width x height` photo.
    pub fn new(preprocess: &Preprocess, width: u32, height: u32, device: &Device) -> Result<Self> {
        let ((rw, rh), (left, top)) = preprocess.view_geometry(width, height);
        let size = preprocess.size as usize;
        let vertical = Tensor::from_vec(
            resize_matrix(height, rh, preprocess.filter),
            (rh as usize, height as usize),
            device,
        )?;
        let horizontal = Tensor::from_vec(
            resize_matrix(width, rw, preprocess.filter),
            (rw as usize, width as usize),
            device,
        )?;
        let rows = vertical.narrow(0, top as usize, size)?.contiguous()?;
        let columns_t = horizontal
            .narrow(0, left as usize, size)?
            .t()?
            .contiguous()?;
        let stats = |v: [f32; 3]| Tensor::from_vec(v.to_vec(), (1, 3, 1, 1), device);
        Ok(Self {
            rows,
            columns_t,
            mean: stats(preprocess.mean)?,
            std: stats(preprocess.std)?,
        })
    }

    /// The network input for `pixels` `[1, 3, H, W]`.
    pub fn apply(&self, pixels: &Tensor) -> Result<Tensor> {
        let resized = self
            .rows
            .broadcast_matmul(pixels)?
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
        let diff: f32 = (ours - exact)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1.5 / 255.0 / 0.224, "{diff}");
        assert_eq!(
            image_of(&pixels_of(&img, &Device::Cpu).unwrap()).unwrap(),
            img
        );
    }
}
