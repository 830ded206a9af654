//! How the reference zero-shot UI agent (`agents/ui_agent/app.py`) turns Magma's free-form
//! answer into a click.
//!
//! Order, as in the reference:
//! 1. the first `Mark: (\d+)`; if that mark has a box on the screenshot → that box;
//! 2. otherwise, if the text contains `box` → the first Qwen-style
//!    `<box>(x1,y1),(x2,y2)</box>` (0–1000 scale) → its centre / 1000;
//! 3. otherwise every number (`-?\d+\.?\d*`) of the text: 2 → a point, 4 → a box centre.
//!
//! Anything else is "no action found" (the reference swallows the exception and draws nothing).

use serde::Serialize;

use super::{box_center, normalized_to_pixels, MarkBoxes};
use crate::scan::Scanner;
use crate::{ActionError, Result};

const KIND: &str = "UI click";

/// Which rule produced the click.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClickSource {
    /// `Mark: k` with a known box.
    Mark,
    /// A Qwen `<box>` on the 0–1000 scale.
    QwenBox,
    /// Exactly two numbers in the text.
    Point,
    /// Exactly four numbers in the text (a box; its centre is clicked).
    BoxCenter,
}

/// The resolved click.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UiClick {
    /// Which rule produced it.
    pub source: ClickSource,
    /// The mark, for [`ClickSource::Mark`].
    pub mark: Option<u32>,
    /// The mark's box (normalised `[x1, y1, x2, y2]`), for [`ClickSource::Mark`].
    pub mark_box: Option<[f64; 4]>,
    /// Click position normalised to `[0, 1]` (the box centre for a mark).
    pub normalized: [f64; 2],
    /// Click position in screenshot pixels.
    pub pixels: [f64; 2],
}

/// Resolves an answer to a click on a `width × height` screenshot whose SoM boxes are `boxes`.
///
/// Quirk kept from the reference: if the answer names a mark that has no box, the number rule
/// runs over the *whole* text, so the mark number counts as a number too
/// (`Coordinate: (0.1, 0.2). Mark: 99` → three numbers → no click).
///
/// ```
/// use magma_actions::ui::{resolve_click, ClickSource, MarkBoxes};
///
/// let boxes = MarkBoxes::from([(12, [0.0, 0.1, 0.1, 0.2])]);
/// let click = resolve_click("Coordinate: (0.04, 0.12). Mark: 12", &boxes, 1000, 1000)?;
/// assert_eq!(click.source, ClickSource::Mark);
/// let click = resolve_click("<box>(100,200),(300,400)</box>", &boxes, 1000, 1000)?;
/// assert_eq!(click.pixels, [200.0, 300.0]);
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
pub fn resolve_click(
    response: &str,
    boxes: &MarkBoxes,
    width: u32,
    height: u32,
) -> Result<UiClick> {
    if let Some(mark) = first_mark(response) {
        if let Some(b) = boxes.get(&mark) {
            let normalized = box_center(b);
            return Ok(UiClick {
                source: ClickSource::Mark,
                mark: Some(mark),
                mark_box: Some(*b),
                normalized,
                pixels: normalized_to_pixels(normalized, width, height)?,
            });
        }
    }
    let (source, normalized) = if response.contains("box") {
        let [x1, y1, x2, y2] = first_qwen_box(response).ok_or_else(|| ActionError::Malformed {
            kind: KIND,
            message: "mentions `box` but has no `<box>(x1,y1),(x2,y2)</box>`".into(),
            text: response.into(),
        })?;
        let center = box_center(&[x1, y1, x2, y2]);
        (ClickSource::QwenBox, center.map(|v| v / 1000.0))
    } else {
        match Scanner::all_numbers(response)[..] {
            [x, y] => (ClickSource::Point, [x, y]),
            [x1, y1, x2, y2] => (ClickSource::BoxCenter, box_center(&[x1, y1, x2, y2])),
            _ => {
                return Err(ActionError::NoActionFound {
                    kind: KIND,
                    text: response.into(),
                })
            }
        }
    };
    Ok(UiClick {
        source,
        mark: None,
        mark_box: None,
        normalized,
        pixels: normalized_to_pixels(normalized, width, height)?,
    })
}

/// The reference's `extract_mark_id`: the first `Mark: ` (one space, case-sensitive) + digits.
fn first_mark(text: &str) -> Option<u32> {
    let mut scanner = Scanner::new(text);
    while scanner.take_until("Mark: ").is_some() {
        scanner.eat("Mark: ");
        if let Some(mark) = scanner.uint() {
            return Some(mark);
        }
    }
    None
}

/// The first `<box>(\d+,\d+),(\d+,\d+)</box>` (no spaces, non-negative integers).
fn first_qwen_box(text: &str) -> Option<[f64; 4]> {
    let mut scanner = Scanner::new(text);
    while scanner.take_until("<box>(").is_some() {
        scanner.eat("<box>(");
        let mut strict = scanner.clone();
        let parsed = (|| {
            let x1 = strict.uint()?;
            strict.eat(",").then_some(())?;
            let y1 = strict.uint()?;
            strict.eat("),(").then_some(())?;
            let x2 = strict.uint()?;
            strict.eat(",").then_some(())?;
            let y2 = strict.uint()?;
            strict.eat(")</box>").then_some(())?;
            Some([x1, y1, x2, y2].map(f64::from))
        })();
        if parsed.is_some() {
            return parsed;
        }
    }
    None
}
