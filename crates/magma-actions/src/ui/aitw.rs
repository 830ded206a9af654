//! AITW (Android in the Wild) actions: a one-key JSON object per step.
//!
//! * `{"TAP": {"MARK": 3}}`
//! * `{"TAP": {"NORMALIZED_COORDINATE": [y, x]}}` — y first (AITW's `touch_yx` order; the prompt
//!   text says `[x, y]`, the data is written y-first); the paper's figure spells the key
//!   `Coordinate`, which is accepted and kept
//! * `{"SWIPE": "UP"}` (`DOWN`, `LEFT`, `RIGHT`)
//! * `{"NAVIGATE": "BACK"}` (`HOME`, `ENTER`); the released Magma-AITW-SoM data writes the same
//!   action as `{"PRESS": "HOME"}`, which is accepted and kept
//! * `{"TYPE": "text"}`
//! * `{"SET_TASK_STATUS": "COMPLETE"}` (`IMPOSSIBLE`)
//!
//! Output is formatted like Python's `json.dumps` (`", "` and `": "` separators).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{ActionError, Result};

const KIND: &str = "AITW action";

/// Spelling of the coordinate key of a tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CoordinateKey {
    /// `NORMALIZED_COORDINATE` (the prompt's schema).
    #[serde(rename = "NORMALIZED_COORDINATE")]
    NormalizedCoordinate,
    /// `Coordinate` (paper Fig. 15's example).
    #[serde(rename = "Coordinate")]
    Coordinate,
}

/// Spelling of the navigation key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NavigateKey {
    /// `NAVIGATE` (the prompt's schema).
    #[serde(rename = "NAVIGATE")]
    Navigate,
    /// `PRESS` (the released dataset's answers).
    #[serde(rename = "PRESS")]
    Press,
}

/// The swipe of a gesture from `touch` to `lift` (normalised `[y, x]`, AITW's `yx_touch` /
/// `yx_lift` order): `UP`, `DOWN`, `LEFT` or `RIGHT` along the axis the finger moved most, in the
/// direction it moved (a tie goes to the vertical axis). The released data's convention is not
/// public, so data conversion and evaluation share this one rule.
///
/// ```
/// use magma_actions::ui::aitw::swipe_direction;
/// assert_eq!(swipe_direction([0.8, 0.5], [0.2, 0.5]), "UP");
/// assert_eq!(swipe_direction([0.5, 0.1], [0.5, 0.9]), "RIGHT");
/// ```
pub fn swipe_direction(touch_yx: [f64; 2], lift_yx: [f64; 2]) -> &'static str {
    let (dy, dx) = (lift_yx[0] - touch_yx[0], lift_yx[1] - touch_yx[1]);
    if dy.abs() >= dx.abs() {
        if dy < 0.0 {
            "UP"
        } else {
            "DOWN"
        }
    } else if dx < 0.0 {
        "LEFT"
    } else {
        "RIGHT"
    }
}

/// One AITW step action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AitwAction {
    /// Tap a mark.
    TapMark {
        /// 0-based SoM mark.
        mark: u32,
    },
    /// Tap a normalised screen position.
    TapPoint {
        /// Horizontal position in `[0, 1]`.
        x: f64,
        /// Vertical position in `[0, 1]`.
        y: f64,
        /// How the key was spelled.
        key: CoordinateKey,
    },
    /// Swipe `UP`, `DOWN`, `LEFT` or `RIGHT`.
    Swipe {
        /// The direction as written.
        direction: String,
    },
    /// Press `BACK`, `HOME` or `ENTER`.
    Navigate {
        /// The button as written.
        button: String,
        /// How the key was spelled.
        key: NavigateKey,
    },
    /// Type text.
    Type {
        /// The text.
        text: String,
    },
    /// End the episode: `COMPLETE` or `IMPOSSIBLE`.
    SetTaskStatus {
        /// The status as written.
        status: String,
    },
}

impl AitwAction {
    /// Parses the first `{…}` object of a model answer (code fences and surrounding text are
    /// ignored).
    ///
    /// ```
    /// use magma_actions::ui::AitwAction;
    ///
    /// let a = AitwAction::parse(r#"{"TAP": {"NORMALIZED_COORDINATE": [0.54, 0.88]}}"#)?;
    /// assert!(matches!(a, AitwAction::TapPoint { x, y, .. } if x == 0.88 && y == 0.54));
    /// assert_eq!(a.format(), r#"{"TAP": {"NORMALIZED_COORDINATE": [0.54, 0.88]}}"#);
    /// # Ok::<(), magma_actions::ActionError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let no_action = || ActionError::NoActionFound {
            kind: KIND,
            text: text.into(),
        };
        let malformed = |message: String| ActionError::Malformed {
            kind: KIND,
            message,
            text: text.into(),
        };
        let start = text.find('{').ok_or_else(no_action)?;
        let end = text
            .rfind('}')
            .filter(|&e| e > start)
            .ok_or_else(no_action)?;
        let value: Value = serde_json::from_str(&text[start..=end])
            .map_err(|e| malformed(format!("invalid JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(no_action());
        };
        let mut entries = object.into_iter();
        let (key, value) = match (entries.next(), entries.next()) {
            (Some(entry), None) => entry,
            _ => return Err(malformed("expected exactly one action key".into())),
        };
        let string_value = |what: &str| {
            value
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| malformed(format!("`{key}` needs a string {what}")))
        };
        Ok(match key.as_str() {
            "TAP" => parse_tap(&value).map_err(malformed)?,
            "SWIPE" => Self::Swipe {
                direction: string_value("direction")?,
            },
            "NAVIGATE" | "PRESS" => Self::Navigate {
                button: string_value("button")?,
                key: if key == "PRESS" {
                    NavigateKey::Press
                } else {
                    NavigateKey::Navigate
                },
            },
            "TYPE" => Self::Type {
                text: string_value("text")?,
            },
            "SET_TASK_STATUS" => Self::SetTaskStatus {
                status: string_value("status")?,
            },
            other => return Err(malformed(format!("unknown action key `{other}`"))),
        })
    }

    /// Formats the action like `json.dumps` of the one-key dict.
    pub fn format(&self) -> String {
        let quoted = |s: &str| Value::String(s.to_string()).to_string();
        match self {
            Self::TapMark { mark } => format!("{{\"TAP\": {{\"MARK\": {mark}}}}}"),
            Self::TapPoint { x, y, key } => {
                let key = match key {
                    CoordinateKey::NormalizedCoordinate => "NORMALIZED_COORDINATE",
                    CoordinateKey::Coordinate => "Coordinate",
                };
                format!(
                    "{{\"TAP\": {{\"{key}\": [{}, {}]}}}}",
                    python_float(*y),
                    python_float(*x)
                )
            }
            Self::Swipe { direction } => format!("{{\"SWIPE\": {}}}", quoted(direction)),
            Self::Navigate { button, key } => {
                let key = match key {
                    NavigateKey::Navigate => "NAVIGATE",
                    NavigateKey::Press => "PRESS",
                };
                format!("{{\"{key}\": {}}}", quoted(button))
            }
            Self::Type { text } => format!("{{\"TYPE\": {}}}", quoted(text)),
            Self::SetTaskStatus { status } => {
                format!("{{\"SET_TASK_STATUS\": {}}}", quoted(status))
            }
        }
    }
}

fn parse_tap(value: &Value) -> std::result::Result<AitwAction, String> {
    let object: &Map<String, Value> = value
        .as_object()
        .ok_or("`TAP` needs an object such as {\"MARK\": 3}")?;
    if let Some(mark) = object.get("MARK") {
        let mark = mark
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .ok_or("`MARK` must be a non-negative integer")?;
        return Ok(AitwAction::TapMark { mark });
    }
    let (key, point) = [
        ("NORMALIZED_COORDINATE", CoordinateKey::NormalizedCoordinate),
        ("Coordinate", CoordinateKey::Coordinate),
    ]
    .into_iter()
    .find_map(|(name, key)| object.get(name).map(|p| (key, p)))
    .ok_or("`TAP` needs `MARK` or `NORMALIZED_COORDINATE`")?;
    match point
        .as_array()
        .map(|a| a.iter().map(Value::as_f64).collect::<Vec<_>>())
    {
        Some(v) if v.len() == 2 => match (v[0], v[1]) {
            (Some(y), Some(x)) => Ok(AitwAction::TapPoint { x, y, key }),
            _ => Err("tap coordinates must be numbers".into()),
        },
        _ => Err("tap coordinates must be a list of two numbers [y, x]".into()),
    }
}

/// A float as Python's `repr` writes ordinary values (`1.0`, not `1`).
pub(crate) fn python_float(v: f64) -> String {
    let s = format!("{v}");
    if v.is_finite() && !s.contains(['.', 'e']) {
        s + ".0"
    } else {
        s
    }
}
