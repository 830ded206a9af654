//! The router, its middleware (request ids, logs, metrics, auth, panics) and the chat handlers.

use crate::chat::{ChatRequest, ParseLimits};
use crate::engine::{Completion, Event, Job};
use crate::{act, som, unix_time, ApiError, AppState};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use magma_model::{FinishReason, GenerationParams};
use magma_processor::ProcessedInputs;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

/// Routes with a metrics label of their own; everything else is counted as `other`.
const ROUTES: [&str; 6] = [
    "/health",
    "/metrics",
    "/v1/models",
    "/v1/chat/completions",
    "/act",
    "/v1/som",
];

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let max_body = state.config.limits.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/act", post(act::act))
        .route("/v1/som", post(som::som))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send + 'static>| {
                ApiError::Internal("the handler panicked".into()).into_response()
            },
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Gives every request an id (`x-request-id`), logs it with its timing and counts it.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = format!(
        "req-{:x}-{}",
        state.started,
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other");
    let start = Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    let elapsed = start.elapsed();
    let status = response.status();
    state
        .metrics
        .record_request(route, status.as_u16(), elapsed);
    tracing::info!(request_id = %id, %method, %path, status = status.as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1e3, "request");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Bearer-token check on every route but `/health`.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = state.config.api_key.as_deref() else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if constant_time_eq(token.as_bytes(), key.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::Unauthorized("invalid API key".into()).into_response(),
        None => {
            ApiError::Unauthorized("missing API key: send `Authorization: Bearer <key>`".into())
                .into_response()
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("{} {}", request.method(), request.uri().path()))
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"status": "ok", "model_loaded": true, "model": state.config.model_name}))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": state.config.model_name,
        "object": "model",
        "created": state.started,
        "owned_by": "magma-rs",
        "max_model_len": state.info.max_positions,
    }]}))
}

/// The body as JSON, with 413 for oversized bodies and 400 naming the JSON syntax error.
pub(crate) fn json_body(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.config.limits.max_body_bytes,
            }
        } else {
            ApiError::bad_request("body", e.body_text())
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("body", format!("invalid JSON: {e}")))
}

/// Runs blocking work (image decoding, tokenization) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("worker thread failed: {e}")))?
}

/// `max_tokens` checked against the context left after the prompt (`None`: the default, capped).
pub(crate) fn token_budget(
    state: &AppState,
    inputs: &ProcessedInputs,
    requested: Option<usize>,
    default: usize,
) -> Result<usize, ApiError> {
    let max = state.info.max_positions;
    let left = max.saturating_sub(inputs.merged_len);
    match requested {
        Some(n) if n > left => Err(ApiError::bad_request(
            "max_tokens",
            format!(
                "too many tokens: the prompt takes {} positions (text + image features) and max_tokens is {n}, \
                 together over the context of {max}",
                inputs.merged_len
            ),
        )),
        Some(n) => Ok(n),
        None if left == 0 => Err(ApiError::bad_request(
            "messages",
            format!("too many tokens: the prompt takes {} positions, the whole context of {max}", inputs.merged_len),
        )),
        None => Ok(default.min(left)),
    }
}

/// Queues a job and returns the receiver of its events.
pub(crate) fn submit(
    state: &AppState,
    inputs: ProcessedInputs,
    params: GenerationParams,
) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
    let (events, receiver) = mpsc::unbounded_channel();
    let timeout = state.config.limits.request_timeout;
    state.engine.submit(Job {
        inputs,
        params,
        events,
        deadline: Instant::now() + timeout,
        timeout,
    })?;
    Ok(receiver)
}

/// Waits for the end of a job, ignoring its token events.
pub(crate) async fn completion(
    mut receiver: mpsc::UnboundedReceiver<Event>,
) -> Result<Completion, ApiError> {
    while let Some(event) = receiver.recv().await {
        match event {
            Event::Token { .. } => {}
            Event::Done(done) => return Ok(done),
            Event::Failed(e) => return Err(e),
        }
    }
    Err(ApiError::Internal("the engine dropped the request".into()))
}

struct Prepared {
    request: ChatRequest,
    inputs: ProcessedInputs,
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(&state, body)?;
    let worker_state = state.clone();
    let Prepared { request, inputs } = blocking(move || {
        let server_limits = &worker_state.config.limits;
        let limits = ParseLimits {
            max_images: server_limits.max_images,
            max_image_pixels: server_limits.max_image_pixels,
            remote_images: server_limits.remote_images.as_ref(),
        };
        let mut request = ChatRequest::parse(&body, limits)?;
        let images = std::mem::take(&mut request.images);
        let inputs = worker_state
            .processor
            .process_messages(&request.messages, &images)?;
        Ok(Prepared { request, inputs })
    })
    .await?;
    let max_new_tokens = token_budget(
        &state,
        &inputs,
        request.max_tokens,
        state.config.limits.default_max_tokens,
    )?;
    let params = GenerationParams {
        max_new_tokens,
        temperature: request.temperature,
        top_k: request.top_k,
        top_p: request.top_p,
        seed: request.seed,
        repetition_penalty: request.repetition_penalty,
        stop_token_ids: Vec::new(),
        stop_strings: request.stop.clone(),
    };
    let receiver = submit(&state, inputs, params)?;
    let meta = ResponseMeta {
        id: format!("chatcmpl-{}", random_hex()),
        created: unix_time(),
        model: state.config.model_name.clone(),
    };
    if request.stream {
        return Ok(Sse::new(chunk_stream(receiver, meta, request.include_usage)).into_response());
    }
    let done = completion(receiver).await?;
    Ok(Json(json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": done.text},
            "logprobs": null,
            "finish_reason": finish_reason(done.finish_reason),
        }],
        "usage": usage(&done),
    }))
    .into_response())
}

#[derive(Debug, Clone)]
struct ResponseMeta {
    id: String,
    created: u64,
    model: String,
}

impl ResponseMeta {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }
}

fn usage(done: &Completion) -> Value {
    json!({
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.generated_ids.len(),
        "total_tokens": done.prompt_tokens + done.generated_ids.len(),
    })
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// Server-sent events: a role chunk, one chunk per text delta, a finish chunk, an optional usage
/// chunk, then `[DONE]`. Dropping the stream (client gone) drops the receiver, which cancels the job.
fn chunk_stream(
    receiver: mpsc::UnboundedReceiver<Event>,
    meta: ResponseMeta,
    include_usage: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let first = data(meta.chunk(json!({"role": "assistant", "content": ""}), None));
    let rest = stream::unfold(
        Some((receiver, meta, String::new())),
        move |open| async move {
            let (mut receiver, meta, mut streamed) = open?;
            let events = match receiver.recv().await {
                Some(Event::Token { delta, .. }) if delta.is_empty() => Vec::new(),
                Some(Event::Token { delta, .. }) => {
                    streamed.push_str(&delta);
                    vec![data(meta.chunk(json!({"content": delta}), None))]
                }
                Some(Event::Done(done)) => {
                    let mut events = Vec::new();
                    // text held back while a character was incomplete (a trailing U+FFFD) comes last
                    if let Some(rest) = done
                        .text
                        .strip_prefix(streamed.as_str())
                        .filter(|r| !r.is_empty())
                    {
                        events.push(data(meta.chunk(json!({"content": rest}), None)));
                    }
                    events.push(data(
                        meta.chunk(json!({}), Some(finish_reason(done.finish_reason))),
                    ));
                    if include_usage {
                        let mut chunk = meta.chunk(json!({}), None);
                        chunk["choices"] = json!([]);
                        chunk["usage"] = usage(&done);
                        events.push(data(chunk));
                    }
                    events.push(SseEvent::default().data("[DONE]"));
                    return Some((events, None));
                }
                Some(Event::Failed(e)) => {
                    return Some((
                        vec![data(e.body()), SseEvent::default().data("[DONE]")],
                        None,
                    ));
                }
                None => {
                    let e = ApiError::Internal("the engine dropped the request".into());
                    return Some((
                        vec![data(e.body()), SseEvent::default().data("[DONE]")],
                        None,
                    ));
                }
            };
            Some((events, Some((receiver, meta, streamed))))
        },
    );
    stream::once(async move { first })
        .chain(rest.flat_map(stream::iter))
        .map(Ok)
}

/// 64 random bits as hex (std's per-process random hasher keys, mixed with a counter).
pub(crate) fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

/// A JSON response with extra headers.
pub(crate) fn json_response(
    status: StatusCode,
    body: &Value,
    headers: &[(&'static str, String)],
) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    response
}
