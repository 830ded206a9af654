//! Set-of-Mark answers: `Mark 3 at [12,200]. Mark 7 at [90,41]`.

use serde::{Deserialize, Serialize};

use super::grid::GridPoint;
use super::parse_mark_at;
use crate::scan::Scanner;
use crate::{ActionError, Result};

/// A numbered mark and its position on the 256 grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkPosition {
    /// The number drawn on the frame.
    pub id: u32,
    /// Where it is (first-frame position, grid units).
    pub at: GridPoint,
}

/// Formats the SoM training target exactly as the reference does: marks sorted by id,
/// `Mark {id} at [{x},{y}]` joined by `". "`, no final period, one trailing newline.
///
/// ```
/// use magma_actions::marks::{som, GridPoint, MarkPosition};
///
/// let marks = [
///     MarkPosition { id: 7, at: GridPoint::new(90, 41) },
///     MarkPosition { id: 3, at: GridPoint::new(12, 200) },
/// ];
/// assert_eq!(som::format_answer(&marks), "Mark 3 at [12,200]. Mark 7 at [90,41]\n");
/// ```
pub fn format_answer(marks: &[MarkPosition]) -> String {
    let mut sorted = marks.to_vec();
    sorted.sort_by_key(|m| m.id);
    let joined = sorted
        .iter()
        .map(|m| format!("Mark {} at [{},{}]", m.id, m.at.x, m.at.y))
        .collect::<Vec<_>>()
        .join(". ");
    joined + "\n"
}

/// Parses a SoM answer (with or without final period/newline, spaces inside brackets allowed),
/// keeping the order of the text.
///
/// ```
/// use magma_actions::marks::{som, GridPoint};
///
/// let marks = som::parse_answer("Mark 3 at [12,200]. Mark 7 at [90, 41].")?;
/// assert_eq!(marks[1].at, GridPoint::new(90, 41));
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
pub fn parse_answer(text: &str) -> Result<Vec<MarkPosition>> {
    let mut scanner = Scanner::new(text);
    let mut marks = Vec::new();
    while scanner.take_until("Mark ").is_some() {
        match parse_mark_at(&mut scanner, "Set-of-Mark answer", text)? {
            Some(mark) => marks.push(mark),
            None => scanner.advance_char(),
        }
    }
    if marks.is_empty() {
        return Err(ActionError::NoActionFound {
            kind: "Set-of-Mark answer",
            text: text.into(),
        });
    }
    Ok(marks)
}
