//! Pixel primitives with the reference's drawing semantics.
//!
//! PIL's `ImageDraw.rectangle` truncates float corners toward zero, includes both corner pixels and draws
//! an outline of `width` pixels *inward* from the box edge; `ImageDraw.ellipse` fills the ellipse
//! inscribed in the inclusive box of its floored corners. Everything is clipped to the image.

use image::{Rgb, RgbImage};

/// Blends `color` over the pixel at `(x, y)` with weight `coverage` (0..=1); outside the image it is a
/// no-op.
pub(crate) fn blend_pixel(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>, coverage: f32) {
    let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y)) else {
        return;
    };
    if x >= img.width() || y >= img.height() {
        return;
    }
    let a = coverage.clamp(0.0, 1.0);
    let pixel = img.get_pixel_mut(x, y);
    for (dst, src) in pixel.0.iter_mut().zip(color.0) {
        *dst = (f32::from(*dst) * (1.0 - a) + f32::from(src) * a).round() as u8;
    }
}

/// An inclusive pixel rectangle clipped to the image, or `None` when nothing of it is visible.
fn clip(img: &RgbImage, x0: i64, y0: i64, x1: i64, y1: i64) -> Option<(u32, u32, u32, u32)> {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let (cx0, cy0) = (x0.max(0), y0.max(0));
    let (cx1, cy1) = (x1.min(w - 1), y1.min(h - 1));
    if cx0 > cx1 || cy0 > cy1 {
        return None;
    }
    // All four are within 0..w or 0..h here, so the conversions are lossless.
    Some((cx0 as u32, cy0 as u32, cx1 as u32, cy1 as u32))
}

/// Fills the inclusive integer rectangle `[x0, x1] × [y0, y1]`.
pub(crate) fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>) {
    let Some((cx0, cy0, cx1, cy1)) = clip(img, x0, y0, x1, y1) else {
        return;
    };
    for y in cy0..=cy1 {
        for x in cx0..=cx1 {
            img.put_pixel(x, y, color);
        }
    }
}

/// PIL `draw.rectangle([x0, y0, x1, y1], fill=color)`.
pub(crate) fn pil_fill_rect(
    img: &mut RgbImage,
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    color: Rgb<u8>,
) {
    fill_rect(img, x0 as i64, y0 as i64, x1 as i64, y1 as i64, color);
}

/// PIL `draw.rectangle([x0, y0, x1, y1], outline=color, width=width)`: bands of `width` pixels inside
/// the inclusive box (a box thinner than two bands is filled).
pub(crate) fn pil_outline_rect(
    img: &mut RgbImage,
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    width: i64,
    color: Rgb<u8>,
) {
    // `as i64` truncates toward zero, as PIL's C layer does with float coordinates.
    let (x0, y0, x1, y1) = (x0 as i64, y0 as i64, x1 as i64, y1 as i64);
    let band = width.max(1) - 1;
    fill_rect(img, x0, y0, x1, (y0 + band).min(y1), color);
    fill_rect(img, x0, (y1 - band).max(y0), x1, y1, color);
    fill_rect(img, x0, y0, (x0 + band).min(x1), y1, color);
    fill_rect(img, (x1 - band).max(x0), y0, x1, y1, color);
}

/// PIL `draw.ellipse([x0, y0, x1, y1], fill=color)`: the ellipse inscribed in the inclusive pixel box of
/// the floored corners (pixel centres inside the ellipse are painted).
pub(crate) fn pil_fill_ellipse(
    img: &mut RgbImage,
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    color: Rgb<u8>,
) {
    let (bx0, by0, bx1, by1) = (x0.floor(), y0.floor(), x1.floor(), y1.floor());
    let (rx, ry) = ((bx1 - bx0 + 1.0) / 2.0, (by1 - by0 + 1.0) / 2.0);
    let (cx, cy) = (bx0 + rx, by0 + ry);
    let Some((cx0, cy0, cx1, cy1)) = clip(img, bx0 as i64, by0 as i64, bx1 as i64, by1 as i64)
    else {
        return;
    };
    for y in cy0..=cy1 {
        let dy = (f64::from(y) + 0.5 - cy) / ry;
        for x in cx0..=cx1 {
            let dx = (f64::from(x) + 0.5 - cx) / rx;
            if dx * dx + dy * dy <= 1.0 {
                img.put_pixel(x, y, color);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: Rgb<u8> = Rgb([255, 0, 0]);

    fn painted(img: &RgbImage) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| p.0 != [0, 0, 0])
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn outline_is_inclusive_truncated_and_inward() {
        // PIL: rectangle([3.7, 2.6, 12.2, 9.9], outline=255, width=2) paints x 3..=12, y 2..=9 with a
        // 2-px band and leaves x 5..=10, y 4..=7 empty.
        let mut img = RgbImage::new(30, 24);
        pil_outline_rect(&mut img, 3.7, 2.6, 12.2, 9.9, 2, RED);
        let px = painted(&img);
        assert_eq!(px.len(), 10 * 8 - 6 * 4);
        assert!(px
            .iter()
            .all(|&(x, y)| (3..=12).contains(&x) && (2..=9).contains(&y)));
        assert!(!px
            .iter()
            .any(|&(x, y)| (5..=10).contains(&x) && (4..=7).contains(&y)));
    }

    #[test]
    fn fill_clips_negative_corners() {
        let mut img = RgbImage::new(30, 24);
        pil_fill_rect(&mut img, -3.7, -2.6, 12.5, 9.5, RED);
        assert_eq!(painted(&img).len(), 13 * 10);
    }

    #[test]
    fn ellipse_fills_the_floored_box_symmetrically() {
        let mut img = RgbImage::new(30, 30);
        pil_fill_ellipse(&mut img, 4.0, 3.0, 14.0, 13.0, RED);
        let px = painted(&img);
        let (xs, ys): (Vec<u32>, Vec<u32>) = px.iter().copied().unzip();
        assert_eq!(
            (*xs.iter().min().unwrap(), *xs.iter().max().unwrap()),
            (4, 14)
        );
        assert_eq!(
            (*ys.iter().min().unwrap(), *ys.iter().max().unwrap()),
            (3, 13)
        );
        // PIL paints 97 pixels for an 11×11 box; the centre-sampling rule paints the same count here.
        assert_eq!(px.len(), 97);
        assert!(px.iter().all(|&(x, y)| px.contains(&(18 - x, 16 - y))));
    }
}
