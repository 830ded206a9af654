//! Mind2Web operations: CLICK, TYPE (with the typed text) and SELECT (with the chosen option).
//!
//! The exact target string of Magma's Mind2Web-SoM data is not public; this follows the SeeClick
//! convention it is built on: `{"action_type": 4, "click_point": (0.49,0.39)}`, with
//! `"value": "…"` for TYPE (3) and SELECT (2). Mind2Web's own `action_reprs` form
//! (`[textbox] Name -> TYPE: Tim`, `CLICK`) is accepted too. A `Mark: k` anywhere in the text is
//! kept as the element's SoM mark.

use serde::Serialize;

use crate::scan::Scanner;
use crate::{ActionError, Result};

const KIND: &str = "Mind2Web action";

/// The operation performed on the element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", content = "value", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mind2WebOp {
    /// Click (Mind2Web maps HOVER and ENTER to CLICK as well).
    Click,
    /// Type the text.
    Type(String),
    /// Select the option.
    Select(String),
}

impl Mind2WebOp {
    /// SeeClick's `action_type` id: CLICK 4, TYPE 3, SELECT 2.
    pub fn action_type(&self) -> u32 {
        match self {
            Self::Click => 4,
            Self::Type(_) => 3,
            Self::Select(_) => 2,
        }
    }
}

/// One Mind2Web step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mind2WebAction {
    /// The operation.
    pub operation: Mind2WebOp,
    /// Click point normalised to `[0, 1]`, when given.
    pub click_point: Option<[f64; 2]>,
    /// SoM mark of the element, when given.
    pub mark: Option<u32>,
}

impl Mind2WebAction {
    /// Parses either form described in the module documentation.
    ///
    /// ```
    /// use magma_actions::ui::{Mind2WebAction, Mind2WebOp};
    ///
    /// let a = Mind2WebAction::parse(r#"{"action_type": 3, "click_point": (0.49,0.39), "value": "Tim"}"#)?;
    /// assert_eq!(a.operation, Mind2WebOp::Type("Tim".into()));
    /// assert_eq!(a.click_point, Some([0.49, 0.39]));
    /// let b = Mind2WebAction::parse("[combobox] Flight class -> SELECT: Business")?;
    /// assert_eq!(b.operation, Mind2WebOp::Select("Business".into()));
    /// # Ok::<(), magma_actions::ActionError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let mark = find_after(text, "Mark:").and_then(|mut s| {
            s.skip_ws();
            s.uint()
        });
        let parsed = if text.contains("action_type") {
            parse_seeclick(text)?
        } else {
            parse_repr(text)?
        };
        Ok(Self { mark, ..parsed })
    }

    /// Formats the SeeClick dict (`value` only for TYPE/SELECT; no click point → omitted).
    ///
    /// ```
    /// use magma_actions::ui::{Mind2WebAction, Mind2WebOp};
    ///
    /// let a = Mind2WebAction { operation: Mind2WebOp::Click, click_point: Some([0.5, 0.25]), mark: None };
    /// assert_eq!(a.format(), r#"{"action_type": 4, "click_point": (0.50,0.25)}"#);
    /// ```
    pub fn format(&self) -> String {
        let mut out = format!("{{\"action_type\": {}", self.operation.action_type());
        if let Some([x, y]) = self.click_point {
            out += &format!(", \"click_point\": ({x:.2},{y:.2})");
        }
        match &self.operation {
            Mind2WebOp::Type(value) | Mind2WebOp::Select(value) => {
                out += &format!(", \"value\": {}", serde_json::Value::String(value.clone()));
            }
            Mind2WebOp::Click => {}
        }
        out.push('}');
        out
    }

    /// The operation as Mind2Web's Op-F1 metric compares it: `CLICK`, `TYPE value`,
    /// `SELECT value` (see SeeClick's `mind2web_test.py`, which lower-cases the value).
    pub fn operation_string(&self) -> String {
        match &self.operation {
            Mind2WebOp::Click => "CLICK".into(),
            Mind2WebOp::Type(v) => format!("TYPE {v}"),
            Mind2WebOp::Select(v) => format!("SELECT {v}"),
        }
    }

    /// Clicked position in pixels, if a click point was given.
    pub fn click_pixels(&self, width: u32, height: u32) -> Result<Option<[f64; 2]>> {
        self.click_point
            .map(|p| super::normalized_to_pixels(p, width, height))
            .transpose()
    }
}

fn malformed(message: String, text: &str) -> ActionError {
    ActionError::Malformed {
        kind: KIND,
        message,
        text: text.into(),
    }
}

/// A scanner placed just after the first `key` (with either quote style before it ignored).
fn find_after<'a>(text: &'a str, key: &str) -> Option<Scanner<'a>> {
    let offset = text.find(key)? + key.len();
    let mut scanner = Scanner::new(text);
    scanner.set_position(offset);
    Some(scanner)
}

/// `{"action_type": n, "click_point": (x,y), "value": "…"}` with `"` or `'` quotes.
fn parse_seeclick(text: &str) -> Result<Mind2WebAction> {
    let after_key = |key: &str| {
        let mut s = find_after(text, key)?;
        s.eat("\"");
        s.eat("'");
        s.eat_after_ws(":").then_some(s)
    };
    let action_type = after_key("action_type")
        .and_then(|mut s| {
            s.skip_ws();
            s.uint()
        })
        .ok_or_else(|| malformed("`action_type` is not an integer".into(), text))?;
    let click_point = match after_key("click_point") {
        None => None,
        Some(mut s) => {
            let open = s.eat_after_ws("(") || s.eat_after_ws("[");
            s.skip_ws();
            let x = s.number().filter(|_| open);
            let y = x.and_then(|_| {
                s.eat_after_ws(",").then_some(())?;
                s.skip_ws();
                s.number()
            });
            match (x, y) {
                (Some(x), Some(y)) => Some([x, y]),
                _ => return Err(malformed("`click_point` is not `(x,y)`".into(), text)),
            }
        }
    };
    let value = after_key("value").map(|mut s| {
        s.skip_ws();
        let quote = if s.eat("\"") {
            "\""
        } else if s.eat("'") {
            "'"
        } else {
            ""
        };
        let raw = if quote.is_empty() {
            s.rest().trim_end_matches(['}', ' '])
        } else {
            s.take_until(quote).unwrap_or_else(|| s.rest())
        };
        raw.to_string()
    });
    let operation = match (action_type, value) {
        (4, _) => Mind2WebOp::Click,
        (3, Some(v)) => Mind2WebOp::Type(v),
        (2, Some(v)) => Mind2WebOp::Select(v),
        (3 | 2, None) => return Err(malformed("TYPE/SELECT needs a `value`".into(), text)),
        (other, _) => {
            return Err(malformed(
                format!("unknown action_type {other} (CLICK 4, TYPE 3, SELECT 2)"),
                text,
            ))
        }
    };
    Ok(Mind2WebAction {
        operation,
        click_point,
        mark: None,
    })
}

/// `… -> CLICK`, `… -> TYPE: value`, `SELECT: value` (the op may start the text).
fn parse_repr(text: &str) -> Result<Mind2WebAction> {
    let op_text = text.rsplit_once("->").map_or(text, |(_, op)| op).trim();
    let operation = if let Some(v) = op_text.strip_prefix("TYPE:") {
        Mind2WebOp::Type(v.trim().to_string())
    } else if let Some(v) = op_text.strip_prefix("SELECT:") {
        Mind2WebOp::Select(v.trim().to_string())
    } else if op_text.starts_with("CLICK") {
        Mind2WebOp::Click
    } else {
        return Err(ActionError::NoActionFound {
            kind: KIND,
            text: text.into(),
        });
    };
    Ok(Mind2WebAction {
        operation,
        click_point: None,
        mark: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeclick_round_trip_and_single_quotes() {
        let text = r#"{"action_type": 2, "click_point": (0.12,0.80), "value": "Business"}"#;
        let a = Mind2WebAction::parse(text).unwrap();
        assert_eq!(a.format(), text);
        let b = Mind2WebAction::parse("{'action_type': 4, 'click_point': (0.1, 0.2)}").unwrap();
        assert_eq!(b.operation, Mind2WebOp::Click);
        assert_eq!(b.click_point, Some([0.1, 0.2]));
    }

    #[test]
    fn unknown_text_is_no_action() {
        assert!(matches!(
            Mind2WebAction::parse("I would scroll"),
            Err(ActionError::NoActionFound { .. })
        ));
        assert!(matches!(
            Mind2WebAction::parse(r#"{"action_type": 3}"#),
            Err(ActionError::Malformed { .. })
        ));
    }
}
