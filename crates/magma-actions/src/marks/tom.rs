//! Trace-of-Mark answers: where each moving mark goes next.
//!
//! ```text
//! Mark 3 at [12,200], Mark 7 at [90,41] should be moved, and their future positions are:
//!
//! "Mark 3": "[[14,198],[17,195]]"
//!
//! "Mark 7": "[[90,45]]"
//!
//! ```
//! With `mm_use_trace_start_end` the per-mark block (not the header) is wrapped in
//! `<trace_start>…<trace_end>`.

use serde::{Deserialize, Serialize};

use super::grid::{self, GridPoint};
use super::{parse_int_pair, parse_mark_at};
use crate::scan::Scanner;
use crate::{ActionError, Result};

/// The text between the mark list and the per-mark traces.
pub const HEADER_SUFFIX: &str = " should be moved, and their future positions are:\n\n";
/// Opening tag of the trace block (`mm_use_trace_start_end`).
pub const TRACE_START: &str = "<trace_start>";
/// Closing tag of the trace block.
pub const TRACE_END: &str = "<trace_end>";
/// Where the reference's trajectory demo splits the answer.
const SPLIT_MARKER: &str = "and their future positions are:\n";
const KIND: &str = "Trace-of-Mark answer";

/// One mark's trace on the 256 grid: where it is now and the future points (start excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkTrace {
    /// The number drawn on the frame.
    pub id: u32,
    /// Current position (listed in the answer's first line).
    pub start: GridPoint,
    /// Future positions, one per step.
    pub future: Vec<GridPoint>,
}

impl MarkTrace {
    /// Splits a whole quantised trace into its start and future points; `None` if empty.
    ///
    /// ```
    /// use magma_actions::marks::{GridPoint, MarkTrace};
    ///
    /// let t = MarkTrace::from_points(3, &[GridPoint::new(1, 2), GridPoint::new(3, 4)]).unwrap();
    /// assert_eq!((t.start, t.future.len()), (GridPoint::new(1, 2), 1));
    /// ```
    pub fn from_points(id: u32, points: &[GridPoint]) -> Option<Self> {
        let (start, future) = points.split_first()?;
        Some(Self {
            id,
            start: *start,
            future: future.to_vec(),
        })
    }
}

/// Formats the ToM training target exactly as the reference does: header marks and trace
/// entries sorted by id, no spaces inside coordinates, a blank line after every entry, the
/// entries optionally wrapped in `<trace_start>…<trace_end>`.
///
/// ```
/// use magma_actions::marks::{tom, GridPoint, MarkTrace};
///
/// let t = MarkTrace { id: 3, start: GridPoint::new(12, 200), future: vec![GridPoint::new(14, 198)] };
/// assert_eq!(
///     tom::format_answer(&[t], true),
///     "Mark 3 at [12,200] should be moved, and their future positions are:\n\n\
///      <trace_start>\"Mark 3\": \"[[14,198]]\"\n\n<trace_end>"
/// );
/// ```
pub fn format_answer(traces: &[MarkTrace], wrap: bool) -> String {
    let mut sorted: Vec<&MarkTrace> = traces.iter().collect();
    sorted.sort_by_key(|t| t.id);
    let header = sorted
        .iter()
        .map(|t| format!("Mark {} at [{},{}]", t.id, t.start.x, t.start.y))
        .collect::<Vec<_>>()
        .join(", ");
    let block: String = sorted
        .iter()
        .map(|t| {
            let points = t
                .future
                .iter()
                .map(|p| format!("[{},{}]", p.x, p.y))
                .collect::<Vec<_>>()
                .join(",");
            format!("\"Mark {}\": \"[{points}]\"\n\n", t.id)
        })
        .collect();
    if wrap {
        format!("{header}{HEADER_SUFFIX}{TRACE_START}{block}{TRACE_END}")
    } else {
        format!("{header}{HEADER_SUFFIX}{block}")
    }
}

/// Parses a full ToM answer (header and trace block, wrapped or not). Every traced mark must be
/// listed in the header and vice versa. Use [`parse_future_traces`] for the demo's lenient
/// reading that ignores the header.
///
/// ```
/// use magma_actions::marks::{tom, GridPoint};
///
/// let text = "Mark 3 at [12,200] should be moved, and their future positions are:\n\n\
///             \"Mark 3\": \"[[14,198],[17,195]]\"\n\n";
/// let traces = tom::parse_answer(text)?;
/// assert_eq!(traces[0].future[1], GridPoint::new(17, 195));
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
pub fn parse_answer(text: &str) -> Result<Vec<MarkTrace>> {
    let Some((header, _)) = text.split_once(SPLIT_MARKER) else {
        return Err(ActionError::NoActionFound {
            kind: KIND,
            text: text.into(),
        });
    };
    let mut starts = Vec::new();
    let mut scanner = Scanner::new(header);
    while scanner.take_until("Mark ").is_some() {
        match parse_mark_at(&mut scanner, KIND, text)? {
            Some(mark) => starts.push(mark),
            None => scanner.advance_char(),
        }
    }
    let futures = parse_future_traces(text)?;
    let malformed = |message: String| ActionError::Malformed {
        kind: KIND,
        message,
        text: text.into(),
    };
    if starts.len() != futures.len() {
        return Err(malformed(format!(
            "the header lists {} marks but {} traces follow",
            starts.len(),
            futures.len()
        )));
    }
    futures
        .into_iter()
        .map(|(id, future)| {
            let start = starts
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| malformed(format!("mark {id} has a trace but no start position")))?
                .at;
            Ok(MarkTrace { id, start, future })
        })
        .collect()
}

/// The per-mark future points, read as the reference's trajectory demo reads them: whatever
/// follows `and their future positions are:\n` (or the whole text if absent), entries
/// `"Mark k": "[[x,y],…]"` separated by blank lines (or commas). `<trace_start>`/`<trace_end>`
/// are ignored (the demo decodes with `skip_special_tokens`).
pub fn parse_future_traces(text: &str) -> Result<Vec<(u32, Vec<GridPoint>)>> {
    let block = text.split_once(SPLIT_MARKER).map_or(text, |(_, rest)| rest);
    let block = block.trim();
    let block = block.strip_prefix(TRACE_START).unwrap_or(block);
    let block = block.strip_suffix(TRACE_END).unwrap_or(block);
    let malformed = |message: String| ActionError::Malformed {
        kind: KIND,
        message,
        text: text.into(),
    };
    let mut scanner = Scanner::new(block);
    let mut traces = Vec::new();
    loop {
        scanner.skip_ws();
        if scanner.is_done() {
            break;
        }
        if !traces.is_empty() && scanner.eat(",") {
            continue;
        }
        if !scanner.eat("\"Mark") {
            return Err(malformed(format!(
                "expected `\"Mark k\": \"[[x,y],...]\"` at {:?}",
                truncate(scanner.rest())
            )));
        }
        scanner.skip_ws();
        let id = scanner
            .uint()
            .ok_or_else(|| malformed("a trace key has no mark number".into()))?;
        if !(scanner.eat("\"") && scanner.eat_after_ws(":") && scanner.eat_after_ws("\"")) {
            return Err(malformed(format!(
                "trace of mark {id}: expected `\"Mark {id}\": \"`"
            )));
        }
        let points = parse_point_list(&mut scanner)
            .ok_or_else(|| malformed(format!("trace of mark {id}: expected `[[x,y],...]`")))?;
        if !scanner.eat_after_ws("\"") {
            return Err(malformed(format!(
                "trace of mark {id}: missing closing quote"
            )));
        }
        traces.push((id, points));
    }
    if traces.is_empty() {
        return Err(ActionError::NoActionFound {
            kind: KIND,
            text: text.into(),
        });
    }
    Ok(traces)
}

/// `[[x,y],[x,y],…]` or `[]`.
fn parse_point_list(scanner: &mut Scanner<'_>) -> Option<Vec<GridPoint>> {
    if !scanner.eat_after_ws("[") {
        return None;
    }
    let mut points = Vec::new();
    if scanner.eat_after_ws("]") {
        return Some(points);
    }
    loop {
        points.push(parse_int_pair(scanner)?);
        if scanner.eat_after_ws("]") {
            return Some(points);
        }
        if !scanner.eat_after_ws(",") {
            return None;
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Pads every trace to the longest by repeating its last point, as the reference demo does
/// before drawing. Fails on an empty trace (the demo's indexing fails there too).
///
/// ```
/// use magma_actions::marks::{tom, GridPoint};
///
/// let p = |x| GridPoint::new(x, 0);
/// let padded = tom::pad_to_longest(&[(1, vec![p(1), p(2), p(3)]), (2, vec![p(9)])])?;
/// assert_eq!(padded[1].1, vec![p(9), p(9), p(9)]);
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
pub fn pad_to_longest(traces: &[(u32, Vec<GridPoint>)]) -> Result<Vec<(u32, Vec<GridPoint>)>> {
    let longest = traces.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
    traces
        .iter()
        .map(|(id, trace)| {
            let last = *trace.last().ok_or(ActionError::EmptyTrace { mark: *id })?;
            let mut padded = trace.clone();
            padded.resize(longest, last);
            Ok((*id, padded))
        })
        .collect()
}

/// Parses the future traces of an answer, pads them and converts them to pixel positions of a
/// `width × height` image: the reference demo's full decoding path.
pub fn to_pixel_tracks(text: &str, width: u32, height: u32) -> Result<Vec<(u32, Vec<[f32; 2]>)>> {
    pad_to_longest(&parse_future_traces(text)?)?
        .into_iter()
        .map(|(id, trace)| {
            let pixels = trace
                .into_iter()
                .map(|p| grid::to_pixels(p, width, height))
                .collect::<Result<Vec<_>>>()?;
            Ok((id, pixels))
        })
        .collect()
}
