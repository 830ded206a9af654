//! `POST /v1/som`: Set-of-Mark a screenshot.
//!
//! Body: `{"image": base64 or data URL of a PNG/JPEG/GIF, "boxes": [...] (or that JSON as a
//! string), "format": "omniparser" | "pixels" | "ratios" | "yxhw" | "yxhw-ratios",
//! "style": "magma" | "omniparser", "layout": "raqm" | "basic"}` — the options of `magma som`.
//! Answer: `{"image": base64 PNG, "width", "height", "marks": [...], "prompt_list", "warnings"}`.

use crate::chat::{decode_base64, decode_data_url, type_error};
use crate::routes::{blocking, json_body};
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use magma_marks::{mark_screenshot, parse_boxes, BoxFormat, MarkStyle, SomOptions, TextLayout};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) async fn som(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(&state, body)?;
    let max_pixels = state.config.limits.max_image_pixels;
    blocking(move || mark(&body, max_pixels)).await.map(Json)
}

fn mark(body: &Value, max_pixels: u64) -> Result<Value, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| type_error("body", "a JSON object", body))?;
    let image = match obj.get("image") {
        Some(Value::String(s)) if s.starts_with("data:") => decode_data_url(s, "image")?,
        Some(Value::String(s)) => decode_base64(s, "image")?,
        Some(v) => return Err(type_error("image", "a base64 string or data URL", v)),
        None => return Err(ApiError::bad_request("image", "missing required field")),
    };
    let image = magma_processor::decode_rgb_image(&image, max_pixels, "image")
        .map_err(|e| ApiError::bad_request("image", e.to_string()))?;
    let boxes = match obj.get("boxes") {
        Some(Value::String(text)) => text.clone(),
        Some(v @ Value::Array(_)) => v.to_string(),
        Some(v) => {
            return Err(type_error(
                "boxes",
                "an array of boxes (or its JSON text)",
                v,
            ))
        }
        None => return Err(ApiError::bad_request("boxes", "missing required field")),
    };
    let format: BoxFormat = enum_field(obj.get("format"), "format")?;
    let style: MarkStyle = enum_field(obj.get("style"), "style")?;
    let layout: TextLayout = enum_field(obj.get("layout"), "layout")?;
    let (width, height) = image.dimensions();
    let parsed = parse_boxes(&boxes, "boxes", format, width, height)
        .map_err(|e| ApiError::bad_request("boxes", e.to_string()))?;
    let options = SomOptions { style, layout };
    let som = mark_screenshot(&image, &parsed.boxes, &options)
        .map_err(|e| ApiError::bad_request("boxes", e.to_string()))?;
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(som.image.clone())
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| ApiError::Internal(format!("cannot encode the marked PNG: {e}")))?;
    Ok(json!({
        "image": base64::engine::general_purpose::STANDARD.encode(png),
        "width": width,
        "height": height,
        "marks": som.marks,
        "prompt_list": som.prompt_list(),
        "warnings": parsed.warnings,
    }))
}

/// A kebab/lowercase enum field, its default when absent.
fn enum_field<T: DeserializeOwned + Default>(
    value: Option<&Value>,
    field: &str,
) -> Result<T, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v @ Value::String(_)) => serde_json::from_value(v.clone())
            .map_err(|e| ApiError::bad_request(field, e.to_string())),
        Some(v) => Err(type_error(field, "a string", v)),
    }
}
