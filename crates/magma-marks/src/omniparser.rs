//! OmniParser's own annotator (`util/box_annotator.py`, the "parsed" preview image), with the sizes the
//! Magma UI agent passes it (`box_overlay_ratio = W / 3200`).
//!
//! Geometry is reproduced: integer boxes, OpenCV Hershey-Simplex text sizes, the four label candidates
//! and their rejection rule, supervision's default palette and the luminance rule for text colour. The
//! digits themselves are drawn with the bundled Liberation Sans at the Hershey cap height (not with
//! OpenCV's stroke font), and thick box lines are square-cornered bands, so pixels differ at glyph and
//! corner level.

use image::{Rgb, RgbImage};

use crate::draw::fill_rect;
use crate::font::{MarkFont, TextLayout};
use crate::geometry::Yxhw;
use crate::magma::{LabelPosition, Placement};
use crate::MarksError;

/// supervision 0.18's `ColorPalette.DEFAULT`, indexed by mark id modulo its length.
pub const OMNIPARSER_PALETTE: [[u8; 3]; 21] = [
    [0xA3, 0x51, 0xFB],
    [0xFF, 0x40, 0x40],
    [0xFF, 0xA1, 0xA0],
    [0xFF, 0x76, 0x33],
    [0xFF, 0xB6, 0x33],
    [0xD1, 0xD4, 0x35],
    [0x4C, 0xFB, 0x12],
    [0x94, 0xCF, 0x1A],
    [0x40, 0xDE, 0x8A],
    [0x1B, 0x96, 0x40],
    [0x00, 0xD6, 0xC1],
    [0x2E, 0x9C, 0xAA],
    [0x00, 0xC4, 0xFF],
    [0x36, 0x47, 0x97],
    [0x66, 0x75, 0xFF],
    [0x00, 0x19, 0xEF],
    [0x86, 0x3A, 0xFF],
    [0x53, 0x00, 0x87],
    [0xCD, 0x3A, 0xFF],
    [0xFF, 0x97, 0xCA],
    [0xFF, 0x39, 0xC9],
];

/// A label is rejected when its overlap score with any box exceeds this.
pub const OVERLAP_THRESHOLD: f64 = 0.3;

/// Width of one Hershey Simplex digit in font units (every digit advances 20 units).
const HERSHEY_DIGIT_ADVANCE: f64 = 20.0;
/// Hershey Simplex cap line + base line, in font units.
const HERSHEY_LINE_HEIGHT: f64 = 21.0;
/// Liberation Sans digit height (1409 units) over its em (2048 units).
const DIGIT_HEIGHT_PER_EM: f64 = 1409.0 / 2048.0;

/// Drawing sizes the Magma UI agent derives from the image width.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OmniParserStyle {
    /// OpenCV font scale (`0.8 · W / 3200`).
    pub text_scale: f64,
    /// OpenCV text thickness (`max(int(2 · W / 3200), 1)`).
    pub text_thickness: i64,
    /// Padding around the text (`max(int(3 · W / 3200), 1)`).
    pub text_padding: i64,
    /// Box line thickness (`max(int(3 · W / 3200), 1)`).
    pub thickness: i64,
}

impl OmniParserStyle {
    /// The UI agent's `draw_bbox_config` for an image `width` pixels wide.
    ///
    /// # Examples
    ///
    /// ```
    /// use magma_marks::OmniParserStyle;
    ///
    /// let s = OmniParserStyle::for_width(1920);
    /// assert_eq!((s.text_thickness, s.text_padding, s.thickness), (1, 1, 1));
    /// assert!((s.text_scale - 0.48).abs() < 1e-12);
    /// ```
    pub fn for_width(width: u32) -> Self {
        let ratio = f64::from(width) / 3200.0;
        Self {
            text_scale: 0.8 * ratio,
            text_thickness: ((2.0 * ratio) as i64).max(1),
            text_padding: ((3.0 * ratio) as i64).max(1),
            thickness: ((3.0 * ratio) as i64).max(1),
        }
    }

    /// OpenCV's `getTextSize` for a digit string in `FONT_HERSHEY_SIMPLEX`: `(width, height)`.
    pub fn text_size(&self, text: &str) -> (i64, i64) {
        let n = text.chars().count() as f64;
        let width = (n * HERSHEY_DIGIT_ADVANCE * self.text_scale + self.text_thickness as f64)
            .round_ties_even();
        let height = (HERSHEY_LINE_HEIGHT * self.text_scale
            + ((self.text_thickness + 1) / 2) as f64)
            .round_ties_even();
        (width as i64, height as i64)
    }
}

/// OmniParser's overlap score: the largest of IoU and the intersection over either area (areas of zero
/// count as 0).
fn overlap_score(a: [i64; 4], b: [i64; 4]) -> f64 {
    let area = |r: [i64; 4]| ((r[2] - r[0]) * (r[3] - r[1])) as f64;
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0);
    let inter = (iw * ih) as f64;
    let union = area(a) + area(b) - inter;
    let iou = if union > 0.0 { inter / union } else { 0.0 };
    if area(a) > 0.0 && area(b) > 0.0 {
        iou.max(inter / area(a)).max(inter / area(b))
    } else {
        iou
    }
}

/// The label background `[x1, y1, x2, y2]` and text origin (baseline-left) of one candidate.
fn candidate(
    position: LabelPosition,
    det: [i64; 4],
    tw: i64,
    th: i64,
    p: i64,
) -> ([i64; 4], (i64, i64)) {
    let [x1, y1, x2, _] = det;
    match position {
        LabelPosition::OuterLeft => (
            [x1 - 2 * p - tw, y1, x1, y1 + 2 * p + th],
            (x1 - p - tw, y1 + p + th),
        ),
        LabelPosition::OuterRight => (
            [x2, y1, x2 + 2 * p + tw, y1 + 2 * p + th],
            (x2 + p, y1 + p + th),
        ),
        LabelPosition::TopRight => (
            [x2 - 2 * p - tw, y1 - 2 * p - th, x2, y1],
            (x2 - p - tw, y1 - p),
        ),
        _ => ([x1, y1 - 2 * p - th, x1 + 2 * p + tw, y1], (x1 + p, y1 - p)),
    }
}

/// OmniParser's candidate order.
const OMNIPARSER_ORDER: [LabelPosition; 4] = [
    LabelPosition::TopLeft,
    LabelPosition::OuterLeft,
    LabelPosition::OuterRight,
    LabelPosition::TopRight,
];

/// One OmniParser label: where it goes and how it is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OmniLabel {
    pub placement: Placement,
    pub background: [i64; 4],
    pub text_origin: (i64, i64),
}

/// OmniParser's label search: for every box, the first of top-left, outer-left, outer-right, top-right
/// whose background stays in the image and overlaps no box by more than 0.3; otherwise the last one.
/// Boxes are truncated to integers first (`xyxy.astype(int)`); placed labels are not obstacles.
pub(crate) fn place_omniparser_labels(
    boxes: &[Yxhw],
    style: &OmniParserStyle,
    width: u32,
    height: u32,
) -> Vec<OmniLabel> {
    let dets: Vec<[i64; 4]> = boxes
        .iter()
        .map(|b| {
            let [x1, y1, x2, y2] = b.to_xyxy();
            [x1 as i64, y1 as i64, x2 as i64, y2 as i64]
        })
        .collect();
    let (w, h) = (i64::from(width), i64::from(height));
    dets.iter()
        .enumerate()
        .map(|(i, &det)| {
            let (tw, th) = style.text_size(&i.to_string());
            let fits = |bg: [i64; 4]| {
                bg[0] >= 0
                    && bg[1] >= 0
                    && bg[2] <= w
                    && bg[3] <= h
                    && dets
                        .iter()
                        .all(|&d| overlap_score(bg, d) <= OVERLAP_THRESHOLD)
            };
            let chosen = OMNIPARSER_ORDER
                .iter()
                .map(|&pos| (pos, candidate(pos, det, tw, th, style.text_padding)))
                .find(|(_, (bg, _))| fits(*bg));
            let (position, (bg, origin), fallback) = match chosen {
                Some((pos, c)) => (pos, c, false),
                None => {
                    let pos = LabelPosition::TopRight;
                    (pos, candidate(pos, det, tw, th, style.text_padding), true)
                }
            };
            let label = Yxhw::new(
                bg[1] as f64,
                bg[0] as f64,
                (bg[3] - bg[1]) as f64,
                (bg[2] - bg[0]) as f64,
            );
            OmniLabel {
                placement: Placement {
                    position,
                    label,
                    fallback,
                },
                background: bg,
                text_origin: origin,
            }
        })
        .collect()
}

/// Font size (px per em) whose digits are as tall as Hershey digits at this scale.
pub(crate) fn omniparser_font_px(style: &OmniParserStyle) -> u32 {
    ((HERSHEY_LINE_HEIGHT * style.text_scale / DIGIT_HEIGHT_PER_EM).round() as u32).max(1)
}

/// Draws boxes and labels in OmniParser's style, box by box (box, then its label), as the annotator does.
pub(crate) fn draw_omniparser_marks(
    img: &mut RgbImage,
    boxes: &[Yxhw],
    labels: &[OmniLabel],
    style: &OmniParserStyle,
) -> Result<(), MarksError> {
    let font = MarkFont::bundled();
    let font_px = omniparser_font_px(style);
    // OpenCV widens a line of thickness t > 1 to about 2t − 1 pixels centred on the edge.
    let r = if style.thickness > 1 {
        style.thickness - 1
    } else {
        0
    };
    for (i, (b, label)) in boxes.iter().zip(labels).enumerate() {
        let rgb = OMNIPARSER_PALETTE[i % OMNIPARSER_PALETTE.len()];
        let color = Rgb(rgb);
        let [x1, y1, x2, y2] = b.to_xyxy();
        let (x1, y1, x2, y2) = (x1 as i64, y1 as i64, x2 as i64, y2 as i64);
        fill_rect(img, x1 - r, y1 - r, x2 + r, y1 + r, color);
        fill_rect(img, x1 - r, y2 - r, x2 + r, y2 + r, color);
        fill_rect(img, x1 - r, y1 - r, x1 + r, y2 + r, color);
        fill_rect(img, x2 - r, y1 - r, x2 + r, y2 + r, color);
        let [bx1, by1, bx2, by2] = label.background;
        fill_rect(img, bx1, by1, bx2, by2, color);
        let luminance =
            0.299 * f64::from(rgb[0]) + 0.587 * f64::from(rgb[1]) + 0.114 * f64::from(rgb[2]);
        let text_color = if luminance > 160.0 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        };
        let (tx, ty) = label.text_origin;
        let top = ty as f64 - font.ascender_px(font_px) as f64;
        font.draw_text(
            img,
            (tx as f64, top),
            &i.to_string(),
            font_px,
            TextLayout::Raqm,
            text_color,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_score_is_max_of_iou_and_containment() {
        // A small box inside a big one: IoU is small but containment is 1.
        assert_eq!(overlap_score([0, 0, 10, 10], [0, 0, 100, 100]), 1.0);
        assert_eq!(overlap_score([0, 0, 10, 10], [10, 0, 20, 10]), 0.0);
        // Half overlap of equal boxes: inter 50, each area 100 → 0.5.
        assert_eq!(overlap_score([0, 0, 10, 10], [5, 0, 15, 10]), 0.5);
        // Zero-area boxes only use IoU.
        assert_eq!(overlap_score([0, 0, 10, 10], [5, 5, 5, 5]), 0.0);
    }

    #[test]
    fn tries_top_left_then_outer_left_then_outer_right_then_top_right() {
        let style = OmniParserStyle::for_width(1280);
        let (tw, th) = style.text_size("0");
        let p = style.text_padding;
        // Room above: top-left.
        let free =
            place_omniparser_labels(&[Yxhw::new(100.0, 100.0, 20.0, 50.0)], &style, 1280, 800);
        assert_eq!(free[0].placement.position, LabelPosition::TopLeft);
        assert_eq!(
            free[0].background,
            [100, 100 - 2 * p - th, 100 + 2 * p + tw, 100]
        );
        // At the top edge with room on the left: outer-left.
        let top = place_omniparser_labels(&[Yxhw::new(0.0, 100.0, 20.0, 50.0)], &style, 1280, 800);
        assert_eq!(top[0].placement.position, LabelPosition::OuterLeft);
        // Top-left corner of the image: outer-right.
        let corner = place_omniparser_labels(&[Yxhw::new(0.0, 0.0, 20.0, 50.0)], &style, 1280, 800);
        assert_eq!(corner[0].placement.position, LabelPosition::OuterRight);
        // Whole image covered by a second box: every candidate overlaps it → fallback top-right.
        let covered = place_omniparser_labels(
            &[
                Yxhw::new(100.0, 100.0, 20.0, 50.0),
                Yxhw::new(0.0, 0.0, 800.0, 1280.0),
            ],
            &style,
            1280,
            800,
        );
        assert!(covered[0].placement.fallback);
        assert_eq!(covered[0].placement.position, LabelPosition::TopRight);
    }
}
