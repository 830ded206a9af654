//! The `json-numpy` wire format of OpenVLA's deploy server: an array travels as
//! `{"__numpy__": base64 of the raw C-order bytes, "dtype": numpy descr, "shape": [..]}`.

use crate::ApiError;
use base64::Engine as _;
use image::RgbImage;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// dtype strings numpy and json-numpy write for unsigned bytes.
const UINT8_DTYPES: [&str; 4] = ["|u1", "<u1", "uint8", "u1"];

/// Decodes a json-numpy `uint8` array of shape `[H, W, 3]` into an RGB image. `field` names the
/// value in errors.
///
/// ```
/// use magma_serve::numpy::decode_rgb_array;
/// let value = serde_json::json!({"__numpy__": "AAECAwQFBgcICQoL", "dtype": "|u1", "shape": [2, 2, 3]});
/// let image = decode_rgb_array(&value, "image")?;
/// assert_eq!(image.get_pixel(1, 1).0, [9, 10, 11]);
/// # Ok::<(), magma_serve::ApiError>(())
/// ```
pub fn decode_rgb_array(value: &Value, field: &str) -> Result<RgbImage, ApiError> {
    let bad = |message: String| ApiError::bad_request(field, message);
    let obj = value.as_object().ok_or_else(|| {
        bad(format!(
            "expected a json-numpy object {{\"__numpy__\", \"dtype\", \"shape\"}}, got {}",
            kind_of(value)
        ))
    })?;
    let data = obj
        .get("__numpy__")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad("missing string field `__numpy__` (base64 of the array bytes)".into())
        })?;
    let dtype = obj
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing string field `dtype`".into()))?;
    if !UINT8_DTYPES.contains(&dtype) {
        return Err(bad(format!(
            "dtype `{dtype}` is not supported: the image must be uint8 (`|u1`, `<u1` or `uint8`)"
        )));
    }
    let shape: Vec<u64> = obj
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| dims.iter().map(Value::as_u64).collect())
        .ok_or_else(|| bad("field `shape` must be a list of non-negative integers".into()))?;
    let (height, width) = match shape.as_slice() {
        [h, w, 3] if *h > 0 && *w > 0 => (*h, *w),
        _ => {
            return Err(bad(format!(
                "shape {shape:?} is not an RGB image: expected [height, width, 3] with height, width > 0"
            )))
        }
    };
    let (height, width) = match (u32::try_from(height), u32::try_from(width)) {
        (Ok(h), Ok(w)) => (h, w),
        _ => return Err(bad(format!("shape {shape:?} is too large"))),
    };
    let bytes = B64
        .decode(data)
        .map_err(|e| bad(format!("`__numpy__` is not valid base64: {e}")))?;
    let expected = u64::from(height) * u64::from(width) * 3;
    if bytes.len() as u64 != expected {
        return Err(bad(format!(
            "`__numpy__` holds {} bytes but shape {shape:?} of uint8 needs {expected}",
            bytes.len()
        )));
    }
    RgbImage::from_raw(width, height, bytes)
        .ok_or_else(|| bad(format!("shape {shape:?} does not match the data")))
}

/// Encodes a float64 vector as a json-numpy array (`dtype "<f8"`, shape `[len]`).
///
/// ```
/// let v = magma_serve::numpy::encode_f64_array(&[1.0]);
/// assert_eq!(v, serde_json::json!({"__numpy__": "AAAAAAAA8D8=", "dtype": "<f8", "shape": [1]}));
/// ```
pub fn encode_f64_array(values: &[f64]) -> Value {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    json!({"__numpy__": B64.encode(bytes), "dtype": "<f8", "shape": [values.len()]})
}

/// Decodes a json-numpy float64 vector (the inverse of [`encode_f64_array`]).
pub fn decode_f64_array(value: &Value) -> Option<Vec<f64>> {
    if value.get("dtype")?.as_str()? != "<f8" {
        return None;
    }
    let bytes = B64.decode(value.get("__numpy__")?.as_str()?).ok()?;
    let values: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let shape = value.get("shape")?.as_array()?;
    (bytes.len() % 8 == 0 && shape.len() == 1 && shape[0].as_u64()? as usize == values.len())
        .then_some(values)
}

/// A short name of a JSON value's type, for error messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_arrays_round_trip() {
        let values = [0.5, -1.25, 3.0e-3, 0.0, 1e300, -0.0, 7.0];
        assert_eq!(
            decode_f64_array(&encode_f64_array(&values)).unwrap(),
            values
        );
    }

    #[test]
    fn wrong_dtype_and_shape_are_named() {
        let v = json!({"__numpy__": "AAAA", "dtype": "<f4", "shape": [1, 1, 3]});
        assert!(decode_rgb_array(&v, "image")
            .unwrap_err()
            .to_string()
            .contains("dtype `<f4`"));
        let v = json!({"__numpy__": "AAAA", "dtype": "|u1", "shape": [1, 3]});
        assert!(decode_rgb_array(&v, "image")
            .unwrap_err()
            .to_string()
            .contains("[1, 3]"));
        let v = json!({"__numpy__": "AAAA", "dtype": "|u1", "shape": [2, 1, 3]});
        assert!(decode_rgb_array(&v, "image")
            .unwrap_err()
            .to_string()
            .contains("holds 3 bytes"));
    }
}
