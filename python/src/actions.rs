//! Action codecs (`magma action`): robot action tokens ↔ 7-DoF actions, UI / mark / trace answers.
//!
//! `parse_ui`, `parse_marks` and the statistics-key defaults follow `magma action`'s dispatch, so
//! a Python caller gets the same JSON the CLI prints with `--json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use magma_actions::marks::{grid, som, tom};
use magma_actions::robot::{
    extract_action_ids, ActionTokenizer as RustTokenizer, Embodiment, NormStats,
    RobotActionDecoder as RustDecoder, StatisticsSet, ACTION_DIM,
};
use magma_actions::ui::{
    box_center, normalized_to_pixels, resolve_click, AitwAction, MarkBoxes, Mind2WebAction,
    UiAnswer, UiTarget,
};
use numpy::ndarray::Array1;
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use serde_json::{json, Value};

use crate::convert::{json_to_py, to_py, value_error};
use crate::error::OrPyErr;

/// Base vocabulary size of Magma-8B (`tokenizer_vocab_size` in its config.json).
const MAGMA_8B_VOCAB: u32 = 128_000;

fn embodiment(name: Option<&str>) -> PyResult<Option<Embodiment>> {
    name.map(|n| match n {
        "widowx" => Ok(Embodiment::Widowx),
        "google" => Ok(Embodiment::Google),
        "libero" => Ok(Embodiment::Libero),
        other => Err(value_error(
            "embodiment",
            format!("unknown embodiment {other:?}; expected widowx, google or libero"),
        )),
    })
    .transpose()
}

/// The statistics to use and their key: `unnorm_key`, else the embodiment's key (built-in
/// statistics only), else the only key of the file.
fn load_stats(
    unnorm_key: Option<&str>,
    stats: Option<&PathBuf>,
    embodiment: Option<Embodiment>,
) -> PyResult<(String, NormStats)> {
    let set = match stats {
        Some(path) => StatisticsSet::from_file(path).or_py_err()?,
        None => StatisticsSet::builtin(),
    };
    let key = unnorm_key.or_else(|| {
        stats
            .is_none()
            .then(|| embodiment.and_then(Embodiment::default_unnorm_key))
            .flatten()
    });
    let entry = set.get(key).or_py_err()?;
    let key = match key {
        Some(k) => k.to_string(),
        None => set.keys().next().unwrap_or_default().to_string(),
    };
    Ok((key, entry.action.clone()))
}

fn f64_vec(values: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<f64>> {
    if let Ok(array) = values.extract::<PyReadonlyArray1<'_, f64>>() {
        return Ok(array.as_array().to_vec());
    }
    values
        .extract::<Vec<f64>>()
        .map_err(|_| value_error(what, "expected a 1-D sequence or numpy array of floats"))
}

fn u32_vec(ids: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u32>> {
    if let Ok(array) = ids.extract::<PyReadonlyArray1<'_, u32>>() {
        return Ok(array.as_array().to_vec());
    }
    if let Ok(array) = ids.extract::<PyReadonlyArray1<'_, i64>>() {
        return array
            .as_array()
            .iter()
            .map(|&v| {
                u32::try_from(v).map_err(|_| value_error(what, format!("id {v} is not a token id")))
            })
            .collect();
    }
    ids.extract::<Vec<u32>>().map_err(|_| {
        value_error(
            what,
            "expected a 1-D sequence or numpy array of non-negative ints",
        )
    })
}

fn f64_array<'py>(py: Python<'py>, v: Vec<f64>) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_owned_array(py, Array1::from(v))
}

/// OpenVLA's 256-bin action tokenizer: ids `vocab_size - 256 ..= vocab_size - 1`.
#[pyclass(module = "magma_rs", frozen)]
pub struct ActionTokenizer {
    inner: RustTokenizer,
}

#[pymethods]
impl ActionTokenizer {
    #[new]
    #[pyo3(signature = (vocab_size=MAGMA_8B_VOCAB))]
    fn new(vocab_size: u32) -> PyResult<Self> {
        Ok(Self {
            inner: RustTokenizer::new(vocab_size).or_py_err()?,
        })
    }

    /// Normalised values in [-1, 1] → token ids (uint32 array).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let values = f64_vec(values, "values")?;
        let ids = self.inner.encode(&values).or_py_err()?;
        Ok(PyArray1::from_owned_array(py, Array1::from(ids)))
    }

    /// Token ids → bin centres in [-1, 1] (float64 array); ids outside the action range are
    /// clipped like the reference unless `strict`.
    #[pyo3(signature = (ids, strict=false))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
        strict: bool,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let ids = u32_vec(ids, "ids")?;
        if strict {
            self.inner.check_ids(&ids).or_py_err()?;
        }
        Ok(f64_array(py, self.inner.decode(&ids)))
    }

    /// The base vocabulary size the action ids count down from.
    #[getter]
    fn vocab_size(&self) -> u32 {
        self.inner.base_vocab_size()
    }

    /// `(first, last)` action token id.
    #[getter]
    fn token_range(&self) -> (u32, u32) {
        let r = self.inner.token_range();
        (*r.start(), *r.end())
    }

    /// The 255 bin centres.
    fn bin_centers<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_array(py, self.inner.bin_centers().to_vec())
    }
}

/// Stateful decoder of a robot episode: token ids → normalised, un-normalised 7-DoF action and
/// the embodiment's command (the Google robot's sticky gripper keeps state; `reset()` per episode).
#[pyclass(module = "magma_rs")]
pub struct RobotActionDecoder {
    inner: RustDecoder,
    tokenizer: RustTokenizer,
    key: String,
    strict: bool,
}

#[pymethods]
impl RobotActionDecoder {
    #[new]
    #[pyo3(signature = (unnorm_key=None, *, stats=None, embodiment=None, vocab_size=MAGMA_8B_VOCAB, strict=false))]
    fn new(
        unnorm_key: Option<&str>,
        stats: Option<PathBuf>,
        embodiment: Option<&str>,
        vocab_size: u32,
        strict: bool,
    ) -> PyResult<Self> {
        let embodiment = self::embodiment(embodiment)?;
        let (key, stats) = load_stats(unnorm_key, stats.as_ref(), embodiment)?;
        let tokenizer = RustTokenizer::new(vocab_size).or_py_err()?;
        Ok(Self {
            inner: RustDecoder::new(tokenizer.clone(), stats, embodiment),
            tokenizer,
            key,
            strict,
        })
    }

    /// The statistics key in use.
    #[getter]
    fn unnorm_key(&self) -> &str {
        &self.key
    }

    /// Decodes one step: exactly 7 action ids, or a generated sequence ending in the stop token
    /// (the 7 ids before it are used). Returns a dict with `ids`, `normalized` and
    /// `unnormalized` (float64 arrays) and `command` (dict or None).
    fn decode<'py>(
        &mut self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let all = u32_vec(ids, "ids")?;
        let ids = if all.len() == ACTION_DIM {
            &all[..]
        } else {
            extract_action_ids(&all, ACTION_DIM).or_py_err()?
        };
        if self.strict {
            self.tokenizer.check_ids(ids).or_py_err()?;
        }
        let step = self.inner.decode_ids(ids).or_py_err()?;
        let out = to_py(py, &step)?;
        out.set_item("normalized", f64_array(py, step.normalized))?;
        out.set_item("unnormalized", f64_array(py, step.unnormalized))?;
        Ok(out)
    }

    /// Starts a new episode (clears the sticky-gripper state).
    fn reset(&mut self) {
        self.inner.reset();
    }
}

/// Encodes a raw 7-DoF action (or, with `normalized=True`, values already in [-1, 1]) into
/// action token ids; returns the dict `magma action encode --json` prints, `ids` as uint32 array.
#[pyfunction]
#[pyo3(signature = (values, *, unnorm_key=None, stats=None, normalized=false, vocab_size=MAGMA_8B_VOCAB))]
pub fn encode_action<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    unnorm_key: Option<&str>,
    stats: Option<PathBuf>,
    normalized: bool,
    vocab_size: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let tokenizer = RustTokenizer::new(vocab_size).or_py_err()?;
    let values = f64_vec(values, "values")?;
    let (key, norm) = if normalized {
        if unnorm_key.is_some() || stats.is_some() {
            return Err(value_error(
                "normalized",
                "values already normalised take no statistics",
            ));
        }
        (None, values.clone())
    } else {
        let (key, stats) = load_stats(unnorm_key, stats.as_ref(), None)?;
        (Some(key), stats.normalize(&values).or_py_err()?)
    };
    let ids = tokenizer.encode(&norm).or_py_err()?;
    let out = json_to_py(
        py,
        &json!({
            "vocab_size": tokenizer.base_vocab_size(),
            "unnorm_key": key,
            "values": values,
            "normalized": norm,
            "ids": ids,
            "decoded": tokenizer.decode(&ids),
        }),
    )?;
    out.set_item("ids", PyArray1::from_owned_array(py, Array1::from(ids)))?;
    out.set_item("normalized", f64_array(py, norm))?;
    Ok(out)
}

/// Pixel positions of the points and box centres of an answer.
fn answer_pixels(
    answer: &UiAnswer,
    width: u32,
    height: u32,
) -> magma_actions::Result<Vec<[f64; 2]>> {
    let UiAnswer::Elements { elements, .. } = answer else {
        return Ok(Vec::new());
    };
    elements
        .iter()
        .filter_map(|e| match e.target {
            UiTarget::Point { x, y } => Some([x, y]),
            UiTarget::Box { x1, y1, x2, y2 } => Some(box_center(&[x1, y1, x2, y2])),
            UiTarget::Text { .. } => None,
        })
        .map(|p| normalized_to_pixels(p, width, height))
        .collect()
}

fn parse_ui_value(
    text: &str,
    size: Option<(u32, u32)>,
    boxes: Option<&MarkBoxes>,
) -> PyResult<Value> {
    Ok(if let (Some(boxes), Some((w, h))) = (boxes, size) {
        json!({"format": "ui_agent_click", "action": resolve_click(text, boxes, w, h).or_py_err()?})
    } else if boxes.is_some() {
        return Err(value_error(
            "boxes",
            "needs width and height to place the click",
        ));
    } else if let Ok(action) = AitwAction::parse(text) {
        let pixels = match (&action, size) {
            (AitwAction::TapPoint { x, y, .. }, Some((w, h))) => {
                Some(normalized_to_pixels([*x, *y], w, h).or_py_err()?)
            }
            _ => None,
        };
        json!({"format": "aitw", "action": action, "canonical": action.format(), "pixels": pixels})
    } else if let Ok(action) = Mind2WebAction::parse(text) {
        let pixels = match size {
            Some((w, h)) => action.click_pixels(w, h).or_py_err()?,
            None => None,
        };
        json!({"format": "mind2web", "action": action, "canonical": action.format(), "pixels": pixels})
    } else {
        match UiAnswer::parse(text) {
            Ok(answer) => {
                let pixels = match size {
                    Some((w, h)) => answer_pixels(&answer, w, h).or_py_err()?,
                    None => Vec::new(),
                };
                json!({"format": "answer", "action": answer, "canonical": answer.format(), "pixels": pixels})
            }
            // The reference agent's fallbacks (Qwen box, bare numbers) need no mark boxes.
            Err(parse_error) => match size {
                Some((w, h)) => match resolve_click(text, &MarkBoxes::new(), w, h) {
                    Ok(click) => json!({"format": "ui_agent_click", "action": click}),
                    Err(_) => return Err(parse_error).or_py_err(),
                },
                None => return Err(parse_error).or_py_err(),
            },
        }
    })
}

fn size_arg(width: Option<u32>, height: Option<u32>) -> PyResult<Option<(u32, u32)>> {
    match (width, height) {
        (Some(w), Some(h)) => Ok(Some((w, h))),
        (None, None) => Ok(None),
        _ => Err(value_error("width/height", "give both or neither")),
    }
}

/// Parses a UI answer (SeeClick/SoM `Coordinate: (x, y). Mark: k`, Qwen box, AITW JSON, Mind2Web
/// operation); with `boxes` ({mark: [x1, y1, x2, y2] normalised}) resolves the click as the
/// reference UI agent does. Returns the dict `magma action parse-ui --json` prints.
#[pyfunction]
#[pyo3(signature = (text, *, width=None, height=None, boxes=None))]
pub fn parse_ui<'py>(
    py: Python<'py>,
    text: &str,
    width: Option<u32>,
    height: Option<u32>,
    boxes: Option<BTreeMap<u32, [f64; 4]>>,
) -> PyResult<Bound<'py, PyAny>> {
    let value = parse_ui_value(text, size_arg(width, height)?, boxes.as_ref())?;
    json_to_py(py, &value)
}

/// Parses a Set-of-Mark (`Mark 3 at [12,200]. …`) or Trace-of-Mark answer on the 256 grid;
/// with width and height also in pixels. Returns the dict `magma action parse-marks --json` prints.
#[pyfunction]
#[pyo3(signature = (text, *, width=None, height=None))]
pub fn parse_marks<'py>(
    py: Python<'py>,
    text: &str,
    width: Option<u32>,
    height: Option<u32>,
) -> PyResult<Bound<'py, PyAny>> {
    let size = size_arg(width, height)?;
    let value = if text.contains("future positions are:") || text.contains("\"Mark ") {
        let traces = tom::parse_future_traces(text).or_py_err()?;
        let full = tom::parse_answer(text).ok();
        let pixels = match size {
            Some((w, h)) => Some(tom::to_pixel_tracks(text, w, h).or_py_err()?),
            None => None,
        };
        json!({"format": "trace_of_mark", "marks": full, "future": traces, "pixel_tracks": pixels})
    } else {
        let marks = som::parse_answer(text).or_py_err()?;
        let pixels = match size {
            Some((w, h)) => Some(
                marks
                    .iter()
                    .map(|m| grid::to_pixels(m.at, w, h).map(|p| (m.id, p)))
                    .collect::<Result<Vec<_>, _>>()
                    .or_py_err()?,
            ),
            None => None,
        };
        json!({"format": "set_of_mark", "marks": marks, "pixels": pixels})
    };
    json_to_py(py, &value)
}
