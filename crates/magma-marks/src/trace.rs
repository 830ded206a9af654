//! Set-of-Mark for trace data (video and robot frames): a red filled circle with a white 1-based number
//! centred on each trace's start point, sized from the image width (the reference's `som_prompting` in
//! `data/utils/som_tom.py`).

use image::RgbImage;

use crate::draw::pil_fill_ellipse;
use crate::error::MarksError;
use crate::font::{MarkFont, TextLayout, MAX_FONT_SIZE};
use crate::magma::{MARK_RED, MARK_WHITE};

/// How trace marks are sized.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TraceMarkStyle {
    /// The font grows from 1 px until the smaller side of "55" reaches this fraction of the image width.
    pub size_fraction: f64,
    /// PIL layout engine whose text metrics are reproduced.
    pub layout: TextLayout,
}

impl TraceMarkStyle {
    /// `som_prompting`: "55" reaches 3 % of the image width.
    pub const SOM: TraceMarkStyle = TraceMarkStyle {
        size_fraction: 0.03,
        layout: TextLayout::Raqm,
    };
    /// `som_prompting_with_priors`: 2 % of the image width.
    pub const WITH_PRIORS: TraceMarkStyle = TraceMarkStyle {
        size_fraction: 0.02,
        layout: TextLayout::Raqm,
    };
}

impl Default for TraceMarkStyle {
    fn default() -> Self {
        Self::SOM
    }
}

/// Geometry of one drawn trace mark.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TraceMark {
    /// The number drawn (the caller's id, 1-based in the reference).
    pub id: u32,
    /// Centre of the circle: the trace's start point, in pixels.
    pub center: (f32, f32),
    /// The ellipse's bounding box `[x0, y0, x1, y1]` as passed to PIL.
    pub circle: [f64; 4],
    /// Where the text's layout origin was put.
    pub text_origin: (f64, f64),
    /// Font size in pixels per em.
    pub font_size: u32,
}

/// The reference's font size for trace marks on an image `image_width` pixels wide.
///
/// # Examples
///
/// ```
/// use magma_marks::{trace_mark_font_size, TraceMarkStyle};
///
/// // 3 % of 640 = 19.2 px: "55" is first at least that tall and wide at 21 px.
/// assert_eq!(trace_mark_font_size(640, TraceMarkStyle::SOM).unwrap(), 21);
/// ```
pub fn trace_mark_font_size(image_width: u32, style: TraceMarkStyle) -> Result<u32, MarksError> {
    let font = MarkFont::bundled();
    let target = style.size_fraction * f64::from(image_width);
    let mut size = 1;
    loop {
        let s = font.text_size("55", size, style.layout)?;
        if f64::from(s.width.min(s.height)) >= target {
            return Ok(size);
        }
        if size == MAX_FONT_SIZE {
            return Err(MarksError::FontSize(size + 1));
        }
        size += 1;
    }
}

/// Draws trace marks with [`TraceMarkStyle::SOM`]: for point `i`, a red filled circle centred on
/// `points[i]` (pixels, `(x, y)`) and the number `ids[i]` in white.
///
/// # Examples
///
/// ```
/// use image::RgbImage;
/// use magma_marks::draw_trace_marks;
///
/// let mut frame = RgbImage::new(256, 256);
/// let marks = draw_trace_marks(&mut frame, &[(40.0, 60.0), (200.5, 128.0)], &[2, 1]).unwrap();
/// assert_eq!(marks[0].id, 2);
/// assert_eq!(frame.get_pixel(40, 60).0[0], 255); // red (or white text) at the centre
/// ```
pub fn draw_trace_marks(
    img: &mut RgbImage,
    points: &[(f32, f32)],
    ids: &[u32],
) -> Result<Vec<TraceMark>, MarksError> {
    draw_trace_marks_styled(img, points, ids, TraceMarkStyle::SOM)
}

/// [`draw_trace_marks`] with an explicit style (e.g. [`TraceMarkStyle::WITH_PRIORS`]).
///
/// Each circle spans `point ± (max(text_w, text_h) // 2 + 1)` and the text origin is
/// `(x − text_w // 2, y − text_h // 2 − 3)`, with text sizes measured as PIL does for `str(id)`.
pub fn draw_trace_marks_styled(
    img: &mut RgbImage,
    points: &[(f32, f32)],
    ids: &[u32],
    style: TraceMarkStyle,
) -> Result<Vec<TraceMark>, MarksError> {
    if points.len() != ids.len() {
        return Err(MarksError::TraceMarkCount {
            points: points.len(),
            ids: ids.len(),
        });
    }
    if let Some((index, &(x, y))) = points
        .iter()
        .enumerate()
        .find(|(_, (x, y))| !x.is_finite() || !y.is_finite())
    {
        return Err(MarksError::TracePoint { index, x, y });
    }
    if points.is_empty() {
        return Ok(Vec::new());
    }
    let font = MarkFont::bundled();
    let font_size = trace_mark_font_size(img.width(), style)?;
    let mut marks = Vec::with_capacity(points.len());
    for (&(px, py), &id) in points.iter().zip(ids) {
        let text = id.to_string();
        let size = font.text_size(&text, font_size, style.layout)?;
        let (x, y) = (f64::from(px), f64::from(py));
        let half = f64::from(size.width.max(size.height) / 2) + 1.0;
        let circle = [x - half, y - half, x + half, y + half];
        pil_fill_ellipse(img, circle[0], circle[1], circle[2], circle[3], MARK_RED);
        let text_origin = (
            x - f64::from(size.width / 2),
            y - f64::from(size.height / 2) - 3.0,
        );
        font.draw_text(img, text_origin, &text, font_size, style.layout, MARK_WHITE)?;
        marks.push(TraceMark {
            id,
            center: (px, py),
            circle,
            text_origin,
            font_size,
        });
    }
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circle_and_text_follow_the_reference_formula() {
        let mut img = RgbImage::new(640, 480);
        let marks =
            draw_trace_marks(&mut img, &[(100.0, 120.0), (300.25, 50.75)], &[7, 12]).unwrap();
        // 640 px wide → 21 px font; PIL sizes: "7" is 12×20, "12" is 23×20 (textbbox right/bottom), so
        // the circles reach 20 // 2 + 1 = 11 and 23 // 2 + 1 = 12 px from the centre.
        assert_eq!(marks[0].font_size, 21);
        assert_eq!(marks[0].circle, [89.0, 109.0, 111.0, 131.0]);
        assert_eq!(marks[0].text_origin, (100.0 - 6.0, 120.0 - 10.0 - 3.0));
        assert_eq!(marks[1].circle, [288.25, 38.75, 312.25, 62.75]);
        assert_eq!(marks[1].text_origin, (300.25 - 11.0, 50.75 - 10.0 - 3.0));
        // Red inside the circle left of the text, untouched just outside it.
        assert_eq!(img.get_pixel(90, 120).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(88, 120).0, [0, 0, 0]);
    }

    #[test]
    fn with_priors_uses_smaller_marks() {
        let som = trace_mark_font_size(1920, TraceMarkStyle::SOM).unwrap();
        let priors = trace_mark_font_size(1920, TraceMarkStyle::WITH_PRIORS).unwrap();
        assert!(priors < som, "{priors} < {som}");
    }

    #[test]
    fn mismatched_and_non_finite_inputs_are_errors() {
        let mut img = RgbImage::new(64, 64);
        assert!(matches!(
            draw_trace_marks(&mut img, &[(1.0, 1.0)], &[]),
            Err(MarksError::TraceMarkCount { points: 1, ids: 0 })
        ));
        assert!(matches!(
            draw_trace_marks(&mut img, &[(1.0, 1.0), (f32::NAN, 2.0)], &[1, 2]),
            Err(MarksError::TracePoint { index: 1, .. })
        ));
    }
}
