//! `POST /act`: OpenVLA's deploy-server endpoint on Magma.
//!
//! Body: `{"image": json-numpy uint8 [H, W, 3], "instruction": str, "unnorm_key": str?}`, or the
//! same payload double-encoded (the body is a JSON string holding it, or `{"encoded": "<json>"}`);
//! extensions `max_tokens`, `temperature`, `seed`. Answer: the un-normalised action as a json-numpy
//! float64 array of shape `[7]` (double-encoded when the request was), with the 7 action ids in the
//! `x-magma-action-ids` header.
//!
//! Sessions (extension): a request with `session_id` belongs to an episode whose state the server
//! keeps: the post-processing of `policy_setup` (`google_robot`: the sticky gripper;
//! `widowx_bridge`; `libero`), the action history and a seeded sampler (step `k` samples with
//! `splitmix64(seed + k)`, `seed` taken from the episode's first request, so an episode replays
//! exactly). `"reset": true` ends the episode first (alone, it answers `{"session_id", "reset", "actions"}`
//! with the ended episode's un-normalised actions).
//! A session answer is a JSON object: `session_id`, `step`, `action` (un-normalised 7-vector),
//! `env_action` (the environment command after post-processing), `action_ids`, `seed`. Requests of
//! one session are meant to be sequential (the sticky gripper depends on their order).

use crate::chat::{opt_f64, type_error};
use crate::numpy::{decode_rgb_array, encode_f64_array, kind_of};
use crate::routes::{blocking, completion, json_body, json_response, submit, token_budget};
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use magma_actions::robot::{
    extract_action_ids, ActionTokenizer, Embodiment, RobotActionDecoder, ACTION_DIM,
};
use magma_actions::{prompts, ActionError};
use magma_model::{FinishReason, GenerationParams};
use magma_processor::ChatMessage;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

/// Most sessions kept (the least recently used is dropped beyond it).
const MAX_SESSIONS: usize = 1024;

/// One robot episode.
struct Session {
    decoder: RobotActionDecoder,
    policy_setup: Option<Embodiment>,
    unnorm_key: Option<String>,
    seed: u64,
    step: u64,
    history: Vec<Vec<f64>>,
    last_used: Instant,
}

/// Sessions of every server in this process, keyed by the server's state address and the id
/// (kept here rather than in `AppState` so that `/act` stays self-contained).
static SESSIONS: LazyLock<Mutex<HashMap<(usize, String), Session>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn session_key(state: &Arc<AppState>, id: &str) -> (usize, String) {
    (Arc::as_ptr(state) as usize, id.to_string())
}

/// SplitMix64: decorrelates the per-step seeds of one episode.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn parse_policy_setup(payload: &Map<String, Value>) -> Result<Option<Embodiment>, ApiError> {
    match payload.get("policy_setup") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "google_robot" => Ok(Some(Embodiment::Google)),
            "widowx_bridge" => Ok(Some(Embodiment::Widowx)),
            "libero" => Ok(Some(Embodiment::Libero)),
            other => Err(ApiError::bad_request(
                "policy_setup",
                format!("unknown {other:?}; expected google_robot, widowx_bridge or libero"),
            )),
        },
        Some(v) => Err(type_error("policy_setup", "a string", v)),
    }
}

pub(crate) async fn act(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match predict(&state, body).await {
        Ok(response) => response,
        // OpenVLA's server logs the exception and answers the JSON string "error" with HTTP 200
        Err(e) if state.config.openvla_compat_errors => {
            tracing::warn!(error = %e, "/act failed (answered \"error\", OpenVLA compatibility)");
            json_response(StatusCode::OK, &Value::String("error".into()), &[])
        }
        Err(e) => e.into_response(),
    }
}

struct ActRequest {
    payload: Map<String, Value>,
    double_encoded: bool,
}

/// Unwraps the double-encoded forms (a JSON string body, or `{"encoded": "<json>"}`).
fn unwrap_payload(body: Value) -> Result<ActRequest, ApiError> {
    let inner = |text: &str, field: &str| -> Result<Map<String, Value>, ApiError> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(ApiError::bad_request(
                field,
                format!(
                    "the encoded payload is {}, expected an object",
                    kind_of(&other)
                ),
            )),
            Err(e) => Err(ApiError::bad_request(
                field,
                format!("the encoded payload is not valid JSON: {e}"),
            )),
        }
    };
    match body {
        Value::String(text) => Ok(ActRequest {
            payload: inner(&text, "body")?,
            double_encoded: true,
        }),
        Value::Object(map) if map.contains_key("encoded") => {
            if map.len() != 1 {
                return Err(ApiError::bad_request(
                    "encoded",
                    "an encoded payload must be the only key of the body",
                ));
            }
            match map.get("encoded") {
                Some(Value::String(text)) => Ok(ActRequest {
                    payload: inner(text, "encoded")?,
                    double_encoded: true,
                }),
                Some(v) => Err(type_error("encoded", "a string", v)),
                None => Err(ApiError::bad_request("encoded", "missing")),
            }
        }
        Value::Object(payload) => Ok(ActRequest {
            payload,
            double_encoded: false,
        }),
        other => Err(ApiError::bad_request(
            "body",
            format!("expected a JSON object, got {}", kind_of(&other)),
        )),
    }
}

async fn predict(
    state: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ActRequest {
        payload,
        double_encoded,
    } = unwrap_payload(json_body(state, body)?)?;
    let session_id = match payload.get("session_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Some(s.clone()),
        Some(v) => return Err(type_error("session_id", "a string of 1 to 256 bytes", v)),
    };
    let reset = match payload.get("reset") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(type_error("reset", "a boolean", v)),
    };
    let policy_setup = parse_policy_setup(&payload)?;
    if session_id.is_none() && (reset || policy_setup.is_some()) {
        return Err(ApiError::bad_request(
            "session_id",
            "`reset` and `policy_setup` need a `session_id`",
        ));
    }
    if let (Some(id), true) = (&session_id, reset) {
        let ended = SESSIONS
            .lock()
            .expect("session lock")
            .remove(&session_key(state, id));
        if !payload.contains_key("image") {
            // the ended episode's actions, so a client can log them
            let actions = ended.map(|s| s.history).unwrap_or_default();
            return Ok(json_response(
                StatusCode::OK,
                &json!({"session_id": id, "reset": true, "actions": actions}),
                &[],
            ));
        }
    }
    let instruction = match payload.get("instruction") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => return Err(type_error("instruction", "a string", v)),
        None => {
            return Err(ApiError::bad_request(
                "instruction",
                "missing required field",
            ))
        }
    };
    let mut unnorm_key = match payload.get("unnorm_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(type_error("unnorm_key", "a string", v)),
    };
    if unnorm_key.is_none() {
        unnorm_key = policy_setup
            .and_then(Embodiment::default_unnorm_key)
            .map(str::to_string);
    }
    let stats = state
        .stats
        .get(unnorm_key.as_deref())
        .map_err(|e| ApiError::bad_request("unnorm_key", e.to_string()))?
        .action
        .clone();
    let vocab = state.info.action_vocab_size.ok_or_else(|| {
        ApiError::Internal(
            "the model's config.json has no `tokenizer_vocab_size`, needed to decode actions"
                .into(),
        )
    })?;
    let tokenizer = ActionTokenizer::new(vocab).map_err(|e| ApiError::Internal(e.to_string()))?;
    let temperature = opt_f64(&payload, "temperature")?.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_request(
            "temperature",
            format!("must be in [0, 2], got {temperature}"),
        ));
    }
    let mut seed = match payload.get("seed") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| type_error("seed", "a non-negative integer", v))?,
    };
    let session_step = match &session_id {
        None => None,
        Some(id) => {
            let mut sessions = SESSIONS.lock().expect("session lock");
            let key = session_key(state, id);
            if !sessions.contains_key(&key) && sessions.len() >= MAX_SESSIONS {
                if let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone())
                {
                    sessions.remove(&oldest);
                }
            }
            let session = sessions.entry(key).or_insert_with(|| Session {
                decoder: RobotActionDecoder::new(tokenizer.clone(), stats.clone(), policy_setup),
                policy_setup,
                unnorm_key: unnorm_key.clone(),
                seed,
                step: 0,
                history: Vec::new(),
                last_used: Instant::now(),
            });
            if session.policy_setup != policy_setup || session.unnorm_key != unnorm_key {
                return Err(ApiError::bad_request(
                    "session_id",
                    format!(
                        "session {id:?} was started with policy_setup {:?} and unnorm_key {:?}; \
                         send `reset: true` to start a new episode with other settings",
                        session.policy_setup, session.unnorm_key
                    ),
                ));
            }
            let step = session.step;
            session.step += 1;
            session.last_used = Instant::now();
            seed = splitmix64(session.seed.wrapping_add(step));
            Some(step)
        }
    };
    let max_tokens = match payload.get("max_tokens") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| type_error("max_tokens", "a non-negative integer", v))?
                as usize,
        ),
    };
    let image = payload
        .get("image")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("image", "missing required field"))?;
    let worker = state.clone();
    let inputs = blocking(move || {
        let image = decode_rgb_array(&image, "image")?;
        let pixels = u64::from(image.width()) * u64::from(image.height());
        if pixels > worker.config.limits.max_image_pixels {
            return Err(ApiError::bad_request(
                "image",
                format!(
                    "{pixels} pixels, over the limit of {}",
                    worker.config.limits.max_image_pixels
                ),
            ));
        }
        // OpenVLA's server and Magma's robot training data lower-case the instruction
        let prompt = prompts::robot_action(&instruction.to_lowercase());
        Ok(worker
            .processor
            .process_messages(&[ChatMessage::user(prompt)], &[image])?)
    })
    .await?;
    let max_new_tokens = token_budget(
        state,
        &inputs,
        max_tokens,
        state.config.limits.act_max_tokens,
    )?;
    let params = GenerationParams {
        max_new_tokens,
        temperature,
        seed,
        ..Default::default()
    };
    let done = completion(submit(state, inputs, params)?).await?;
    // the reference decodes output ids [-8:-1] of a sequence that ends with the stop token
    let mut output = done.generated_ids.clone();
    if done.finish_reason == FinishReason::Stop {
        output.push(state.info.eos_id);
    }
    let ids = extract_action_ids(&output, ACTION_DIM).map_err(|e| match e {
        ActionError::TooFewActionTokens { .. } => ApiError::Unprocessable(format!(
            "the model generated {} token(s) ({}), fewer than the {ACTION_DIM} action tokens needed: {e}",
            done.generated_ids.len(),
            done.finish_reason.as_str()
        )),
        other => ApiError::Internal(other.to_string()),
    })?;
    let ids_header = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    if let (Some(id), Some(step)) = (&session_id, session_step) {
        let mut sessions = SESSIONS.lock().expect("session lock");
        let session = sessions.get_mut(&session_key(state, id)).ok_or_else(|| {
            ApiError::bad_request("session_id", "the session was reset meanwhile")
        })?;
        let decoded = session
            .decoder
            .decode_ids(ids)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        session.history.push(decoded.unnormalized.clone());
        let body = json!({
            "session_id": id,
            "step": step,
            "seed": seed,
            "action": decoded.unnormalized,
            "env_action": decoded.command,
            "action_ids": decoded.ids,
        });
        return Ok(json_response(
            StatusCode::OK,
            &body,
            &[("x-magma-action-ids", ids_header)],
        ));
    }
    let action = stats
        .unnormalize(&tokenizer.decode(ids))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let array = encode_f64_array(&action);
    let body = if double_encoded {
        Value::String(array.to_string())
    } else {
        array
    };
    Ok(json_response(
        StatusCode::OK,
        &body,
        &[("x-magma-action-ids", ids_header)],
    ))
}
