//! Set-of-Mark (SoM) for Magma: numbered marks that turn "where to click" into "which number".
//!
//! * [`mark_screenshot`] draws Magma's UI marks (the reference's `plot_boxes_with_marks`: red outlines,
//!   red labels with white 0-based numbers, an 8-position label search) or OmniParser's preview style on a
//!   screenshot, and returns every mark's geometry plus a prompt-ready list.
//! * [`parse_boxes`] reads candidate boxes from OmniParser's parsed-content list, plain pixel or ratio
//!   boxes, or the reference's `(y, x, h, w)` form.
//! * [`draw_trace_marks`] draws the trace-data marks (red circles with white 1-based numbers) used for
//!   Trace-of-Mark supervision on video and robot frames.
//!
//! Text is measured with the bundled Liberation Sans (metric-compatible with the reference's Arial)
//! exactly as PIL measures it, because label sizes decide label positions.
//!
//! # Examples
//!
//! ```
//! use image::RgbImage;
//! use magma_marks::{mark_screenshot, parse_boxes, BoxFormat, SomOptions};
//!
//! let shot = RgbImage::from_pixel(640, 400, image::Rgb([240, 240, 240]));
//! let boxes = parse_boxes("[[40, 60, 200, 100], [40, 120, 200, 160]]", "boxes.json", BoxFormat::Pixels, 640, 400)?;
//! let som = mark_screenshot(&shot, &boxes.boxes, &SomOptions::default())?;
//! assert_eq!(som.marks.len(), 2);
//! assert_eq!(som.marks[0].id, 0);
//! assert!(som.prompt_list().starts_with("Mark 0"));
//! # Ok::<(), magma_marks::MarksError>(())
//! ```

mod draw;
mod error;
mod font;
mod geometry;
mod input;
mod magma;
mod omniparser;
mod trace;

use std::path::Path;

use image::RgbImage;

/// The `image` crate this API speaks (`RgbImage`, decoding), re-exported for callers.
pub use image;

pub use error::MarksError;
pub use font::{MarkFont, TextLayout, TextSize, MAX_FONT_SIZE};
pub use geometry::Yxhw;
pub use input::{parse_boxes, BoxFormat, CandidateBox, ParsedBoxes};
pub use magma::{
    magma_mark_sizes, place_magma_labels, LabelPosition, MarkSizes, Placement, BOX_LINE_WIDTH,
    CORNER_DISTANCE_WEIGHT, MARK_RED, MARK_SIZE_FRACTION, MARK_WHITE, MAX_MARK_SIZE, MIN_FONT_SIZE,
};
pub use omniparser::{OmniParserStyle, OMNIPARSER_PALETTE, OVERLAP_THRESHOLD};
pub use trace::{
    draw_trace_marks, draw_trace_marks_styled, trace_mark_font_size, TraceMark, TraceMarkStyle,
};

/// Which annotator to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkStyle {
    /// Magma's UI agent (`plot_boxes_with_marks`): the marks Magma was trained and prompted with.
    #[default]
    Magma,
    /// OmniParser's preview annotator (`box_annotator.py`) with the UI agent's sizes.
    OmniParser,
}

/// Options of [`mark_screenshot`].
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct SomOptions {
    /// Which annotator to reproduce.
    pub style: MarkStyle,
    /// PIL layout engine whose label widths are reproduced (Magma style).
    pub layout: TextLayout,
}

/// A label rectangle in pixels (top-left corner and size).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LabelRect {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

/// One numbered mark.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mark {
    /// The number drawn, 0-based in box order (the id Magma answers with: `Mark: 3`).
    pub id: usize,
    /// The box `[x1, y1, x2, y2]` in pixels.
    pub bbox: [f64; 4],
    /// The box `[x1, y1, x2, y2]` divided by the image width and height.
    pub bbox_normalized: [f64; 4],
    /// The label rectangle.
    pub label: LabelRect,
    /// Font size of the number in pixels per em.
    pub font_size: u32,
    /// Which candidate position the label took (`"top-left"`, `"right-top"`, …).
    pub position: &'static str,
    /// True when no candidate fitted and the style's fallback position was used.
    pub fallback: bool,
    /// Element type from the input, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Element text from the input, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// OmniParser's interactivity flag, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interactivity: Option<bool>,
}

/// A marked screenshot and its marks.
#[derive(Debug, Clone)]
pub struct SetOfMarks {
    /// The screenshot with outlines and numbered labels drawn.
    pub image: RgbImage,
    /// One mark per input box, in input order.
    pub marks: Vec<Mark>,
}

impl SetOfMarks {
    /// Writes the marked image as PNG atomically: into a temporary file next to `path`, then renamed over
    /// it, so readers never see a half-written file.
    pub fn save_png(&self, path: &Path) -> Result<(), MarksError> {
        let fail = |message: String| MarksError::Write {
            path: path.display().to_string(),
            message,
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| fail("not a file path".to_string()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let written = self
            .image
            .save_with_format(&tmp, image::ImageFormat::Png)
            .map_err(|e| fail(e.to_string()))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string())));
        if written.is_err() {
            // Best effort: the temporary file may not exist if encoding failed before creating it.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// The marks as prompt text, one line per mark: `Mark 3: button "Sign in"`, or `Mark 4: icon` when the
    /// element has no text, or `Mark 5` when the input had neither type nor text.
    pub fn prompt_list(&self) -> String {
        let mut out = String::new();
        for m in &self.marks {
            out.push_str(&format!("Mark {}", m.id));
            match (
                &m.kind,
                m.content
                    .as_deref()
                    .map(str::trim)
                    .filter(|c| !c.is_empty()),
            ) {
                (Some(kind), Some(text)) => out.push_str(&format!(": {kind} {text:?}")),
                (Some(kind), None) => out.push_str(&format!(": {kind}")),
                (None, Some(text)) => out.push_str(&format!(": {text:?}")),
                (None, None) => {}
            }
            out.push('\n');
        }
        out
    }
}

/// Draws numbered marks for `boxes` on a copy of `image`.
///
/// Magma style reproduces the reference exactly: all outlines first, then per box (in order) the label
/// search of [`place_magma_labels`] with label sizes from [`magma_mark_sizes`], a red filled label and
/// the white number. OmniParser style reproduces `box_annotator.py`'s geometry (see [`OmniParserStyle`]).
pub fn mark_screenshot(
    image: &RgbImage,
    boxes: &[CandidateBox],
    options: &SomOptions,
) -> Result<SetOfMarks, MarksError> {
    mark_screenshot_owned(image.clone(), boxes, options)
}

/// [`mark_screenshot`] drawing on `image` itself instead of a copy, for callers that already own
/// the pixels (the Python bindings copy them out of numpy once).
pub fn mark_screenshot_owned(
    image: RgbImage,
    boxes: &[CandidateBox],
    options: &SomOptions,
) -> Result<SetOfMarks, MarksError> {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return Err(MarksError::EmptyImage { width, height });
    }
    let rects: Vec<Yxhw> = boxes.iter().map(|b| b.rect).collect();
    let mut marked = image;
    let (placements, font_sizes): (Vec<Placement>, Vec<u32>) = match options.style {
        MarkStyle::Magma => {
            let sizes = magma_mark_sizes(height, width, options.layout)?;
            let placements = place_magma_labels(
                &rects,
                |i| {
                    let s = sizes.for_label(&i.to_string());
                    (f64::from(s.height), f64::from(s.width))
                },
                f64::from(height),
                f64::from(width),
            );
            magma::draw_magma_marks(&mut marked, &rects, &placements, &sizes, options.layout)?;
            let n = placements.len();
            (placements, vec![sizes.font_size; n])
        }
        MarkStyle::OmniParser => {
            let style = OmniParserStyle::for_width(width);
            let labels = omniparser::place_omniparser_labels(&rects, &style, width, height);
            omniparser::draw_omniparser_marks(&mut marked, &rects, &labels, &style)?;
            let px = omniparser::omniparser_font_px(&style);
            (
                labels.iter().map(|l| l.placement).collect(),
                vec![px; labels.len()],
            )
        }
    };
    let (w, h) = (f64::from(width), f64::from(height));
    let marks = boxes
        .iter()
        .zip(placements.iter().zip(font_sizes))
        .enumerate()
        .map(|(id, (b, (p, font_size)))| {
            let bbox = b.rect.to_xyxy();
            Mark {
                id,
                bbox,
                bbox_normalized: [bbox[0] / w, bbox[1] / h, bbox[2] / w, bbox[3] / h],
                label: LabelRect {
                    x: p.label.x,
                    y: p.label.y,
                    width: p.label.w,
                    height: p.label.h,
                },
                font_size,
                position: p.position.name(),
                fallback: p.fallback,
                kind: b.kind.clone(),
                content: b.content.clone(),
                interactivity: b.interactivity,
            }
        })
        .collect();
    Ok(SetOfMarks {
        image: marked,
        marks,
    })
}
