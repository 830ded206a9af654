//! Set-of-Mark: numbered marks on a screenshot (`magma som`).

use magma_marks::{mark_screenshot, parse_boxes, BoxFormat, MarkStyle, SomOptions, TextLayout};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

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

/// Draws numbered marks; `boxes_json` is the boxes as JSON text (what `magma som --boxes` reads).
///
/// Returns `(marked image, marks, prompt list, warnings)`; the Python wrapper `magma_rs.som`
/// builds this JSON from lists, numpy arrays or dicts.
#[pyfunction]
#[pyo3(signature = (image, boxes_json, format="omniparser", style="magma", text_layout="raqm", source_name="boxes"))]
pub fn som_json<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    boxes_json: &str,
    format: &str,
    style: &str,
    text_layout: &str,
    source_name: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let shot = image_from_py(image, "image")?;
    let format = box_format(format)?;
    let options = som_options(style, text_layout)?;
    let (som, warnings) = py
        .detach(|| {
            let parsed = parse_boxes(boxes_json, source_name, format, shot.width(), shot.height())?;
            let som = mark_screenshot(&shot, &parsed.boxes, &options)?;
            Ok::<_, magma_marks::MarksError>((som, parsed.warnings))
        })
        .or_py_err()?;
    let prompt = som.prompt_list();
    let marks = to_py(py, &som.marks)?;
    let image = image_to_py(py, som.image)?;
    PyTuple::new(
        py,
        [
            image.into_any(),
            marks,
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
