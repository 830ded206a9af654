//! Chat messages and the Hugging Face chat template (Jinja, rendered with `minijinja`).

use std::path::{Path, PathBuf};

use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{read_json, ProcessorError};

/// The system prompt every Magma app uses (sic: "agent", not "an agent").
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are agent that can see, talk and act.";

/// One chat message. `<image>` in `content` marks where an image goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text; the template trims surrounding whitespace.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

const TEMPLATE_NAME: &str = "chat_template";

/// The `chat_template` of `tokenizer_config.json`, compiled, with the special-token strings the
/// template may reference (`bos_token`, `eos_token`, ...).
///
/// Rendering matches `transformers`' `apply_chat_template`: Jinja with `trim_blocks` and
/// `lstrip_blocks`, the special-token strings as variables, and a `trim` filter with Python's
/// `str.strip()` notion of whitespace.
///
/// ```
/// use magma_processor::{ChatMessage, ChatTemplate};
/// let template = ChatTemplate::new(
///     "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] | trim }}\n{% endfor %}",
///     [("bos_token", "<s>")],
/// )?;
/// let text = template.render(&[ChatMessage::user("  hi  ")], false)?;
/// assert_eq!(text, "[user] hi\n");
/// # Ok::<(), magma_processor::ProcessorError>(())
/// ```
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    special_tokens: Vec<(String, String)>,
    path: PathBuf,
}

impl ChatTemplate {
    /// Reads `chat_template` and the special-token strings (`bos_token`, `eos_token`, `pad_token`,
    /// `unk_token`; plain strings or `{"content": ..}` objects) from `tokenizer_config.json`.
    pub fn from_tokenizer_config(path: &Path) -> Result<Self, ProcessorError> {
        let json = read_json(path)?;
        let template = match json.get("chat_template") {
            Some(Value::String(s)) => s.clone(),
            // Newer configs may store named templates: [{"name": "default", "template": ".."}].
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    ProcessorError::config(path, "chat_template", "no template named \"default\"")
                })?,
            Some(other) => {
                return Err(ProcessorError::config(
                    path,
                    "chat_template",
                    format!("expected a string, found {other}"),
                ))
            }
            None => return Err(ProcessorError::config(path, "chat_template", "missing")),
        };
        let special_tokens = ["bos_token", "eos_token", "pad_token", "unk_token"]
            .into_iter()
            .filter_map(|name| {
                let value = json.get(name)?;
                let content = value
                    .as_str()
                    .or_else(|| value.get("content").and_then(Value::as_str))?;
                Some((name.to_string(), content.to_string()))
            })
            .collect();
        Self::build(template, special_tokens, path.to_path_buf())
    }

    /// Compiles a template given as text, with the special-token variables it may use.
    pub fn new<'a>(
        template: &str,
        special_tokens: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ProcessorError> {
        let special_tokens = special_tokens
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::build(
            template.to_string(),
            special_tokens,
            PathBuf::from("<chat template text>"),
        )
    }

    fn build(
        template: String,
        special_tokens: Vec<(String, String)>,
        path: PathBuf,
    ) -> Result<Self, ProcessorError> {
        let template_error = |e: Error| ProcessorError::Template {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut env = Environment::new();
        // transformers compiles chat templates with trim_blocks and lstrip_blocks.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(template_error)?,
        );
        env.add_filter("trim", python_trim);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(TEMPLATE_NAME, template)
            .map_err(template_error)?;
        Ok(Self {
            env,
            special_tokens,
            path,
        })
    }

    /// Renders the messages; with `add_generation_prompt` the template appends the assistant
    /// header so the model answers next.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ProcessorError> {
        let template_error = |e: Error| ProcessorError::Template {
            path: self.path.clone(),
            message: format!("{e:#}"),
        };
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(template_error)?;
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| {
                minijinja::Value::from_pairs([
                    ("role", m.role.as_str()),
                    ("content", m.content.as_str()),
                ])
            })
            .collect();
        let context = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.as_str(), minijinja::Value::from(v.as_str())))
            .chain([
                ("messages", minijinja::Value::from(messages)),
                (
                    "add_generation_prompt",
                    minijinja::Value::from(add_generation_prompt),
                ),
            ]);
        template
            .render(minijinja::Value::from_pairs(context))
            .map_err(template_error)
    }
}

/// Jinja2's `trim`: Python's `str.strip(chars)`. Without `chars` Python strips every character
/// for which `isspace()` holds, which adds U+001C..U+001F to Rust's `char::is_whitespace`
/// (minijinja's built-in `trim` uses the Rust rule).
fn python_trim(value: String, chars: Option<String>) -> String {
    match chars {
        Some(chars) => value.trim_matches(|c| chars.contains(c)).to_string(),
        None => value
            .trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_uses_python_whitespace() {
        assert_eq!(python_trim("\u{1f}\t a b \u{a0}\u{1c}".into(), None), "a b");
        assert_eq!(python_trim("xxaxx".into(), Some("x".into())), "a");
        // Zero-width space is not whitespace for Python either.
        assert_eq!(python_trim("\u{200b}a".into(), None), "\u{200b}a");
    }
}
