//! `POST /act`: OpenVLA's deploy-server endpoint on Magma.
//!
//! Body: `{"image": json-numpy uint8 [H, W, 3], "instruction": str, "unnorm_key": str?}`, or the
//! same payload double-encoded (the body is a JSON string holding it, or `{"encoded": "<json>"}`);
//! extensions `max_tokens`, `temperature`, `seed`. Answer: the un-normalised action as a json-numpy
//! float64 array of shape `[7]` (double-encoded when the request was), with the 7 action ids in the
//! `x-magma-action-ids` header.

use crate::chat::{opt_f64, type_error};
use crate::numpy::{decode_rgb_array, encode_f64_array, kind_of};
use crate::routes::{blocking, completion, json_body, json_response, submit, token_budget};
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use magma_actions::robot::{extract_action_ids, ActionTokenizer, ACTION_DIM};
use magma_actions::{prompts, ActionError};
use magma_model::{FinishReason, GenerationParams};
use magma_processor::ChatMessage;
use serde_json::{Map, Value};
use std::sync::Arc;

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
    let unnorm_key = match payload.get("unnorm_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(type_error("unnorm_key", "a string", v)),
    };
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
    let seed = match payload.get("seed") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| type_error("seed", "a non-negative integer", v))?,
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
    let action = stats
        .unnormalize(&tokenizer.decode(ids))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let array = encode_f64_array(&action);
    let body = if double_encoded {
        Value::String(array.to_string())
    } else {
        array
    };
    let ids_header = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    Ok(json_response(
        StatusCode::OK,
        &body,
        &[("x-magma-action-ids", ids_header)],
    ))
}
