//! One web-agent step as a single command: the answer forms Magma and its fine-tunes write
//! (Magma's click answer, SeeClick/Mind2Web operations, AITW JSON) plus the browser commands
//! none of them has (scroll, key press, navigate, stop / final answer).
//!
//! Forms, tried in this order:
//! 1. a command line `SCROLL: DOWN`, `PRESS: Enter`, `GOTO: https://…`, `BACK`, `STOP`,
//!    `ANSWER: text` (keyword case-insensitive, at the start of a line, optionally after `-> `);
//! 2. AITW JSON (`{"TAP": …}`, `{"SWIPE": "UP"}`, `{"TYPE": "…"}`, `{"SET_TASK_STATUS": …}`);
//! 3. SeeClick's `{"action_type": N, "click_point": (x, y), "value": …}` and Mind2Web's
//!    `[textbox] Name -> TYPE: Tim` ([`Mind2WebAction`]);
//! 4. Magma's click answer `Coordinate: (x, y). Mark: k`, and the reference UI agent's fallbacks
//!    (Qwen `<box>`, two or four bare numbers, see [`resolve_click`]).

use serde::Serialize;

use super::answer::strip_mark_annotations;
use super::{resolve_click, AitwAction, MarkBoxes, Mind2WebAction, Mind2WebOp};
use crate::scan::Scanner;
use crate::{ActionError, Result};

const KIND: &str = "web action";

/// Where an action points: a SoM mark, a point normalised to `[0, 1]` of the screenshot, or both
/// (the mark wins when it exists on the screen; the point is the fallback).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct WebTarget {
    /// 0-based SoM mark.
    pub mark: Option<u32>,
    /// `[x, y]` in `[0, 1]`.
    pub point: Option<[f64; 2]>,
}

/// Scroll direction (of the view: `Down` shows what is below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScrollDirection {
    /// Towards the top of the page.
    Up,
    /// Towards the bottom of the page.
    Down,
    /// Towards the left edge.
    Left,
    /// Towards the right edge.
    Right,
}

impl ScrollDirection {
    fn parse(word: &str) -> Option<Self> {
        match word.trim().to_ascii_lowercase().as_str() {
            "up" => Some(Self::Up),
            "down" => Some(Self::Down),
            "left" => Some(Self::Left),
            "right" => Some(Self::Right),
            _ => None,
        }
    }
}

/// One browser command.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WebCommand {
    /// Click the target.
    Click {
        /// What to click.
        target: WebTarget,
    },
    /// Type text, into the target when given (clicked first), else into the focused element.
    Type {
        /// Where to type.
        target: Option<WebTarget>,
        /// The text.
        text: String,
    },
    /// Choose the option whose label or value is `value` in the `<select>` at the target.
    Select {
        /// The `<select>`.
        target: WebTarget,
        /// Option label or value.
        value: String,
    },
    /// Scroll the view.
    Scroll {
        /// Direction.
        direction: ScrollDirection,
    },
    /// Press a key (`Enter`, `Tab`, `Escape`, `Backspace`, `ArrowDown`, `PageDown`, …).
    Key {
        /// DOM key name.
        key: String,
    },
    /// Load a URL.
    Navigate {
        /// The URL.
        url: String,
    },
    /// Go back in the history.
    Back,
    /// End the task, with the final answer when there is one.
    Stop {
        /// The answer text.
        answer: Option<String>,
    },
}

impl WebCommand {
    /// Parses a model answer (see the module documentation for the forms and their order).
    ///
    /// ```
    /// use magma_actions::ui::{WebCommand, WebTarget, ScrollDirection};
    ///
    /// let c = WebCommand::parse("Coordinate: (0.25, 0.5). Mark: 3")?;
    /// assert_eq!(c, WebCommand::Click { target: WebTarget { mark: Some(3), point: Some([0.25, 0.5]) } });
    /// assert_eq!(WebCommand::parse("SCROLL: down")?, WebCommand::Scroll { direction: ScrollDirection::Down });
    /// assert_eq!(WebCommand::parse("ANSWER: 42")?, WebCommand::Stop { answer: Some("42".into()) });
    /// let t = WebCommand::parse(r#"{"action_type": 3, "click_point": (0.4,0.2), "value": "Ada"}"#)?;
    /// assert!(matches!(t, WebCommand::Type { text, .. } if text == "Ada"));
    /// # Ok::<(), magma_actions::ActionError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(command) = parse_command_line(text)? {
            return Ok(command);
        }
        let trimmed = text.trim();
        if trimmed.contains('{') && !trimmed.contains("action_type") {
            if let Ok(aitw) = AitwAction::parse(trimmed) {
                return from_aitw(aitw, text);
            }
        }
        if trimmed.contains("action_type") || trimmed.contains("->") {
            return Ok(from_mind2web(Mind2WebAction::parse(trimmed)?));
        }
        parse_click_answer(trimmed)
    }

    /// The target the command points at, if any.
    pub fn target(&self) -> Option<&WebTarget> {
        match self {
            Self::Click { target } | Self::Select { target, .. } => Some(target),
            Self::Type { target, .. } => target.as_ref(),
            _ => None,
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

/// The command-line forms (`SCROLL: DOWN`, …); `None` when no line starts with a keyword.
fn parse_command_line(text: &str) -> Result<Option<WebCommand>> {
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("->").map_or(line, str::trim_start);
        let (keyword, argument) = match line.split_once(':') {
            Some((k, a)) => (k.trim(), a.trim()),
            None => (line, ""),
        };
        let command = match keyword.to_ascii_uppercase().as_str() {
            "SCROLL" => WebCommand::Scroll {
                direction: ScrollDirection::parse(argument).ok_or_else(|| {
                    malformed(
                        format!("SCROLL needs UP, DOWN, LEFT or RIGHT, got {argument:?}"),
                        text,
                    )
                })?,
            },
            "PRESS" | "KEY" => {
                if argument.is_empty() {
                    return Err(malformed(format!("{keyword} needs a key name"), text));
                }
                WebCommand::Key {
                    key: argument.to_string(),
                }
            }
            "GOTO" | "NAVIGATE" if !argument.is_empty() => {
                // AITW's NAVIGATE takes BACK/HOME/ENTER; a URL makes it a page load
                match argument.to_ascii_uppercase().as_str() {
                    "BACK" => WebCommand::Back,
                    "ENTER" => WebCommand::Key {
                        key: "Enter".into(),
                    },
                    _ => WebCommand::Navigate {
                        url: argument.to_string(),
                    },
                }
            }
            "BACK" if argument.is_empty() => WebCommand::Back,
            "STOP" | "DONE" => WebCommand::Stop {
                answer: (!argument.is_empty()).then(|| argument.to_string()),
            },
            "ANSWER" => WebCommand::Stop {
                answer: Some(argument.to_string()),
            },
            _ => continue,
        };
        return Ok(Some(command));
    }
    Ok(None)
}

fn from_aitw(action: AitwAction, text: &str) -> Result<WebCommand> {
    Ok(match action {
        AitwAction::TapMark { mark } => WebCommand::Click {
            target: WebTarget {
                mark: Some(mark),
                point: None,
            },
        },
        AitwAction::TapPoint { x, y, .. } => WebCommand::Click {
            target: WebTarget {
                mark: None,
                point: Some([x, y]),
            },
        },
        // a finger swiping up moves the content up: the view scrolls down
        AitwAction::Swipe { direction } => WebCommand::Scroll {
            direction: match ScrollDirection::parse(&direction) {
                Some(ScrollDirection::Up) => ScrollDirection::Down,
                Some(ScrollDirection::Down) => ScrollDirection::Up,
                Some(ScrollDirection::Left) => ScrollDirection::Right,
                Some(ScrollDirection::Right) => ScrollDirection::Left,
                None => return Err(malformed(format!("unknown SWIPE {direction:?}"), text)),
            },
        },
        AitwAction::Navigate { button, .. } => match button.to_ascii_uppercase().as_str() {
            "BACK" => WebCommand::Back,
            "ENTER" => WebCommand::Key {
                key: "Enter".into(),
            },
            other => {
                return Err(malformed(
                    format!("NAVIGATE {other} has no web meaning"),
                    text,
                ))
            }
        },
        AitwAction::Type { text } => WebCommand::Type { target: None, text },
        AitwAction::SetTaskStatus { status } => WebCommand::Stop {
            answer: Some(status),
        },
    })
}

fn from_mind2web(action: Mind2WebAction) -> WebCommand {
    let target = WebTarget {
        mark: action.mark,
        point: action.click_point,
    };
    // the `-> TYPE: value` form runs to the end of the text, so a trailing ` Mark: k` is not
    // part of the value
    let value = |v: String| {
        if action.mark.is_some() {
            strip_mark_annotations(&v).trim().to_string()
        } else {
            v
        }
    };
    match action.operation {
        Mind2WebOp::Click => WebCommand::Click { target },
        Mind2WebOp::Type(text) => WebCommand::Type {
            target: (target != WebTarget::default()).then_some(target),
            text: value(text),
        },
        Mind2WebOp::Select(v) => WebCommand::Select {
            target,
            value: value(v),
        },
    }
}

/// Magma's `Coordinate: (x, y). Mark: k`, else the reference UI agent's number rules.
fn parse_click_answer(text: &str) -> Result<WebCommand> {
    let mark = text.find("Mark:").and_then(|at| {
        let mut s = Scanner::new(text);
        s.set_position(at + "Mark:".len());
        s.skip_ws();
        s.uint()
    });
    let point = if mark.is_some() {
        text.find("Coordinate:").and_then(|at| {
            match Scanner::all_numbers(&text[at + "Coordinate:".len()..])[..] {
                [x, y, ..] => Some([x, y]),
                _ => None,
            }
        })
    } else {
        // no mark: the reference rules on a 1×1 image give the normalised point directly
        Some(resolve_click(text, &MarkBoxes::new(), 1, 1)?.normalized)
    };
    Ok(WebCommand::Click {
        target: WebTarget { mark, point },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(mark: Option<u32>, point: Option<[f64; 2]>) -> WebCommand {
        WebCommand::Click {
            target: WebTarget { mark, point },
        }
    }

    #[test]
    fn magma_click_answers() {
        assert_eq!(
            WebCommand::parse("Coordinate: (0.49, 0.39). Mark: 12").unwrap(),
            click(Some(12), Some([0.49, 0.39]))
        );
        assert_eq!(WebCommand::parse("Mark: 4").unwrap(), click(Some(4), None));
        assert_eq!(
            WebCommand::parse("(0.2, 0.6)").unwrap(),
            click(None, Some([0.2, 0.6]))
        );
        assert_eq!(
            WebCommand::parse("<box>(100,200),(300,400)</box>").unwrap(),
            click(None, Some([0.2, 0.3]))
        );
    }

    #[test]
    fn seeclick_and_mind2web() {
        assert_eq!(
            WebCommand::parse(r#"{"action_type": 4, "click_point": (0.10,0.20)}"#).unwrap(),
            click(None, Some([0.1, 0.2]))
        );
        assert_eq!(
            WebCommand::parse(
                r#"{"action_type": 2, "click_point": (0.5,0.5), "value": "Blue"} Mark: 7"#
            )
            .unwrap(),
            WebCommand::Select {
                target: WebTarget {
                    mark: Some(7),
                    point: Some([0.5, 0.5])
                },
                value: "Blue".into()
            }
        );
        assert_eq!(
            WebCommand::parse("[textbox] Name -> TYPE: Ada Lovelace").unwrap(),
            WebCommand::Type {
                target: None,
                text: "Ada Lovelace".into()
            }
        );
        assert_eq!(
            WebCommand::parse("[textbox] Email -> TYPE: ada@example.com Mark: 1").unwrap(),
            WebCommand::Type {
                target: Some(WebTarget {
                    mark: Some(1),
                    point: None
                }),
                text: "ada@example.com".into()
            }
        );
    }

    #[test]
    fn aitw_forms() {
        assert_eq!(
            WebCommand::parse(r#"{"TAP": {"MARK": 2}}"#).unwrap(),
            click(Some(2), None)
        );
        assert_eq!(
            WebCommand::parse(r#"{"SWIPE": "UP"}"#).unwrap(),
            WebCommand::Scroll {
                direction: ScrollDirection::Down
            }
        );
        assert_eq!(
            WebCommand::parse(r#"{"SET_TASK_STATUS": "COMPLETE"}"#).unwrap(),
            WebCommand::Stop {
                answer: Some("COMPLETE".into())
            }
        );
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            WebCommand::parse("I will press it.\nPRESS: Enter").unwrap(),
            WebCommand::Key {
                key: "Enter".into()
            }
        );
        assert_eq!(
            WebCommand::parse("-> GOTO: http://a.test/x").unwrap(),
            WebCommand::Navigate {
                url: "http://a.test/x".into()
            }
        );
        assert_eq!(WebCommand::parse("back").unwrap(), WebCommand::Back);
        assert_eq!(
            WebCommand::parse("STOP").unwrap(),
            WebCommand::Stop { answer: None }
        );
    }

    #[test]
    fn unparsable_answers_name_the_problem() {
        let e = WebCommand::parse("I do not know").unwrap_err().to_string();
        assert!(e.contains("no UI click found"), "{e}");
        let e = WebCommand::parse("SCROLL: sideways")
            .unwrap_err()
            .to_string();
        assert!(e.contains("SCROLL needs"), "{e}");
    }
}
