//! The image preprocessing of OpenAI's `clip` package (`clip._transform(n_px)`), reproduced
//! exactly: torchvision `Resize(n_px, BICUBIC)` on a PIL image (shorter side to `n_px`, the
//! longer side `int(n_px · long / short)`), `CenterCrop(n_px)` (offsets `round((size − n)/2)`,
//! half to even), conversion to RGB, `ToTensor` (÷255) and `Normalize` with CLIP's mean/std.
//!
//! The resize is Pillow's antialiased bicubic (`ImagingResample`: a = −0.5, support 2 scaled
//! by the downscale factor, weights normalised then rounded to 22-bit fixed point,
//! horizontal pass then vertical, each rounded and clamped to 8 bits). Images with alpha are
//! resized premultiplied (`RGBA → RGBa`), as Pillow does, before the alpha is dropped.
//! Hugging Face's `CLIPImageProcessor` differs from this by a grey level, so it is not used.
//!
//! ```
//! use image::{DynamicImage, RgbImage};
//! use magma_data::curate::clip_preprocess::preprocess;
//! let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 48, image::Rgb([255, 0, 0])));
//! let pixels = preprocess(&img, 32);
//! assert_eq!(pixels.len(), 3 * 32 * 32);
//! assert!((pixels[0] - (1.0 - 0.48145466) / 0.26862954).abs() < 1e-6);
//! ```

use image::DynamicImage;

/// CLIP's per-channel normalisation mean.
pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel normalisation standard deviation (the `clip` package's literals, as
/// written; they round to the same f32 values torch uses).
#[allow(clippy::excessive_precision)]
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: per output sample, the first
/// source index and the fixed-point weights.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filter_scale;
            // C casts truncate toward zero; both bounds are then clamped into the input.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| bicubic((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let scaled = w * (1u32 << PRECISION_BITS) as f64;
                    if w < 0.0 {
                        (-0.5 + scaled) as i32
                    } else {
                        (0.5 + scaled) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's bicubic `Image.resize` on interleaved 8-bit pixels with `channels` channels.
fn resize_bicubic(
    data: &[u8],
    (w, h): (usize, usize),
    channels: usize,
    (nw, nh): (usize, usize),
) -> Vec<u8> {
    let round = 1i64 << (PRECISION_BITS - 1);
    let horizontal = if nw != w {
        let taps = coefficients(w, nw);
        let mut out = vec![0u8; nw * h * channels];
        for y in 0..h {
            let row = &data[y * w * channels..(y + 1) * w * channels];
            for (x, (start, k)) in taps.iter().enumerate() {
                for c in 0..channels {
                    let mut acc = round;
                    for (i, &kk) in k.iter().enumerate() {
                        acc += i64::from(row[(start + i) * channels + c]) * i64::from(kk);
                    }
                    out[(y * nw + x) * channels + c] = clip8(acc);
                }
            }
        }
        out
    } else {
        data.to_vec()
    };
    if nh == h {
        return horizontal;
    }
    let taps = coefficients(h, nh);
    let line = nw * channels;
    let mut out = vec![0u8; nh * line];
    for (y, (start, k)) in taps.iter().enumerate() {
        for x in 0..line {
            let mut acc = round;
            for (i, &kk) in k.iter().enumerate() {
                acc += i64::from(horizontal[(start + i) * line + x]) * i64::from(kk);
            }
            out[y * line + x] = clip8(acc);
        }
    }
    out
}

/// torchvision's `Resize(n)` output size for a `w`×`h` image.
pub fn resized_size(w: usize, h: usize, n: usize) -> (usize, usize) {
    if w <= h {
        (n, (n as f64 * h as f64 / w as f64) as usize)
    } else {
        ((n as f64 * w as f64 / h as f64) as usize, n)
    }
}

/// The `clip` package's preprocessing of one image at `n_px` (336 for ViT-L/14@336px):
/// a `3 × n_px × n_px` channel-major float tensor.
pub fn preprocess(image: &DynamicImage, n_px: usize) -> Vec<f32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (nw, nh) = resized_size(w, h, n_px);
    // Pillow resizes in the image's own mode; grey stays one channel, alpha is premultiplied.
    let (rgb, stride) = if image.color().has_alpha() {
        let rgba = image.to_rgba8();
        let mut premultiplied = rgba.into_raw();
        for px in premultiplied.chunks_exact_mut(4) {
            let a = u32::from(px[3]);
            for c in &mut px[..3] {
                // MULDIV255
                let t = u32::from(*c) * a + 128;
                *c = (((t >> 8) + t) >> 8) as u8;
            }
        }
        let mut resized = resize_bicubic(&premultiplied, (w, h), 4, (nw, nh));
        for px in resized.chunks_exact_mut(4) {
            let a = u32::from(px[3]);
            if a != 0 && a != 255 {
                for c in &mut px[..3] {
                    *c = ((255 * u32::from(*c)) / a).min(255) as u8;
                }
            }
        }
        (resized, 4)
    } else if image.color().channel_count() == 1 {
        let grey = image.to_luma8();
        (resize_bicubic(grey.as_raw(), (w, h), 1, (nw, nh)), 1)
    } else {
        let rgb = image.to_rgb8();
        (resize_bicubic(rgb.as_raw(), (w, h), 3, (nw, nh)), 3)
    };
    let top = ((nh - n_px.min(nh)) as f64 / 2.0).round_ties_even() as usize;
    let left = ((nw - n_px.min(nw)) as f64 / 2.0).round_ties_even() as usize;
    let mut out = vec![0f32; 3 * n_px * n_px];
    for y in 0..n_px {
        for x in 0..n_px {
            let src = ((top + y) * nw + left + x) * stride;
            for c in 0..3 {
                let v = if stride == 1 { rgb[src] } else { rgb[src + c] };
                out[c * n_px * n_px + y * n_px + x] = (f32::from(v) / 255.0 - MEAN[c]) / STD[c];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_a_flat_image_flat_and_sizes_follow_torchvision() {
        let flat = vec![77u8; 50 * 30 * 3];
        let out = resize_bicubic(&flat, (50, 30), 3, (20, 12));
        assert!(out.iter().all(|&v| v == 77));
        assert_eq!(resized_size(53, 37, 32), (45, 32));
        assert_eq!(resized_size(30, 71, 32), (32, 75));
    }
}
