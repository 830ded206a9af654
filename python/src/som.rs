//! Set-of-Mark: numbered marks on a screenshot (`magma som`).

use magma_marks::{
    mark_screenshot, mark_screenshot_owned, parse_boxes, BoxFormat, Mark, MarkStyle, SomOptions,
    TextLayout,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::convert::{image_from_py, image_to_py, to_py, value_error};
use crate::error::OrPyErr;

fn box_format(name: &str) -> PyResult<BoxFormat> {
    Ok(match name {
        "omniparser" => BoxFormat::OmniParser,
        "pixels" => BoxFormat::Pixels,
        "ratios" => BoxFormat::Ratios,
        "yxhw" => BoxFormat::Yxhw,
        "yxhw-ratios" | "yxhw_ratios" => BoxFormat::YxhwRatios,
        other => {
            return Err(value_error(
                "format",
                format!("unknown box format {other:?}; expected omniparser, pixels, ratios, yxhw or yxhw-ratios"),
            ))
        }
    })
}

/// The `SomOptions` of a style and text layout name (the CLI's `--style` and `--text-layout`).
pub fn som_options(style: &str, text_layout: &str) -> PyResult<SomOptions> {
    let style = match style {
        "magma" => MarkStyle::Magma,
        "omniparser" => MarkStyle::OmniParser,
        other => {
            return Err(value_error(
                "style",
                format!("unknown style {other:?}; expected magma or omniparser"),
            ))
        }
    };
    let layout = match text_layout {
        "raqm" => TextLayout::Raqm,
        "basic" => TextLayout::Basic,
        other => {
            return Err(value_error(
                "text_layout",
                format!("unknown text layout {other:?}; expected raqm or basic"),
            ))
        }
    };
    Ok(SomOptions { style, layout })
}

/// The boxes as the JSON text `magma som --boxes` reads: JSON text as given, a list of
/// `[x1, y1, x2, y2]` number lists written by serde_json (shortest round-trip floats), anything
/// else (dicts, numpy scalars) through the Python wrapper's `json.dumps`.
fn boxes_text(boxes: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = boxes.cast::<PyString>() {
        return text.extract();
    }
    if let Ok(list) = boxes.extract::<Vec<[f64; 4]>>() {
        return serde_json::to_string(&list).map_err(|e| value_error("boxes", e));
    }
    let py = boxes.py();
    py.import("magma_rs")?
        .getattr("_boxes_json")?
        .call1((boxes,))?
        .extract()
}

/// A mark as a dict, built field by field (this runs once per box on every call).
fn mark_to_py<'py>(py: Python<'py>, m: &Mark) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "id"), m.id)?;
    d.set_item(intern!(py, "bbox"), m.bbox.to_vec())?;
    d.set_item(intern!(py, "bbox_normalized"), m.bbox_normalized.to_vec())?;
    let label = PyDict::new(py);
    label.set_item(intern!(py, "x"), m.label.x)?;
    label.set_item(intern!(py, "y"), m.label.y)?;
    label.set_item(intern!(py, "width"), m.label.width)?;
    label.set_item(intern!(py, "height"), m.label.height)?;
    d.set_item(intern!(py, "label"), label)?;
    d.set_item(intern!(py, "font_size"), m.font_size)?;
    d.set_item(intern!(py, "position"), m.position)?;
    d.set_item(intern!(py, "fallback"), m.fallback)?;
    // Absent, not None, when the input had no such field (as in the CLI's JSON).
    if let Some(kind) = &m.kind {
        d.set_item(intern!(py, "kind"), kind)?;
    }
    if let Some(content) = &m.content {
        d.set_item(intern!(py, "content"), content)?;
    }
    if let Some(interactivity) = m.interactivity {
        d.set_item(intern!(py, "interactivity"), interactivity)?;
    }
    Ok(d)
}

/// Draws numbered marks (`magma som`); `boxes` is JSON text or a list of `[x1, y1, x2, y2]`.
///
/// Returns `(marked image, marks, prompt list, warnings)`; the Python wrapper `magma_rs.som`
/// builds this JSON from lists, numpy arrays or dicts.
#[pyfunction]
#[pyo3(signature = (image, boxes, format="omniparser", style="magma", text_layout="raqm", source_name="boxes"))]
pub fn som_json<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    boxes: &Bound<'py, PyAny>,
    format: &str,
    style: &str,
    text_layout: &str,
    source_name: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let boxes_json = boxes_text(boxes)?;
    let boxes_json = boxes_json.as_str();
    let shot = image_from_py(image, "image")?;
    let format = box_format(format)?;
    let options = som_options(style, text_layout)?;
    let (som, warnings) = py
        .detach(|| {
            let parsed = parse_boxes(boxes_json, source_name, format, shot.width(), shot.height())?;
            // `shot` is already our own copy of the numpy pixels: draw on it.
            let som = mark_screenshot_owned(shot, &parsed.boxes, &options)?;
            Ok::<_, magma_marks::MarksError>((som, parsed.warnings))
        })
        .or_py_err()?;
    let prompt = som.prompt_list();
    let marks = PyList::empty(py);
    for mark in &som.marks {
        marks.append(mark_to_py(py, mark)?)?;
    }
    let image = image_to_py(py, som.image)?;
    PyTuple::new(
        py,
        [
            image.into_any(),
            marks.into_any(),
            prompt.into_pyobject(py)?.into_any(),
            to_py(py, &warnings)?,
        ],
    )
}

/// Times `n` calls of box parsing + `mark_screenshot` inside Rust (no Python in the loop) and
/// returns the seconds per call: the baseline of the Python-overhead benchmark.
#[pyfunction]
#[pyo3(signature = (image, boxes_json, n, format="pixels", style="magma"))]
pub fn _bench_som_rust(
    py: Python<'_>,
    image: &Bound<'_, PyAny>,
    boxes_json: &str,
    n: usize,
    format: &str,
    style: &str,
) -> PyResult<f64> {
    let shot = image_from_py(image, "image")?;
    let format = box_format(format)?;
    let options = som_options(style, "raqm")?;
    py.detach(|| {
        let start = std::time::Instant::now();
        for _ in 0..n.max(1) {
            let parsed = parse_boxes(boxes_json, "boxes", format, shot.width(), shot.height())?;
            let som = mark_screenshot(&shot, &parsed.boxes, &options)?;
            std::hint::black_box(som);
        }
        Ok::<_, magma_marks::MarksError>(start.elapsed().as_secs_f64() / n.max(1) as f64)
    })
    .or_py_err()
}
