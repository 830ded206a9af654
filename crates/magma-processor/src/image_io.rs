//! Decoding PNG / JPEG / GIF files into 8-bit RGB, with a pixel limit checked before decoding.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageBuffer, ImageReader, Limits, Pixel, Rgb, RgbImage};

use crate::ProcessorError;

/// Default pixel limit: 64 megapixels (e.g. 8192 x 8192), generous for photos and screenshots while
/// stopping decompression bombs.
pub const DEFAULT_MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Reads and decodes an image file into 8-bit RGB (see [`decode_rgb_image`] for the rules).
///
/// ```no_run
/// use magma_processor::{load_rgb_image, DEFAULT_MAX_PIXELS};
/// let img = load_rgb_image("photo.png".as_ref(), DEFAULT_MAX_PIXELS)?;
/// println!("{}x{}", img.width(), img.height());
/// # Ok::<(), magma_processor::ProcessorError>(())
/// ```
pub fn load_rgb_image(path: &Path, max_pixels: u64) -> Result<RgbImage, ProcessorError> {
    let bytes = std::fs::read(path).map_err(|e| ProcessorError::io(path, e))?;
    decode_rgb_image(&bytes, max_pixels, &path.display().to_string())
}

/// Decodes an encoded PNG, JPEG or GIF (first frame) into 8-bit RGB. `what` names the input in
/// errors (a file name, "data URL #2", ...).
///
/// The width and height are read from the header first: a zero side or more than `max_pixels`
/// pixels is rejected before any pixel data is decoded. Conversion to RGB follows PIL's
/// `convert("RGB")`: alpha is dropped (no compositing), gray is replicated to three channels,
/// palettes are expanded, and 16-bit samples keep their high byte (`v >> 8`).
///
/// ```
/// use magma_processor::decode_rgb_image;
/// let err = decode_rgb_image(b"not an image", 1 << 20, "upload.bin").unwrap_err();
/// assert!(err.to_string().contains("upload.bin"));
/// ```
pub fn decode_rgb_image(
    bytes: &[u8],
    max_pixels: u64,
    what: &str,
) -> Result<RgbImage, ProcessorError> {
    let decode_error = |message: String| ProcessorError::ImageDecode {
        what: what.to_string(),
        message,
    };
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| decode_error(e.to_string()))
    };

    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|e| decode_error(e.to_string()))?;
    if width == 0 || height == 0 {
        return Err(ProcessorError::EmptyImage {
            what: what.to_string(),
            width,
            height,
        });
    }
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(ProcessorError::ImageTooLarge {
            what: what.to_string(),
            width,
            height,
            pixels,
            max_pixels,
        });
    }

    let mut decoder = reader()?;
    let mut limits = Limits::default();
    // Room for the largest decoded layout (16-bit RGBA, 8 bytes a pixel) plus decoder scratch.
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    decoder.limits(limits);
    let decoded = decoder.decode().map_err(|e| decode_error(e.to_string()))?;
    Ok(to_rgb8(decoded))
}

/// Converts any decoded image to 8-bit RGB with PIL's `convert("RGB")` rules (see
/// [`decode_rgb_image`]).
///
/// ```
/// use image::{DynamicImage, Rgba, RgbaImage};
/// use magma_processor::image_io::to_rgb8;
/// let rgba = RgbaImage::from_pixel(1, 1, Rgba([10, 20, 30, 0]));
/// // Fully transparent, yet the colour stays: alpha is dropped, not composited.
/// assert_eq!(to_rgb8(DynamicImage::ImageRgba8(rgba)).get_pixel(0, 0).0, [10, 20, 30]);
/// ```
pub fn to_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(img) => map_rgb(&img, |p| p.to_rgb().0),
        DynamicImage::ImageLuma8(img) => map_rgb(&img, |p| [p.0[0]; 3]),
        DynamicImage::ImageLumaA8(img) => map_rgb(&img, |p| [p.0[0]; 3]),
        // 16-bit: keep the high byte (truncation, as PIL does), not image's rounding `(v + 128) / 257`.
        DynamicImage::ImageRgb16(img) => map_rgb(&img, |p| p.0.map(high_byte)),
        DynamicImage::ImageRgba16(img) => map_rgb(&img, |p| p.to_rgb().0.map(high_byte)),
        DynamicImage::ImageLuma16(img) => map_rgb(&img, |p| [high_byte(p.0[0]); 3]),
        DynamicImage::ImageLumaA16(img) => map_rgb(&img, |p| [high_byte(p.0[0]); 3]),
        other => other.into_rgb8(),
    }
}

fn high_byte(v: u16) -> u8 {
    (v >> 8) as u8
}

fn map_rgb<P: Pixel>(
    img: &ImageBuffer<P, Vec<P::Subpixel>>,
    f: impl Fn(&P) -> [u8; 3],
) -> RgbImage {
    ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
        Rgb(f(img.get_pixel(x, y)))
    })
}
