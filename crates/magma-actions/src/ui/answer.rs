//! SeeClick-style UI answers with Set-of-Mark indices (paper Fig. 12):
//!
//! * `Coordinate: (0.04, 0.12). Mark: 12`
//! * `Coordinate: (0.27, 0.29, 0.37, 0.30). Mark: 2.`
//! * `Text: News. Mark: 1.`
//! * `Coordinate: (0.17, 0.43). Mark: 3. Coordinate: (0.31, 0.43). Mark: 4.`
//! * `No input areas found.`
//!
//! Coordinates are normalised to `[0, 1]` and written with two decimals; marks are 0-based.

use serde::{Deserialize, Serialize};

use crate::scan::Scanner;
use crate::{ActionError, Result};

const KIND: &str = "UI answer";
const NO_INPUT_AREAS: &str = "No input areas found";

/// What an answer element points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UiTarget {
    /// `Coordinate: (x, y)`.
    Point { x: f64, y: f64 },
    /// `Coordinate: (x1, y1, x2, y2)`.
    Box { x1: f64, y1: f64, x2: f64, y2: f64 },
    /// `Text: …` (box → text task).
    Text { text: String },
}

/// One element of an answer: a target and, with SoM, its mark index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UiElement {
    /// Point, box or text.
    pub target: UiTarget,
    /// `Mark: k`, when present.
    pub mark: Option<u32>,
}

/// A parsed UI answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UiAnswer {
    /// One or more elements, joined by `". "`.
    Elements {
        /// The elements in order.
        elements: Vec<UiElement>,
        /// Whether the text ends with a period after the last element.
        trailing_period: bool,
    },
    /// `No input areas found.`
    NoInputAreas,
}

impl UiAnswer {
    /// Parses an answer; see the module documentation for the accepted forms. `Mark:`/`mark:`
    /// are both accepted (SeeClick data uses either), as are spaces after commas or none.
    ///
    /// ```
    /// use magma_actions::ui::{UiAnswer, UiTarget};
    ///
    /// let a = UiAnswer::parse("Coordinate: (0.04, 0.12). Mark: 12")?;
    /// let UiAnswer::Elements { elements, trailing_period } = &a else { unreachable!() };
    /// assert_eq!(elements[0].target, UiTarget::Point { x: 0.04, y: 0.12 });
    /// assert_eq!((elements[0].mark, *trailing_period), (Some(12), false));
    /// assert_eq!(a.format(), "Coordinate: (0.04, 0.12). Mark: 12");
    /// # Ok::<(), magma_actions::ActionError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.strip_suffix('.').unwrap_or(trimmed) == NO_INPUT_AREAS {
            return Ok(Self::NoInputAreas);
        }
        let mut scanner = Scanner::new(trimmed);
        let mut elements = Vec::new();
        let trailing_period = loop {
            scanner.skip_ws();
            let target = if scanner.eat("Coordinate:") {
                parse_coordinates(&mut scanner, text)?
            } else if scanner.eat("Text:") {
                parse_text(&mut scanner)
            } else if elements.is_empty() {
                return Err(ActionError::NoActionFound {
                    kind: KIND,
                    text: text.into(),
                });
            } else {
                return Err(malformed(
                    format!("expected `Coordinate:` or `Text:` at {:?}", scanner.rest()),
                    text,
                ));
            };
            let mark = parse_mark(&mut scanner, text)?;
            elements.push(UiElement { target, mark });
            if scanner.is_done() {
                break false;
            }
            if !scanner.eat(".") {
                return Err(malformed(
                    format!("expected `.` between elements at {:?}", scanner.rest()),
                    text,
                ));
            }
            if scanner.is_done() {
                break true;
            }
        };
        Ok(Self::Elements {
            elements,
            trailing_period,
        })
    }

    /// Formats the answer as the training targets write it (two decimals, `", "` separators).
    pub fn format(&self) -> String {
        match self {
            Self::NoInputAreas => format!("{NO_INPUT_AREAS}."),
            Self::Elements {
                elements,
                trailing_period,
            } => {
                let mut out = elements
                    .iter()
                    .map(UiElement::format)
                    .collect::<Vec<_>>()
                    .join(". ");
                if *trailing_period {
                    out.push('.');
                }
                out
            }
        }
    }
}

impl UiElement {
    fn format(&self) -> String {
        let target = match &self.target {
            UiTarget::Point { x, y } => format!("Coordinate: ({x:.2}, {y:.2})"),
            UiTarget::Box { x1, y1, x2, y2 } => {
                format!("Coordinate: ({x1:.2}, {y1:.2}, {x2:.2}, {y2:.2})")
            }
            UiTarget::Text { text } => format!("Text: {text}"),
        };
        match self.mark {
            Some(mark) => format!("{target}. Mark: {mark}"),
            None => target,
        }
    }
}

/// Removes every ` Mark: k` / ` mark: k` annotation, as the reference does to SeeClick
/// conversations when SoM is disabled (regex ` Mark: \d+` and ` mark: \d+`), so that the
/// un-marked screenshot can be used with the same targets. Like the regex, it leaves the period
/// that followed the mark, hence the doubled periods.
///
/// ```
/// use magma_actions::ui::answer::strip_mark_annotations;
/// assert_eq!(
///     strip_mark_annotations("Coordinate: (0.17, 0.43). Mark: 3. Coordinate: (0.31, 0.43). mark: 4."),
///     "Coordinate: (0.17, 0.43).. Coordinate: (0.31, 0.43).."
/// );
/// ```
pub fn strip_mark_annotations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut scanner = Scanner::new(text);
    loop {
        let start = scanner.position();
        let next = [" Mark: ", " mark: "]
            .iter()
            .filter_map(|p| scanner.rest().find(p).map(|i| (i, *p)))
            .min();
        let Some((offset, pattern)) = next else {
            out.push_str(scanner.rest());
            return out;
        };
        out.push_str(&text[start..start + offset]);
        scanner.set_position(start + offset + pattern.len());
        if scanner.uint().is_none() {
            // not followed by digits: keep the text as it was
            out.push_str(pattern);
        }
    }
}

fn malformed(message: String, text: &str) -> ActionError {
    ActionError::Malformed {
        kind: KIND,
        message,
        text: text.into(),
    }
}

/// After `Coordinate:`: `(a, b)` or `(a, b, c, d)`.
fn parse_coordinates(scanner: &mut Scanner<'_>, text: &str) -> Result<UiTarget> {
    if !scanner.eat_after_ws("(") {
        return Err(malformed(
            "`Coordinate:` is not followed by `(`".into(),
            text,
        ));
    }
    let mut values = Vec::new();
    loop {
        scanner.skip_ws();
        let v = scanner
            .number()
            .ok_or_else(|| malformed("expected a number in the coordinates".into(), text))?;
        values.push(v);
        if scanner.eat_after_ws(")") {
            break;
        }
        if !scanner.eat_after_ws(",") {
            return Err(malformed(
                "expected `,` or `)` in the coordinates".into(),
                text,
            ));
        }
    }
    match values[..] {
        [x, y] => Ok(UiTarget::Point { x, y }),
        [x1, y1, x2, y2] => Ok(UiTarget::Box { x1, y1, x2, y2 }),
        _ => Err(malformed(
            format!("{} coordinates (expected 2 or 4)", values.len()),
            text,
        )),
    }
}

/// After `Text:`: everything up to the `.` that precedes a mark or the next element, or up to
/// a final period.
fn parse_text(scanner: &mut Scanner<'_>) -> UiTarget {
    scanner.skip_ws();
    let rest = scanner.rest();
    let end = [". Mark:", ". mark:", ". Coordinate:", ". Text:"]
        .iter()
        .filter_map(|d| rest.find(d))
        .min()
        .unwrap_or_else(|| rest.strip_suffix('.').unwrap_or(rest).len());
    let text = rest[..end].to_string();
    scanner.set_position(scanner.position() + end);
    UiTarget::Text { text }
}

/// `. Mark: k` (or `. mark: k`) after a target, if present.
fn parse_mark(scanner: &mut Scanner<'_>, text: &str) -> Result<Option<u32>> {
    let start = scanner.position();
    if !(scanner.eat(".") && (scanner.eat_after_ws("Mark:") || scanner.eat_after_ws("mark:"))) {
        scanner.set_position(start);
        return Ok(None);
    }
    scanner.skip_ws();
    scanner
        .uint()
        .map(Some)
        .ok_or_else(|| malformed("`Mark:` is not followed by a number".into(), text))
}
