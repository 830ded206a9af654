//! Any OpenAI-compatible chat-completions server as a [`ChatPolicy`].

use std::io::{Cursor, Read};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{ChatAnswer, ChatPolicy, ChatRequest, ClientError, IMAGE_PLACEHOLDER};

/// An OpenAI-compatible `/v1/chat/completions` endpoint (`magma serve`, vLLM, a hosted model).
///
/// `base_url` is the server's root (`http://127.0.0.1:8000`) or its `/v1` prefix; both work.
#[derive(Clone, Debug)]
pub struct Endpoint {
    base_url: String,
    api_key: Option<String>,
    model_name: String,
    timeout: Duration,
}

impl Endpoint {
    /// An endpoint with no API key, model name `magma` and a 120 s time limit per request.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key: None,
            model_name: "magma".to_string(),
            timeout: Duration::from_secs(120),
        }
    }

    /// Sent as `Authorization: Bearer KEY`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The request's `model` field (servers hosting several models pick by it).
    pub fn model_name(mut self, name: impl Into<String>) -> Self {
        self.model_name = name.into();
        self
    }

    /// Time limit of one whole request (connect, generation, reading the answer).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL requests are posted to.
    pub fn chat_url(&self) -> String {
        if self.base_url.ends_with("/v1") {
            format!("{}/chat/completions", self.base_url)
        } else {
            format!("{}/v1/chat/completions", self.base_url)
        }
    }

    /// The JSON body for `request`. The text is split at each `<image>` into OpenAI content
    /// parts with the image as a PNG data URL in between; servers join parts with a newline
    /// (`magma serve` does), so a newline that touches a placeholder is left to that join and
    /// `"<image>\nWhat is here?"` arrives exactly as written.
    pub fn request_body(&self, request: &ChatRequest) -> Result<Value, ClientError> {
        request.check_placeholders()?;
        let mut parts = Vec::new();
        let mut images = request.images.iter();
        let last = request.images.len();
        for (k, piece) in request.text.split(IMAGE_PLACEHOLDER).enumerate() {
            let mut piece = piece;
            if k > 0 {
                let image = images.next().expect("placeholders were counted");
                parts
                    .push(json!({"type": "image_url", "image_url": {"url": png_data_url(image)?}}));
                piece = piece.strip_prefix('\n').unwrap_or(piece);
            }
            if k < last {
                piece = piece.strip_suffix('\n').unwrap_or(piece);
            }
            if !piece.is_empty() {
                parts.push(json!({"type": "text", "text": piece}));
            }
        }
        let mut messages = Vec::new();
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": parts}));
        Ok(json!({
            "model": self.model_name,
            "messages": messages,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
        }))
    }

    fn error(&self, message: impl Into<String>) -> ClientError {
        ClientError::Endpoint {
            url: self.chat_url(),
            message: message.into(),
        }
    }
}

fn png_data_url(image: &image::RgbImage) -> Result<String, ClientError> {
    let mut png = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| ClientError::Request(format!("cannot encode an image as PNG: {e}")))?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

impl ChatPolicy for Endpoint {
    fn answer(&mut self, request: &ChatRequest) -> Result<ChatAnswer, ClientError> {
        let body = self.request_body(request)?;
        let url = self.chat_url();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("magma-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let start = Instant::now();
        let mut call = agent.post(&url).content_type("application/json");
        if let Some(key) = &self.api_key {
            call = call.header("Authorization", format!("Bearer {key}"));
        }
        let response = call.send(body.to_string()).map_err(|e| match e {
            ureq::Error::Timeout(_) => {
                self.error(format!("no answer within {} s", self.timeout.as_secs_f64()))
            }
            other => self.error(other.to_string()),
        })?;
        let status = response.status().as_u16();
        let mut text = String::new();
        response
            .into_body()
            .into_reader()
            .take(64 << 20)
            .read_to_string(&mut text)
            .map_err(|e| self.error(format!("cannot read the answer: {e}")))?;
        if status != 200 {
            return Err(ClientError::Status {
                url,
                status,
                body: text.chars().take(500).collect(),
            });
        }
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| self.error(format!("the answer is not JSON ({e}): {}", snippet(&text))))?;
        let choice = &value["choices"][0];
        let content = choice["message"]["content"].as_str().ok_or_else(|| {
            self.error(format!(
                "the answer has no choices[0].message.content string: {}",
                snippet(&text)
            ))
        })?;
        Ok(ChatAnswer {
            text: content.to_string(),
            finish_reason: choice["finish_reason"].as_str().unwrap_or("").to_string(),
            elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn describe(&self) -> String {
        format!("endpoint:{}", self.base_url)
    }
}

fn snippet(text: &str) -> String {
    text.chars().take(200).collect()
}
