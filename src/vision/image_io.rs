//! Decoding user images into RGB8, safely: a pixel budget checked before any pixel buffer is
//! allocated, EXIF orientation honoured, every colour type (gray, alpha, 16-bit, CMYK) turned
//! into plain RGB, and truncated or non-image files refused with a message naming the file.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

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
///
/// The decoders run isolated: a panic inside one (a valid but unusual file, such as a tiled
/// planar TIFF, can trip an assertion in a decoder) becomes an error for this file, so the
/// rest of a batch still runs, and its message is not printed by the panic hook.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> std::result::Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    match quiet_catch_unwind(|| decode_unchecked(bytes, max_pixels)) {
        Ok(result) => result,
        Err(what) => Err(format!(
            "the image decoder failed on this file ({what}); it may use a layout the decoder \
             cannot read: convert it to PNG or JPEG"
        )),
    }
}

/// Bytes a decoder may use besides its output and a copy's worth of intermediate buffers
/// (small images' tables and rows).
const DECODER_SCRATCH_BYTES: u64 = 64 << 20;

/// Largest bytes per pixel of any colour type a decoder produces (RGBA, 32-bit float).
const MAX_BYTES_PER_PIXEL: u64 = 16;

/// [`decode_rgb`] without the panic isolation.
fn decode_unchecked(bytes: &[u8], max_pixels: u64) -> std::result::Result<RgbImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
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
    // Before the header is read, the largest image the pixel budget allows (PNG's decoder
    // takes its limits only here); tightened to this image's own size below.
    reader.limits(decoder_limits(
        max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL),
        max_pixels,
    ));
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
    // The output image itself plus bounded scratch: a header that declares huge chunks cannot
    // make the decoder allocate more than what a picture of this size needs.
    decoder
        .set_limits(decoder_limits(decoder.total_bytes(), max_pixels))
        .map_err(|e| format!("the {format:?} image is too large to decode: {e}"))?;
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("corrupt or truncated {format:?} image: {e}"))?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    // `into`, not `to`: an RGB8 photo is not copied (a second full-resolution buffer).
    Ok(image.into_rgb8())
}

/// Decoder limits for an output of `output_bytes` within a budget of `max_pixels`: the output,
/// as much again for intermediate buffers (one TIFF strip may hold the whole image), and
/// [`DECODER_SCRATCH_BYTES`].
fn decoder_limits(output_bytes: u64, max_pixels: u64) -> Limits {
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    let mut limits = Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(
        output_bytes
            .saturating_mul(2)
            .saturating_add(DECODER_SCRATCH_BYTES),
    );
    limits
}

thread_local! {
    /// Whether this thread is inside [`quiet_catch_unwind`], whose panics are reported as
    /// errors and so must not be printed by the panic hook.
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(its message)` without the default hook printing it.
///
/// The panic hook is global to the process, so it is replaced once by one that defers to the
/// previous hook except on threads inside this function (a thread-local flag): other
/// threads' panics are still printed as before.
fn quiet_catch_unwind<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was_quiet = QUIET_PANICS.with(|q| q.replace(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(was_quiet));
    outcome.map_err(|payload| {
        crate::error::panic_message(payload.as_ref()).unwrap_or_else(|| "an internal error".into())
    })
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

    /// An uncompressed 8-bit RGB TIFF of `w x h` pixels stored as `tile x tile` tiles, one
    /// plane per colour (PlanarConfiguration 2), as Pillow and libtiff read it.
    pub(crate) fn tiled_planar_tiff(w: u32, h: u32, tile: u32) -> Vec<u8> {
        let (across, down) = (w.div_ceil(tile), h.div_ceil(tile));
        let tiles = across * down * 3;
        let tile_bytes = tile * tile;
        let entries: u32 = 11;
        let ifd_end = 8 + 2 + entries * 12 + 4;
        let bits_at = ifd_end;
        let offsets_at = bits_at + 6;
        let counts_at = offsets_at + 4 * tiles;
        let data_at = counts_at + 4 * tiles;
        let mut out = Vec::new();
        out.extend(b"II");
        out.extend(42u16.to_le_bytes());
        out.extend(8u32.to_le_bytes());
        out.extend((entries as u16).to_le_bytes());
        let mut entry = |tag: u16, kind: u16, count: u32, value: u32| {
            out.extend(tag.to_le_bytes());
            out.extend(kind.to_le_bytes());
            out.extend(count.to_le_bytes());
            out.extend(value.to_le_bytes());
        };
        const SHORT: u16 = 3;
        const LONG: u16 = 4;
        entry(256, LONG, 1, w); // ImageWidth
        entry(257, LONG, 1, h); // ImageLength
        entry(258, SHORT, 3, bits_at); // BitsPerSample 8, 8, 8
        entry(259, SHORT, 1, 1); // no compression
        entry(262, SHORT, 1, 2); // RGB
        entry(277, SHORT, 1, 3); // SamplesPerPixel
        entry(284, SHORT, 1, 2); // planar
        entry(322, LONG, 1, tile); // TileWidth
        entry(323, LONG, 1, tile); // TileLength
        entry(324, LONG, tiles, offsets_at); // TileOffsets
        entry(325, LONG, tiles, counts_at); // TileByteCounts
        out.extend(0u32.to_le_bytes());
        for _ in 0..3 {
            out.extend(8u16.to_le_bytes());
        }
        for i in 0..tiles {
            out.extend((data_at + i * tile_bytes).to_le_bytes());
        }
        for _ in 0..tiles {
            out.extend(tile_bytes.to_le_bytes());
        }
        for i in 0..tiles {
            out.extend(std::iter::repeat_n((i * 20) as u8, tile_bytes as usize));
        }
        out
    }

    #[test]
    fn a_decoder_panic_is_an_error_for_that_file() {
        // The tiff crate asserts on tiled planar images (valid TIFFs that Pillow reads).
        let tiff = tiled_planar_tiff(40, 24, 16);
        let err = decode_rgb(&tiff, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(err.contains("decoder failed"), "{err}");
        // The hook is back to normal for other panics, and the next image decodes.
        let png = encode(
            DynamicImage::ImageRgb8(RgbImage::new(3, 3)),
            ImageFormat::Png,
        );
        assert!(decode_rgb(&png, DEFAULT_MAX_PIXELS).is_ok());
        assert!(!QUIET_PANICS.with(std::cell::Cell::get));
    }

    #[test]
    fn pixel_budget_is_checked_before_decoding() {
        let small = DynamicImage::ImageRgb8(RgbImage::new(100, 100));
        let err = decode_rgb(&encode(small, ImageFormat::Png), 9_999).unwrap_err();
        assert!(err.contains("above the limit"), "{err}");
    }
}
