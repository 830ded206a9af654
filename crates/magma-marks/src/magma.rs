//! Magma's UI Set-of-Mark renderer (`MarkHelper` + `plot_boxes_with_marks` in the reference's
//! `agents/ui_agent/util/som.py`), reproduced rule for rule.

use image::{Rgb, RgbImage};

use crate::draw::{pil_fill_rect, pil_outline_rect};
use crate::error::MarksError;
use crate::font::{MarkFont, TextLayout, TextSize};
use crate::geometry::Yxhw;

/// Font size the search starts from.
pub const MIN_FONT_SIZE: u32 = 20;
/// Upper bound on the target size of "555" (pixels).
pub const MAX_MARK_SIZE: f64 = 30.0;
/// Target size of "555" as a fraction of the image's shorter side.
pub const MARK_SIZE_FRACTION: f64 = 0.04;
/// Outline width of the boxes (PIL rectangle `width=2`).
pub const BOX_LINE_WIDTH: i64 = 2;
/// Weight of the nearest-corner distance in a candidate's score.
pub const CORNER_DISTANCE_WEIGHT: f64 = 0.0001;
/// Box outlines and label backgrounds (the demo's `edgecolor=(255, 0, 0)` and `fill="red"`).
pub const MARK_RED: Rgb<u8> = Rgb([255, 0, 0]);
/// Label text.
pub const MARK_WHITE: Rgb<u8> = Rgb([255, 255, 255]);

/// Where a label sits relative to its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelPosition {
    /// Above the box, left-aligned.
    TopLeft,
    /// Above the box, right-aligned.
    TopRight,
    /// Right of the box, top-aligned.
    RightTop,
    /// Right of the box, bottom-aligned.
    RightBottom,
    /// Below the box, right-aligned.
    BottomRight,
    /// Below the box, left-aligned.
    BottomLeft,
    /// Left of the box, bottom-aligned.
    LeftBottom,
    /// Left of the box, top-aligned.
    LeftTop,
    /// OmniParser: left of the box, top-aligned, label as tall as text plus padding.
    OuterLeft,
    /// OmniParser: right of the box, top-aligned.
    OuterRight,
}

impl LabelPosition {
    /// The reference's eight candidates, in the order it tries them.
    pub const MAGMA_ORDER: [LabelPosition; 8] = [
        LabelPosition::TopLeft,
        LabelPosition::TopRight,
        LabelPosition::RightTop,
        LabelPosition::RightBottom,
        LabelPosition::BottomRight,
        LabelPosition::BottomLeft,
        LabelPosition::LeftBottom,
        LabelPosition::LeftTop,
    ];

    /// Kebab-case name (`"top-left"`, …), as printed by `magma som`.
    pub fn name(self) -> &'static str {
        match self {
            LabelPosition::TopLeft => "top-left",
            LabelPosition::TopRight => "top-right",
            LabelPosition::RightTop => "right-top",
            LabelPosition::RightBottom => "right-bottom",
            LabelPosition::BottomRight => "bottom-right",
            LabelPosition::BottomLeft => "bottom-left",
            LabelPosition::LeftBottom => "left-bottom",
            LabelPosition::LeftTop => "left-top",
            LabelPosition::OuterLeft => "outer-left",
            LabelPosition::OuterRight => "outer-right",
        }
    }

    /// Top-left corner `(y, x)` of a `h_t × w_t` label at this position of `b`, with the reference's
    /// arithmetic order (it matters for float ties).
    fn magma_corner(self, b: &Yxhw, h_t: f64, w_t: f64) -> (f64, f64) {
        let Yxhw { y, x, h, w } = *b;
        match self {
            LabelPosition::TopLeft => (y - h_t, x),
            LabelPosition::TopRight => (y - h_t, x + w - w_t),
            LabelPosition::RightTop | LabelPosition::OuterRight => (y, x + w),
            LabelPosition::RightBottom => (y + h - h_t, x + w),
            LabelPosition::BottomRight => (y + h, x + w - w_t),
            LabelPosition::BottomLeft => (y + h, x),
            LabelPosition::LeftBottom => (y + h - h_t, x - w_t),
            LabelPosition::LeftTop | LabelPosition::OuterLeft => (y, x - w_t),
        }
    }
}

/// One label chosen by the search.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Placement {
    /// Which candidate won.
    pub position: LabelPosition,
    /// The label rectangle in pixels.
    pub label: Yxhw,
    /// True when no candidate fitted in the image and the reference's fallback was used.
    pub fallback: bool,
}

/// Label sizes of one image size: the font size and the cached sizes of "5", "55" and "555".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MarkSizes {
    /// Font size in pixels per em.
    pub font_size: u32,
    /// `[size("5"), size("55"), size("555")]`.
    pub by_digits: [TextSize; 3],
}

impl MarkSizes {
    /// The label size the reference uses for `text`: by its length, with anything longer than three
    /// characters using the 3-digit size (so mark 1000 and up overflow their label, as in the reference).
    pub fn for_label(&self, text: &str) -> TextSize {
        let n = text.chars().count().clamp(1, 3);
        self.by_digits[n - 1]
    }
}

/// The reference's font search for an image of `height × width`: start at 20 px and grow until the
/// smaller side of "555" reaches `min(30, 0.04 · min(H, W))`.
///
/// # Examples
///
/// ```
/// use magma_marks::{magma_mark_sizes, TextLayout};
///
/// // 1280×800 and 1920×1080 screenshots both end at 33 px ("555" is 55×30 there).
/// let sizes = magma_mark_sizes(800, 1280, TextLayout::Raqm).unwrap();
/// assert_eq!(sizes.font_size, 33);
/// assert_eq!((sizes.by_digits[2].width, sizes.by_digits[2].height), (55, 30));
/// ```
pub fn magma_mark_sizes(
    height: u32,
    width: u32,
    layout: TextLayout,
) -> Result<MarkSizes, MarksError> {
    let font = MarkFont::bundled();
    let target = MAX_MARK_SIZE.min(MARK_SIZE_FRACTION * f64::from(height.min(width)));
    let mut size = MIN_FONT_SIZE;
    loop {
        let s = font.text_size("555", size, layout)?;
        if f64::from(s.width.min(s.height)) >= target {
            break;
        }
        size += 1;
    }
    Ok(MarkSizes {
        font_size: size,
        by_digits: [
            font.text_size("5", size, layout)?,
            font.text_size("55", size, layout)?,
            font.text_size("555", size, layout)?,
        ],
    })
}

/// The reference's label search for every box, in order.
///
/// For box `i` each candidate of [`LabelPosition::MAGMA_ORDER`] that stays inside the image is scored by
/// the maximum, over all other boxes and all labels placed so far, of `intersection area − 0.0001 ·
/// nearest-corner distance` (starting from `−(W + H)`); the lowest score wins and the first candidate wins
/// ties. "Other" excludes every box or label exactly equal to box `i` (element-wise, like the reference's
/// `np.array_equal`), so duplicated DOM rectangles do not repel each other's labels. When no candidate fits,
/// the top-left one is used.
///
/// `label_size(i)` gives the `(height, width)` of label `i`.
pub fn place_magma_labels(
    boxes: &[Yxhw],
    label_size: impl Fn(usize) -> (f64, f64),
    image_height: f64,
    image_width: f64,
) -> Vec<Placement> {
    let mut labels: Vec<Yxhw> = Vec::with_capacity(boxes.len());
    let mut placements = Vec::with_capacity(boxes.len());
    for (i, bbox) in boxes.iter().enumerate() {
        let (h_t, w_t) = label_size(i);
        let mut best: Option<(f64, LabelPosition, Yxhw)> = None;
        for position in LabelPosition::MAGMA_ORDER {
            let (cy, cx) = position.magma_corner(bbox, h_t, w_t);
            if cy < 0.0 || cx < 0.0 || cy + h_t > image_height || cx + w_t > image_width {
                continue;
            }
            let candidate = Yxhw::new(cy, cx, h_t, w_t);
            let mut score = -(image_width + image_height);
            for other in boxes.iter().chain(labels.iter()) {
                if other == bbox {
                    continue;
                }
                let s = candidate.intersection_area(other)
                    - CORNER_DISTANCE_WEIGHT * candidate.nearest_corner_distance(other);
                score = score.max(s);
            }
            if best.is_none_or(|(b, _, _)| score < b) {
                best = Some((score, position, candidate));
            }
        }
        let placement = match best {
            Some((_, position, label)) => Placement {
                position,
                label,
                fallback: false,
            },
            None => {
                let (cy, cx) = LabelPosition::TopLeft.magma_corner(bbox, h_t, w_t);
                Placement {
                    position: LabelPosition::TopLeft,
                    label: Yxhw::new(cy, cx, h_t, w_t),
                    fallback: true,
                }
            }
        };
        labels.push(placement.label);
        placements.push(placement);
    }
    placements
}

/// Draws the reference's marks: every box outline first (red, 2 px inward), then for each box its red
/// label rectangle and white 0-based number.
pub(crate) fn draw_magma_marks(
    img: &mut RgbImage,
    boxes: &[Yxhw],
    placements: &[Placement],
    sizes: &MarkSizes,
    layout: TextLayout,
) -> Result<(), MarksError> {
    let font = MarkFont::bundled();
    for b in boxes {
        pil_outline_rect(
            img,
            b.x,
            b.y,
            b.x + b.w,
            b.y + b.h,
            BOX_LINE_WIDTH,
            MARK_RED,
        );
    }
    for (i, p) in placements.iter().enumerate() {
        let l = p.label;
        pil_fill_rect(img, l.x, l.y, l.x + l.w, l.y + l.h, MARK_RED);
        font.draw_text(
            img,
            (l.x, l.y),
            &i.to_string(),
            sizes.font_size,
            layout,
            MARK_WHITE,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_size(_: usize) -> (f64, f64) {
        (10.0, 20.0)
    }

    #[test]
    fn lone_box_takes_the_first_candidate_inside_the_image() {
        // No other boxes: every candidate scores −(W + H), so the first in-bounds one wins.
        let p = place_magma_labels(
            &[Yxhw::new(50.0, 50.0, 30.0, 40.0)],
            fixed_size,
            200.0,
            200.0,
        );
        assert_eq!(p[0].position, LabelPosition::TopLeft);
        assert_eq!(p[0].label, Yxhw::new(40.0, 50.0, 10.0, 20.0));
        // At the top edge top-left and top-right leave the image; right-top is next.
        let p = place_magma_labels(
            &[Yxhw::new(0.0, 50.0, 30.0, 40.0)],
            fixed_size,
            200.0,
            200.0,
        );
        assert_eq!(p[0].position, LabelPosition::RightTop);
        assert_eq!(p[0].label, Yxhw::new(0.0, 90.0, 10.0, 20.0));
    }

    #[test]
    fn corner_distance_breaks_ties_towards_free_space() {
        // A (x 50..90) and B (x 100..140) side by side, y 50..70, 10×20 labels. Worked by hand:
        // A: top-left is 30 px from B's corner (score −0.003), left-bottom and left-top are 50 px away
        //    (−0.005 each); left-bottom comes first in the order, so it wins the tie.
        // B: top-left is 10 px from A (−0.001); right-top and right-bottom are 50 px from A and 90 px from
        //    A's label (−0.005 each); right-top comes first.
        let a = Yxhw::new(50.0, 50.0, 20.0, 40.0);
        let b = Yxhw::new(50.0, 100.0, 20.0, 40.0);
        let p = place_magma_labels(&[a, b], fixed_size, 300.0, 300.0);
        assert_eq!(p[0].position, LabelPosition::LeftBottom);
        assert_eq!(p[0].label, Yxhw::new(60.0, 30.0, 10.0, 20.0));
        assert_eq!(p[1].position, LabelPosition::RightTop);
        assert_eq!(p[1].label, Yxhw::new(50.0, 140.0, 10.0, 20.0));
    }

    #[test]
    fn exactly_equal_boxes_ignore_each_other() {
        let a = Yxhw::new(50.0, 50.0, 20.0, 40.0);
        let with_twin = place_magma_labels(&[a, a], fixed_size, 300.0, 300.0);
        let alone = place_magma_labels(&[a], fixed_size, 300.0, 300.0);
        assert_eq!(with_twin[0], alone[0]);
        // The twin's label still avoids the first label (labels are "others" too).
        assert_ne!(with_twin[1].label, with_twin[0].label);
    }

    #[test]
    fn all_candidates_outside_falls_back_to_top_left() {
        let p = place_magma_labels(&[Yxhw::new(0.0, 0.0, 8.0, 8.0)], fixed_size, 8.0, 8.0);
        assert!(p[0].fallback);
        assert_eq!(p[0].position, LabelPosition::TopLeft);
        assert_eq!(p[0].label, Yxhw::new(-10.0, 0.0, 10.0, 20.0));
    }

    #[test]
    fn font_size_follows_the_shorter_image_side() {
        // 0.04 · 500 = 20: "555" is 19 px tall at 20 px and 20 px tall at 21 px (Pillow).
        let small = magma_mark_sizes(500, 900, TextLayout::Raqm).unwrap();
        assert_eq!(small.font_size, 21);
        // Tiny images keep the 20 px minimum.
        assert_eq!(
            magma_mark_sizes(8, 8, TextLayout::Raqm).unwrap().font_size,
            20
        );
        // 8000×600: 0.04 · 600 = 24 → 26 px ("555" is 43×24 there per Pillow).
        let wide = magma_mark_sizes(600, 8000, TextLayout::Raqm).unwrap();
        assert_eq!(wide.font_size, 26);
        assert_eq!(wide.for_label("1234"), wide.by_digits[2]);
    }
}
