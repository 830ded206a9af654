//! The server's error type and its OpenAI-style JSON rendering.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error answered to the client as `{"error": {"message", "type", "code"}}`.
///
/// ```
/// use magma_serve::ApiError;
/// let err = ApiError::bad_request("temperature", "expected a number, got a string");
/// assert_eq!(err.status().as_u16(), 400);
/// assert_eq!(err.to_string(), "temperature: expected a number, got a string");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a missing or mistyped field, an unusable value.
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    /// The body is larger than the server accepts.
    #[error("request body is over the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Missing or wrong API key.
    #[error("{0}")]
    Unauthorized(String),
    /// Unknown route.
    #[error("no route for {0}")]
    NotFound(String),
    /// The request is well formed but its result cannot be produced (e.g. too few action tokens).
    #[error("{0}")]
    Unprocessable(String),
    /// The queue is full: retry later.
    #[error(
        "the server is busy: {queued} requests already queued (limit {capacity}), retry later"
    )]
    Busy { queued: usize, capacity: usize },
    /// The request took longer than the per-request timeout.
    #[error("request timed out after {seconds:.1} s")]
    Timeout { seconds: f64 },
    /// The engine is shutting down or gone.
    #[error("the inference engine is not available: {0}")]
    Unavailable(String),
    /// A failure inside the model or server.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 about `field` (a JSON path such as `messages[1].content[0].image_url.url`).
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } | Self::PayloadTooLarge { .. } | Self::Unprocessable(_) => {
                "invalid_request_error"
            }
            Self::Unauthorized(_) => "authentication_error",
            Self::NotFound(_) => "not_found_error",
            Self::Busy { .. } => "rate_limit_error",
            Self::Timeout { .. } => "timeout_error",
            Self::Unavailable(_) | Self::Internal(_) => "server_error",
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "invalid_value",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Unauthorized(_) => "invalid_api_key",
            Self::NotFound(_) => "not_found",
            Self::Unprocessable(_) => "unprocessable",
            Self::Busy { .. } => "queue_full",
            Self::Timeout { .. } => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The JSON body `{"error": {"message", "type", "code", "param"}}`.
    pub fn body(&self) -> serde_json::Value {
        let param = match self {
            Self::BadRequest { field, .. } => json!(field),
            _ => serde_json::Value::Null,
        };
        json!({"error": {
            "message": self.to_string(),
            "type": self.kind(),
            "code": self.code(),
            "param": param,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<magma_processor::ProcessorError> for ApiError {
    fn from(e: magma_processor::ProcessorError) -> Self {
        use magma_processor::ProcessorError as P;
        match e {
            P::ImageDecode { .. }
            | P::EmptyImage { .. }
            | P::ImageTooLarge { .. }
            | P::PlaceholderMismatch { .. }
            | P::NoUserMessage { .. } => Self::bad_request("messages", e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}
