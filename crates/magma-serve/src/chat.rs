//! Parsing and validating OpenAI `chat/completions` requests.
//!
//! Every problem is reported with the JSON path of the offending field
//! (`messages[1].content[0].image_url.url`) and what was expected.

use crate::numpy::kind_of;
use crate::remote::{self, RemoteImageLimits};
use crate::ApiError;
use base64::Engine as _;
use image::RgbImage;
use magma_processor::{decode_rgb_image, ChatMessage};
use serde_json::{Map, Value};

/// Server limits that apply while parsing.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits<'a> {
    /// Most images in one request.
    pub max_images: usize,
    /// Most pixels in one image (checked from the header, before decoding).
    pub max_image_pixels: u64,
    /// Limits of `http(s)://` image URLs; `None` refuses them.
    pub remote_images: Option<&'a RemoteImageLimits>,
}

/// A validated chat request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// Messages with `<image>` placeholders where the image parts were.
    pub messages: Vec<ChatMessage>,
    /// Decoded images, in placeholder order.
    pub images: Vec<RgbImage>,
    /// `max_tokens` / `max_completion_tokens`, if given.
    pub max_tokens: Option<usize>,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
    pub repetition_penalty: f64,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Roles the chat template knows.
const ROLES: [&str; 3] = ["system", "user", "assistant"];
/// OpenAI allows at most four stop sequences.
const MAX_STOP: usize = 4;

impl ChatRequest {
    /// Validates a parsed JSON body and decodes its images.
    ///
    /// ```
    /// use magma_serve::chat::{ChatRequest, ParseLimits};
    /// let body = serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    /// let limits = ParseLimits { max_images: 4, max_image_pixels: 1 << 24, remote_images: None };
    /// let req = ChatRequest::parse(&body, limits)?;
    /// assert_eq!(req.messages[0].content, "hi");
    /// assert_eq!(req.max_tokens, Some(5));
    /// let err = ChatRequest::parse(&serde_json::json!({"messages": [{"role": "robot", "content": "hi"}]}), limits);
    /// assert!(err.unwrap_err().to_string().starts_with("messages[0].role: unknown role `robot`"));
    /// # Ok::<(), magma_serve::ApiError>(())
    /// ```
    pub fn parse(body: &Value, limits: ParseLimits) -> Result<Self, ApiError> {
        let obj = body.as_object().ok_or_else(|| {
            ApiError::bad_request(
                "body",
                format!("expected a JSON object, got {}", kind_of(body)),
            )
        })?;
        if let Some(n) = opt_u64(obj, "n")? {
            if n != 1 {
                return Err(ApiError::bad_request(
                    "n",
                    format!("only n = 1 is supported, got {n}"),
                ));
            }
        }
        if opt_bool(obj, "logprobs")? == Some(true) {
            return Err(ApiError::bad_request(
                "logprobs",
                "log probabilities are not supported",
            ));
        }
        let messages = obj
            .get("messages")
            .ok_or_else(|| ApiError::bad_request("messages", "missing required field"))?
            .as_array()
            .ok_or_else(|| ApiError::bad_request("messages", "expected an array of messages"))?;
        if messages.is_empty() {
            return Err(ApiError::bad_request(
                "messages",
                "must hold at least one message",
            ));
        }
        let mut images = Vec::new();
        let mut parsed = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            parsed.push(parse_message(
                message,
                &format!("messages[{i}]"),
                &mut images,
                limits,
            )?);
        }
        if !parsed.iter().any(|m| m.role == "user") {
            return Err(ApiError::bad_request(
                "messages",
                "needs at least one `user` message",
            ));
        }
        let max_tokens = match opt_u64(obj, "max_completion_tokens")? {
            Some(n) => Some(n),
            None => opt_u64(obj, "max_tokens")?,
        }
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let temperature = opt_f64(obj, "temperature")?.unwrap_or(0.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_request(
                "temperature",
                format!("must be in [0, 2], got {temperature}"),
            ));
        }
        let top_p = opt_f64(obj, "top_p")?;
        if let Some(p) = top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ApiError::bad_request(
                    "top_p",
                    format!("must be in (0, 1], got {p}"),
                ));
            }
        }
        let top_k = match opt_u64(obj, "top_k")? {
            Some(0) => return Err(ApiError::bad_request("top_k", "must be at least 1")),
            k => k.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
        };
        let repetition_penalty = opt_f64(obj, "repetition_penalty")?.unwrap_or(1.0);
        if !(repetition_penalty > 0.0 && repetition_penalty <= 10.0) {
            return Err(ApiError::bad_request(
                "repetition_penalty",
                format!("must be in (0, 10], got {repetition_penalty}"),
            ));
        }
        let seed = match obj.get("seed") {
            None | Some(Value::Null) => 0,
            Some(v) => match (v.as_u64(), v.as_i64()) {
                (Some(s), _) => s,
                // OpenAI seeds are signed 64-bit; keep their bits
                (None, Some(s)) => s as u64,
                _ => return Err(type_error("seed", "an integer", v)),
            },
        };
        let stop = match obj.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| type_error(&format!("stop[{i}]"), "a string", s))
                })
                .collect::<Result<_, _>>()?,
            Some(v) => return Err(type_error("stop", "a string or an array of strings", v)),
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::bad_request(
                "stop",
                format!("at most {MAX_STOP} stop sequences, got {}", stop.len()),
            ));
        }
        let stream = opt_bool(obj, "stream")?.unwrap_or(false);
        let include_usage = match obj.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(o)) => opt_bool(o, "include_usage")
                .map_err(|_| {
                    ApiError::bad_request("stream_options.include_usage", "expected a boolean")
                })?
                .unwrap_or(false),
            Some(v) => return Err(type_error("stream_options", "an object", v)),
        };
        Ok(Self {
            messages: parsed,
            images,
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            repetition_penalty,
            stop,
            stream,
            include_usage,
        })
    }
}

fn parse_message(
    message: &Value,
    path: &str,
    images: &mut Vec<RgbImage>,
    limits: ParseLimits,
) -> Result<ChatMessage, ApiError> {
    let obj = message
        .as_object()
        .ok_or_else(|| type_error(path, "an object with `role` and `content`", message))?;
    let role_path = format!("{path}.role");
    let role = match obj.get("role") {
        Some(Value::String(r)) => r.as_str(),
        Some(v) => return Err(type_error(&role_path, "a string", v)),
        None => return Err(ApiError::bad_request(role_path, "missing required field")),
    };
    if !ROLES.contains(&role) {
        return Err(ApiError::bad_request(
            role_path,
            format!(
                "unknown role `{role}` (expected one of {})",
                ROLES.join(", ")
            ),
        ));
    }
    let content_path = format!("{path}.content");
    let content = match obj.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let mut pieces = Vec::with_capacity(parts.len());
            for (k, part) in parts.iter().enumerate() {
                pieces.push(parse_part(
                    part,
                    &format!("{content_path}[{k}]"),
                    images,
                    limits,
                )?);
            }
            // parts join with newlines: an image first gives "<image>\n" + text
            pieces.join("\n")
        }
        Some(v) => {
            return Err(type_error(
                &content_path,
                "a string or an array of parts",
                v,
            ))
        }
        None => {
            return Err(ApiError::bad_request(
                content_path,
                "missing required field",
            ))
        }
    };
    Ok(ChatMessage::new(role, content))
}

fn parse_part(
    part: &Value,
    path: &str,
    images: &mut Vec<RgbImage>,
    limits: ParseLimits,
) -> Result<String, ApiError> {
    let obj = part
        .as_object()
        .ok_or_else(|| type_error(path, "an object with a `type`", part))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{path}.type"), "missing string field"))?;
    match kind {
        "text" => match obj.get("text") {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(v) => Err(type_error(&format!("{path}.text"), "a string", v)),
            None => Err(ApiError::bad_request(
                format!("{path}.text"),
                "missing required field",
            )),
        },
        "image_url" => {
            let url_path = format!("{path}.image_url.url");
            let url = match obj.get("image_url") {
                Some(Value::Object(o)) => match o.get("url") {
                    Some(Value::String(url)) => url.as_str(),
                    Some(v) => return Err(type_error(&url_path, "a string", v)),
                    None => return Err(ApiError::bad_request(url_path, "missing required field")),
                },
                Some(Value::String(url)) => url.as_str(),
                Some(v) => {
                    return Err(type_error(
                        &format!("{path}.image_url"),
                        "an object with `url`",
                        v,
                    ))
                }
                None => {
                    return Err(ApiError::bad_request(
                        format!("{path}.image_url"),
                        "missing required field",
                    ))
                }
            };
            if images.len() >= limits.max_images {
                return Err(ApiError::bad_request(
                    path,
                    format!("too many images: at most {} per request", limits.max_images),
                ));
            }
            let image = match limits.remote_images {
                Some(remote_limits) if remote::is_remote(url) => {
                    let bytes = remote::fetch(url, &url_path, remote_limits)?;
                    // the error names the URL: "cannot decode image http://…: …"
                    decode_rgb_image(&bytes, limits.max_image_pixels, url)
                        .map_err(|e| ApiError::bad_request(url_path.clone(), e.to_string()))?
                }
                _ => {
                    let bytes = decode_data_url(url, &url_path)?;
                    decode_rgb_image(&bytes, limits.max_image_pixels, &url_path)
                        .map_err(|e| ApiError::bad_request(url_path.clone(), e.to_string()))?
                }
            };
            images.push(image);
            Ok(magma_processor::IMAGE_TOKEN.to_string())
        }
        other => Err(ApiError::bad_request(
            format!("{path}.type"),
            format!("unsupported part type `{other}` (expected `text` or `image_url`)"),
        )),
    }
}

/// The bytes of a `data:<mime>;base64,<payload>` URL. Remote URLs are refused with an error
/// naming the flag that allows them ([`remote::ALLOW_FLAG`]).
///
/// ```
/// let bytes = magma_serve::chat::decode_data_url("data:image/png;base64,iVBORw==", "url")?;
/// assert_eq!(bytes, [0x89, b'P', b'N', b'G']);
/// let err = magma_serve::chat::decode_data_url("https://x/y.png", "url").unwrap_err();
/// assert!(err.to_string().contains("--allow-remote-images"), "{err}");
/// # Ok::<(), magma_serve::ApiError>(())
/// ```
pub fn decode_data_url(url: &str, path: &str) -> Result<Vec<u8>, ApiError> {
    if remote::is_remote(url) {
        return Err(ApiError::bad_request(
            path,
            format!(
                "remote image URLs are disabled on this server (its operator can allow them with \
                 `magma serve {}`); send the image inline as a data:image/...;base64, URL",
                remote::ALLOW_FLAG
            ),
        ));
    }
    let rest = url.strip_prefix("data:").ok_or_else(|| {
        ApiError::bad_request(path, "expected a data:image/<format>;base64,<payload> URL")
    })?;
    let (header, payload) = rest
        .split_once(',')
        .ok_or_else(|| ApiError::bad_request(path, "data URL has no `,` before its payload"))?;
    if !header.ends_with(";base64") {
        return Err(ApiError::bad_request(
            path,
            "data URL must be base64-encoded (`;base64,`)",
        ));
    }
    decode_base64(payload, path)
}

/// Standard base64, padding optional, surrounding whitespace ignored.
pub(crate) fn decode_base64(payload: &str, path: &str) -> Result<Vec<u8>, ApiError> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(payload.trim())
        .map_err(|e| ApiError::bad_request(path, format!("invalid base64: {e}")))
}

pub(crate) fn type_error(path: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::bad_request(path, format!("expected {expected}, got {}", kind_of(got)))
}

fn opt_u64(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| type_error(key, "a non-negative integer", v)),
    }
}

pub(crate) fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| type_error(key, "a number", v)),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| type_error(key, "a boolean", v)),
    }
}
