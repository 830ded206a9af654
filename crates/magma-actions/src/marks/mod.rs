//! Marks and traces on the 256 grid: Set-of-Mark (SoM) and Trace-of-Mark (ToM) answers.

pub mod grid;
pub mod som;
pub mod tom;

pub use grid::{GridPoint, GRID_SIZE};
pub use som::MarkPosition;
pub use tom::MarkTrace;

use crate::scan::Scanner;
use crate::{ActionError, Result};

/// At `Mark `: parses `Mark {id} at [{x},{y}]`. `Ok(None)` (position unchanged) when the text
/// is not a mark position at all (`Mark` without a number or without `at`); an error when it
/// starts like one but the bracket is broken.
fn parse_mark_at(
    scanner: &mut Scanner<'_>,
    kind: &'static str,
    text: &str,
) -> Result<Option<MarkPosition>> {
    let start = scanner.position();
    let header = scanner.eat("Mark") && {
        scanner.skip_ws();
        true
    };
    let id = scanner.uint().filter(|_| header);
    let Some(id) = id.filter(|_| scanner.eat_after_ws("at")) else {
        scanner.set_position(start);
        return Ok(None);
    };
    let point = parse_int_pair(scanner).ok_or_else(|| ActionError::Malformed {
        kind,
        message: format!("`Mark {id} at` is not followed by `[x,y]` with integer x, y"),
        text: text.into(),
    })?;
    Ok(Some(MarkPosition { id, at: point }))
}

/// `[x,y]` with optional whitespace, integers.
fn parse_int_pair(scanner: &mut Scanner<'_>) -> Option<GridPoint> {
    let start = scanner.position();
    let parsed = (|| {
        if !scanner.eat_after_ws("[") {
            return None;
        }
        scanner.skip_ws();
        let x = scanner.int()?;
        if !scanner.eat_after_ws(",") {
            return None;
        }
        scanner.skip_ws();
        let y = scanner.int()?;
        scanner.eat_after_ws("]").then_some(GridPoint::new(x, y))
    })();
    if parsed.is_none() {
        scanner.set_position(start);
    }
    parsed
}
