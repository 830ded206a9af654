//! A scripted policy: fixed answers in order, for demos without a model and as the test double of
//! a model in loop tests (it stands for the model's text answers; everything else is real).

use std::collections::VecDeque;
use std::time::Instant;

use magma_client::{ChatAnswer, ChatPolicy, ChatRequest, ClientError};

/// Answers each request with the next scripted line; `STOP` once the script is used up.
#[derive(Debug, Clone, Default)]
pub struct ScriptedPolicy {
    answers: VecDeque<String>,
    /// Every request's text, in order (for tests and reports).
    pub prompts: Vec<String>,
}

impl ScriptedPolicy {
    /// A policy that gives `answers` in order.
    ///
    /// ```
    /// use magma_agents::ScriptedPolicy;
    /// use magma_client::{ChatPolicy, ChatRequest};
    ///
    /// let mut p = ScriptedPolicy::new(["Mark: 0"]);
    /// assert_eq!(p.answer(&ChatRequest::new("hi"))?.text, "Mark: 0");
    /// assert_eq!(p.answer(&ChatRequest::new("hi"))?.text, "STOP");
    /// # Ok::<(), magma_client::ClientError>(())
    /// ```
    pub fn new<I, S>(answers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            answers: answers.into_iter().map(Into::into).collect(),
            prompts: Vec::new(),
        }
    }

    /// One answer per non-empty line of `text` (`#` lines are comments); a line's literal `\n`
    /// becomes a newline.
    pub fn from_lines(text: &str) -> Self {
        Self::new(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| l.replace("\\n", "\n")),
        )
    }
}

impl ChatPolicy for ScriptedPolicy {
    fn answer(&mut self, request: &ChatRequest) -> Result<ChatAnswer, ClientError> {
        let start = Instant::now();
        self.prompts.push(request.text.clone());
        let text = self.answers.pop_front().unwrap_or_else(|| "STOP".into());
        Ok(ChatAnswer {
            text,
            finish_reason: "stop".into(),
            elapsed_ms: start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    fn describe(&self) -> String {
        "scripted".into()
    }
}
