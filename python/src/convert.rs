//! Conversions at the Python boundary: images (numpy H×W×3 uint8 or PIL) in and out, JSON values
//! out, and Rust errors into Python exceptions that carry the Rust message.

use std::fmt::Display;

use image::RgbImage;
use numpy::ndarray::Array3;
use numpy::{PyArray3, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;

/// A `ValueError` whose message is `what: problem`.
pub fn value_error(what: &str, problem: impl Display) -> PyErr {
    PyValueError::new_err(format!("{what}: {problem}"))
}

/// Maps an I/O error kind to the matching Python exception (`FileNotFoundError` for a missing file).
pub fn io_error(kind: std::io::ErrorKind, message: String) -> PyErr {
    match kind {
        std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}

/// Reads one image argument: a C-contiguous `numpy.ndarray` of shape (H, W, 3) and dtype uint8,
/// or a `PIL.Image.Image` (converted to RGB as PIL does). `what` names the argument in errors.
pub fn image_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<RgbImage> {
    if let Ok(array) = obj.cast::<PyUntypedArray>() {
        return image_from_array(array, what);
    }
    if is_pil_image(obj)? {
        return image_from_pil(obj, what);
    }
    Err(PyTypeError::new_err(format!(
        "{what}: expected a numpy.ndarray (H, W, 3) of uint8 or a PIL.Image.Image, got {}",
        obj.get_type().name()?
    )))
}

fn is_pil_image(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Ok(module) = obj.py().import("PIL.Image") else {
        return Ok(false);
    };
    obj.is_instance(&module.getattr("Image")?)
}

fn image_from_array(array: &Bound<'_, PyUntypedArray>, what: &str) -> PyResult<RgbImage> {
    let dtype = array.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<u8>(array.py())) {
        return Err(value_error(
            what,
            format!(
                "expected dtype uint8, got {} (convert with .astype(numpy.uint8))",
                dtype.str()?
            ),
        ));
    }
    let shape = array.shape();
    if shape.len() != 3 || shape[2] != 3 {
        return Err(value_error(
            what,
            format!("expected shape (H, W, 3) (RGB), got {shape:?}"),
        ));
    }
    if shape[0] == 0 || shape[1] == 0 {
        return Err(value_error(what, format!("empty image of shape {shape:?}")));
    }
    if !array.is_c_contiguous() {
        return Err(value_error(
            what,
            "the array is not C-contiguous (a slice or transposed view); pass numpy.ascontiguousarray(image)",
        ));
    }
    let (height, width) = (dims(shape[0], what)?, dims(shape[1], what)?);
    let typed = array.cast::<PyArray3<u8>>()?;
    let readonly = typed.try_readonly().map_err(|e| value_error(what, e))?;
    let pixels = readonly.as_slice().map_err(|e| value_error(what, e))?;
    RgbImage::from_raw(width, height, pixels.to_vec())
        .ok_or_else(|| value_error(what, "pixel buffer does not match its shape"))
}

fn dims(n: usize, what: &str) -> PyResult<u32> {
    u32::try_from(n).map_err(|_| value_error(what, format!("side of {n} pixels is too large")))
}

fn image_from_pil(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<RgbImage> {
    let mode: String = obj.getattr("mode")?.extract()?;
    let rgb = if mode == "RGB" {
        obj.clone()
    } else {
        obj.call_method1("convert", ("RGB",))?
    };
    let (width, height): (u32, u32) = rgb.getattr("size")?.extract()?;
    if width == 0 || height == 0 {
        return Err(value_error(
            what,
            format!("empty image of size {width}x{height}"),
        ));
    }
    let bytes: Vec<u8> = rgb.call_method0("tobytes")?.extract()?;
    RgbImage::from_raw(width, height, bytes)
        .ok_or_else(|| value_error(what, "PIL returned a buffer that does not match its size"))
}

/// An image as a new (H, W, 3) uint8 array that owns the pixels (no copy).
pub fn image_to_py<'py>(py: Python<'py>, image: RgbImage) -> PyResult<Bound<'py, PyArray3<u8>>> {
    let (w, h) = image.dimensions();
    let array = Array3::from_shape_vec((h as usize, w as usize, 3), image.into_raw())
        .map_err(|e| value_error("image", e))?;
    Ok(PyArray3::from_owned_array(py, array))
}

/// A JSON value as plain Python objects (dict, list, str, int, float, bool, None).
pub fn json_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// Any serialisable Rust value as plain Python objects.
pub fn to_py<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let json = serde_json::to_value(value).map_err(|e| value_error("serialising", e))?;
    json_to_py(py, &json)
}
