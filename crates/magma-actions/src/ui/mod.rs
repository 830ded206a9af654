//! UI actions: SeeClick-style answers with SoM marks, the zero-shot UI agent's click resolution,
//! AITW's JSON actions and Mind2Web operations, plus conversions to screenshot pixels.

pub mod agent;
pub mod aitw;
pub mod answer;
pub mod mind2web;
pub mod web;

pub use agent::{resolve_click, ClickSource, UiClick};
pub use aitw::AitwAction;
pub use answer::{UiAnswer, UiElement, UiTarget};
pub use mind2web::{Mind2WebAction, Mind2WebOp};
pub use web::{ScrollDirection, WebCommand, WebTarget};

use std::collections::BTreeMap;

use crate::{ActionError, Result};

/// Mark id → box `[x1, y1, x2, y2]` normalised to `[0, 1]` by the screenshot size (the reference
/// UI agent's `label_coordinates` after its normalisation step).
pub type MarkBoxes = BTreeMap<u32, [f64; 4]>;

/// A normalised point `[x, y]` → pixels of a `width × height` screenshot.
///
/// ```
/// use magma_actions::ui::normalized_to_pixels;
/// assert_eq!(normalized_to_pixels([0.5, 0.25], 1920, 1080)?, [960.0, 270.0]);
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
pub fn normalized_to_pixels(point: [f64; 2], width: u32, height: u32) -> Result<[f64; 2]> {
    check_size(width, height)?;
    for (what, v) in [("x", point[0]), ("y", point[1])] {
        if !v.is_finite() {
            return Err(ActionError::NonFinite {
                what: format!("normalised {what}"),
                value: v,
            });
        }
    }
    Ok([point[0] * f64::from(width), point[1] * f64::from(height)])
}

/// The centre of mark `mark`'s box, in pixels of a `width × height` screenshot.
///
/// ```
/// use magma_actions::ui::{mark_to_pixels, MarkBoxes};
///
/// let boxes = MarkBoxes::from([(3, [0.1, 0.2, 0.3, 0.4])]);
/// let [x, y] = mark_to_pixels(3, &boxes, 1000, 500)?;
/// assert!((x - 200.0).abs() < 1e-9 && (y - 150.0).abs() < 1e-9);
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
pub fn mark_to_pixels(mark: u32, boxes: &MarkBoxes, width: u32, height: u32) -> Result<[f64; 2]> {
    let b = boxes.get(&mark).ok_or(ActionError::UnknownMark {
        mark,
        available: boxes.len(),
    })?;
    normalized_to_pixels(box_center(b), width, height)
}

/// Centre of an `[x1, y1, x2, y2]` box.
pub fn box_center(b: &[f64; 4]) -> [f64; 2] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0]
}

fn check_size(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        Err(ActionError::EmptyImage { width, height })
    } else {
        Ok(())
    }
}
