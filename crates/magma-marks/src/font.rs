//! The bundled mark font (Liberation Sans Regular) and PIL-compatible text metrics.
//!
//! The reference draws marks with PIL's `ImageFont.truetype("arial.ttf", size)` and sizes every label
//! box from `ImageDraw.textbbox((0, 0), text)`: the label is `right` wide and `bottom` tall. Those two
//! numbers decide where labels go (about half of the reference's label choices are decided by score gaps
//! under 0.001), so this module reproduces them exactly, in FreeType's 26.6 fixed point:
//!
//! * the em is scaled with `FT_DivFix(size·64, units_per_em)` and every font-unit value with `FT_MulFix`;
//! * `bottom` is the ascender (rounded *up* to a whole pixel, as FreeType does for hinted TrueType sizes)
//!   minus the lowest hinted ink row (the baseline overshoot of round digits such as 5, 0, 3);
//! * `right` is the larger of the pen position after the last glyph and the last glyph's ink edge, with
//!   per-glyph advances either kept in 26.6 ([`TextLayout::Raqm`], Pillow's default when libraqm is
//!   present, as in the PyPI wheels) or rounded to whole pixels first ([`TextLayout::Basic`]).
//!
//! Liberation Sans is metric-compatible with Arial (same advances and vertical metrics), so these sizes are
//! the ones the reference measures. The metrics are defined for label strings (ASCII digits; the only digit
//! kerning pair is "11"); `tests/pil_metrics.rs` checks them against Pillow 13 / FreeType 2.14.

use ab_glyph::{Font, FontRef, GlyphId, OutlinedGlyph, PxScale};
use image::{Rgb, RgbImage};

use crate::draw::blend_pixel;
use crate::error::MarksError;

/// The bundled Liberation Sans Regular (SIL OFL 1.1, see `assets/fonts/LICENSE-LiberationSans-OFL.txt`).
static LIBERATION_SANS: &[u8] = include_bytes!("../assets/fonts/LiberationSans-Regular.ttf");

/// How Pillow lays out a line of text; only the label width depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextLayout {
    /// HarfBuzz via libraqm (Pillow's default whenever libraqm is available, as in the PyPI wheels):
    /// glyph advances accumulate in 26.6 fixed point and the sum is rounded once.
    #[default]
    Raqm,
    /// Pillow's basic layout (no libraqm): every hinted advance is rounded to whole pixels first.
    Basic,
}

/// A label's size as PIL measures it: the right and bottom edges of `textbbox((0, 0), text)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TextSize {
    /// `right` of the text bbox at the origin, in pixels.
    pub width: u32,
    /// `bottom` of the text bbox at the origin, in pixels.
    pub height: u32,
}

/// The bundled font with PIL-compatible metrics and a rasteriser for white-on-red labels.
///
/// # Examples
///
/// ```
/// use magma_marks::{MarkFont, TextLayout};
///
/// let font = MarkFont::bundled();
/// // PIL: ImageDraw.textbbox((0, 0), "555", font=truetype("LiberationSans-Regular.ttf", 33))
/// let size = font.text_size("555", 33, TextLayout::Raqm).unwrap();
/// assert_eq!((size.width, size.height), (55, 30));
/// ```
#[derive(Debug, Clone)]
pub struct MarkFont {
    font: FontRef<'static>,
}

/// FreeType's `FT_DivFix`: `a / b` in 16.16 fixed point, rounded.
fn div_fix(a: i64, b: i64) -> i64 {
    (a * 65536 + b / 2) / b
}

/// FreeType's `FT_MulFix`: `a · b / 65536`, rounded half away from zero.
fn mul_fix(a: i64, b: i64) -> i64 {
    let product = a * b;
    let magnitude = (product.abs() + 0x8000) >> 16;
    if product < 0 {
        -magnitude
    } else {
        magnitude
    }
}

fn ceil_26_6(v: i64) -> i64 {
    (v + 63).div_euclid(64)
}

fn floor_26_6(v: i64) -> i64 {
    v.div_euclid(64)
}

fn round_26_6(v: i64) -> i64 {
    (v + 32).div_euclid(64)
}

/// Largest pixel size accepted, far above anything a mark needs (a guard against runaway size loops).
pub const MAX_FONT_SIZE: u32 = 4096;

impl MarkFont {
    /// The bundled Liberation Sans Regular.
    pub fn bundled() -> Self {
        // The bytes are compiled in and checked by the unit tests, so parsing cannot fail at run time.
        match FontRef::try_from_slice(LIBERATION_SANS) {
            Ok(font) => Self { font },
            Err(_) => unreachable!("the bundled Liberation Sans is a valid TrueType font"),
        }
    }

    fn units_per_em(&self) -> i64 {
        self.font.units_per_em().map_or(2048, |u| u.round() as i64)
    }

    /// FreeType's 16.16 scale from font units to 26.6 pixels at `size` px per em.
    fn scale(&self, size: u32) -> i64 {
        div_fix(i64::from(size) * 64, self.units_per_em())
    }

    /// HarfBuzz's `em_scale` of a font-unit value to 26.6 at `size` px: a truncated 16.16 multiplier and
    /// rounding half up (FreeType's `FT_MulFix` rounds half away from zero instead).
    fn harfbuzz_scale(&self, v: i64, size: u32) -> i64 {
        let mult = ((i64::from(size) * 64) << 16) / self.units_per_em();
        (v * mult + 32768) >> 16
    }

    /// The ascender in whole pixels at `size` (PIL `font.getmetrics()[0]`).
    pub fn ascender_px(&self, size: u32) -> i64 {
        ceil_26_6(mul_fix(
            self.font.ascent_unscaled().round() as i64,
            self.scale(size),
        ))
    }

    fn glyph(&self, ch: char) -> Result<GlyphId, MarksError> {
        let id = self.font.glyph_id(ch);
        if id.0 == 0 {
            return Err(MarksError::UnsupportedLabelChar(ch));
        }
        Ok(id)
    }

    /// Pen positions (26.6) of each glyph's origin and of the end of the line.
    fn pen_positions(&self, glyphs: &[GlyphId], size: u32, layout: TextLayout) -> (Vec<i64>, i64) {
        let scale = self.scale(size);
        let mut pen = 0i64;
        let mut starts = Vec::with_capacity(glyphs.len());
        let mut previous: Option<GlyphId> = None;
        for &g in glyphs {
            // HarfBuzz applies the font's pair kerning (Liberation Sans kerns "11" by −152 units); Pillow's
            // basic layout does not.
            if let (TextLayout::Raqm, Some(p)) = (layout, previous) {
                pen += self.harfbuzz_scale(self.font.kern_unscaled(p, g).round() as i64, size);
            }
            previous = Some(g);
            starts.push(pen);
            let advance = mul_fix(self.font.h_advance_unscaled(g).round() as i64, scale);
            pen += match layout {
                TextLayout::Raqm => advance,
                TextLayout::Basic => round_26_6(advance) * 64,
            };
        }
        (starts, pen)
    }

    /// The size of `text` at `size` px exactly as PIL's `textbbox((0, 0), text)` reports its right and
    /// bottom edges. `text` must consist of characters the font has (labels are digits).
    pub fn text_size(
        &self,
        text: &str,
        size: u32,
        layout: TextLayout,
    ) -> Result<TextSize, MarksError> {
        if size == 0 || size > MAX_FONT_SIZE {
            return Err(MarksError::FontSize(size));
        }
        let glyphs = text
            .chars()
            .map(|c| self.glyph(c))
            .collect::<Result<Vec<_>, _>>()?;
        let scale = self.scale(size);
        let (starts, end) = self.pen_positions(&glyphs, size, layout);
        let mut right = round_26_6(end);
        let mut lowest_ink = 0i64;
        for (&g, &start) in glyphs.iter().zip(&starts) {
            let Some(outline) = self.font.outline(g) else {
                continue;
            };
            // ab_glyph stores the font-unit bbox as (x_min, y_max)..(x_max, y_min); take extremes.
            let b = outline.bounds;
            let x_max = mul_fix(b.min.x.max(b.max.x).round() as i64, scale);
            right = right.max(round_26_6(start) + ceil_26_6(x_max));
            let y_min = b.min.y.min(b.max.y).round() as i64;
            // FreeType's pixel cbox of the *hinted* glyph. Liberation Sans' hinting rounds the baseline
            // overshoot of round digits to whole pixels from 7 ppem up; below that the hinting is off and
            // the unhinted outline is floored (measured against Pillow at 1..300 px).
            let ink_bottom = if size <= 6 {
                floor_26_6(mul_fix(y_min, scale))
            } else {
                -round_26_6(mul_fix(-y_min, scale))
            };
            lowest_ink = lowest_ink.min(ink_bottom);
        }
        let bottom = self.ascender_px(size) - lowest_ink;
        Ok(TextSize {
            width: u32::try_from(right).unwrap_or(0),
            height: u32::try_from(bottom).unwrap_or(0),
        })
    }

    /// Draws `text` with its layout origin (PIL's anchor "la": left, ascender) at `origin`, blending
    /// `color` by glyph coverage. Glyph shapes are ab_glyph's unhinted outlines, so pixels differ slightly
    /// from FreeType's hinted bitmaps; positions follow PIL's layout.
    pub fn draw_text(
        &self,
        img: &mut RgbImage,
        (x, y): (f64, f64),
        text: &str,
        size: u32,
        layout: TextLayout,
        color: Rgb<u8>,
    ) -> Result<(), MarksError> {
        if size == 0 || size > MAX_FONT_SIZE {
            return Err(MarksError::FontSize(size));
        }
        let glyphs = text
            .chars()
            .map(|c| self.glyph(c))
            .collect::<Result<Vec<_>, _>>()?;
        let (starts, _) = self.pen_positions(&glyphs, size, layout);
        // ab_glyph's PxScale is the height of ascent − descent, not the em size.
        let height_units = self.font.height_unscaled();
        let em = self.units_per_em() as f32;
        let px_scale = PxScale::from(size as f32 * height_units / em);
        // PIL draws at int(x), int(y) and feeds the fractional parts to FreeType in 26.6; each glyph
        // bitmap lands on the pen position rounded to a whole pixel, and FreeType's y axis points up, so
        // a fractional y moves the text down only when it is above one half.
        let (frac_x, frac_y) = (
            ((x - x.trunc()) * 64.0).round() as i64,
            ((y - y.trunc()) * 64.0).round() as i64,
        );
        let baseline =
            y.trunc() + self.ascender_px(size) as f64 + if frac_y > 32 { 1.0 } else { 0.0 };
        for (&g, &start) in glyphs.iter().zip(&starts) {
            let origin_x = x.trunc() + round_26_6(frac_x + start) as f64;
            let glyph = g.with_scale_and_position(
                px_scale,
                ab_glyph::point(origin_x as f32, baseline as f32),
            );
            if let Some(outlined) = self.font.outline_glyph(glyph) {
                paint_glyph(img, &outlined, color);
            }
        }
        Ok(())
    }
}

fn paint_glyph(img: &mut RgbImage, glyph: &OutlinedGlyph, color: Rgb<u8>) {
    let bounds = glyph.px_bounds();
    let (left, top) = (bounds.min.x as i64, bounds.min.y as i64);
    glyph.draw(|gx, gy, coverage| {
        blend_pixel(
            img,
            left + i64::from(gx),
            top + i64::from(gy),
            color,
            coverage,
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_font_has_arial_compatible_vertical_metrics() {
        let font = MarkFont::bundled();
        assert_eq!(font.units_per_em(), 2048);
        assert_eq!(font.font.ascent_unscaled(), 1854.0);
        let five = font.glyph('5').unwrap();
        assert_eq!(font.font.h_advance_unscaled(five), 1139.0);
        let b = font.font.outline(five).unwrap().bounds;
        assert_eq!(
            (b.min.y.min(b.max.y), b.min.x.max(b.max.x)),
            (-20.0, 1053.0)
        );
    }

    #[test]
    fn fixed_point_matches_freetype_examples() {
        // 95 px: 1854 units → 5504.06/64 px, exactly 86 px, not ceil(86.0009) = 87.
        let font = MarkFont::bundled();
        assert_eq!(font.ascender_px(95), 86);
        assert_eq!(font.ascender_px(20), 19);
        assert_eq!(mul_fix(-3, 65536 / 2), -2);
        assert_eq!(div_fix(1280, 2048), 40960);
    }

    #[test]
    fn rejects_characters_without_a_glyph() {
        let font = MarkFont::bundled();
        assert!(matches!(
            font.text_size("5\u{10FFFD}", 20, TextLayout::Raqm),
            Err(MarksError::UnsupportedLabelChar('\u{10FFFD}'))
        ));
    }
}
