//! Decoding user images into RGB8, safely: a pixel budget checked before any pixel buffer is
//! allocated, EXIF orientation honoured, every colour type (gray, alpha, 16-bit, CMYK) turned
//! into plain RGB, and truncated or non-image files refused with a message naming the file.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{Error, Result};

/// Largest image accepted by default: 100 megapixels (a 12000x8000 photo fits).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// Formats the app reads, for messages.
pub const SUPPORTED_FORMATS: &str = "PNG, JPEG, WebP, GIF, BMP, TIFF";

/// Reads and decodes the image at `path` into RGB8, honouring EXIF orientation.
///
/// Refuses (with [`Error::Image`] naming the file) empty files, files that are not images of a
/// supported format, truncated or corrupt images, and images above `max_pixels`.
pub fn load_rgb(path: &Path, max_pixels: u64) -> Result<RgbImage> {
    let bytes = crate::input::read_regular(path, crate::input::MAX_IMAGE_BYTES)
        .map_err(|reason| Error::image(path, reason))?;
    decode_rgb(&bytes, max_pixels).map_err(|reason| Error::image(path, reason))
}

/// Decodes an in-memory image file into RGB8 (see [`load_rgb`]); the error is a reason
/// without the file name.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> std::result::Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let Some(format) = reader.format() else {
        return Err(format!(
            "not an image, or not one of the supported formats ({SUPPORTED_FORMATS})"
        ));
    };
    if !matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    ) {
        return Err(format!(
            "{format:?} images are not supported (supported: {SUPPORTED_FORMATS})"
        ));
    }
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        return Err("truncated JPEG (the file ends before the image data does)".into());
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("not a valid {format:?} image: {e}"))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(format!(
            "the image is {width}x{height} ({:.0} megapixels), above the limit of {:.0} megapixels",
            pixels as f64 / 1e6,
            max_pixels as f64 / 1e6
        ));
    }
    if width == 0 || height == 0 {
        return Err(format!("the image has no pixels ({width}x{height})"));
    }
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("corrupt or truncated {format:?} image: {e}"))?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    // `into`, not `to`: an RGB8 photo is not copied (a second full-resolution buffer).
    Ok(image.into_rgb8())
}

/// A whole JPEG ends with the EOI marker (FF D9), possibly followed by padding; a truncated
/// one does not. The decoder itself fills missing data with grey instead of failing.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    // Cameras and editors may append a few padding bytes (or a thumbnail) after EOI.
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn gray_alpha_and_16_bit_become_rgb8() {
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(5, 4, image::Luma([7])));
        let rgb = decode_rgb(&encode(gray, ImageFormat::Png), DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(rgb.dimensions(), (5, 4));
        assert_eq!(rgb.get_pixel(0, 0).0, [7, 7, 7]);

        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            3,
            2,
            image::Rgba([10, 20, 30, 0]),
        ));
        let rgb = decode_rgb(&encode(rgba, ImageFormat::Png), DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(rgb.get_pixel(2, 1).0, [10, 20, 30]);

        let deep = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            2,
            2,
            image::Rgb([65535u16, 0, 257 * 100]),
        ));
        let rgb = decode_rgb(&encode(deep, ImageFormat::Png), DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(rgb.get_pixel(1, 1).0, [255, 0, 100]);
    }

    #[test]
    fn refuses_empty_non_image_and_truncated() {
        assert!(decode_rgb(&[], DEFAULT_MAX_PIXELS)
            .unwrap_err()
            .contains("empty"));
        let text = b"hello, I am not a picture at all";
        assert!(decode_rgb(text, DEFAULT_MAX_PIXELS)
            .unwrap_err()
            .contains("not an image"));
        let photo = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([x as u8 * 4, y as u8 * 4, 128])
        }));
        let jpeg = encode(photo, ImageFormat::Jpeg);
        let cut = &jpeg[..jpeg.len() / 2];
        assert!(decode_rgb(cut, DEFAULT_MAX_PIXELS)
            .unwrap_err()
            .contains("truncated"));
    }

    #[test]
    fn pixel_budget_is_checked_before_decoding() {
        let small = DynamicImage::ImageRgb8(RgbImage::new(100, 100));
        let err = decode_rgb(&encode(small, ImageFormat::Png), 9_999).unwrap_err();
        assert!(err.contains("above the limit"), "{err}");
    }
}
