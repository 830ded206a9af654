//! Dataset converters (`magma data` pipeline stages `rlds`, `aitw`, `mind2web`, `seeclick`,
//! `llava`) as Python iterators over magma-data records.

use std::collections::VecDeque;
use std::path::PathBuf;

use magma_data::pipeline::{Pipeline, StageSpec};
use magma_data::record::Sample;
use magma_data::stage::{CollectSink, Skipped, Stage, WorkItem};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::convert::{json_to_py, to_py, value_error};
use crate::error::OrPyErr;

/// The records of a source, converted one input file at a time (lazily).
///
/// Each item is `(record, assets)`: the magma-data record as a dict and `{name: bytes}` of its
/// images. Records a converter had to skip (bad image, box outside the image, unknown action)
/// are listed in `skipped`, as in the job's error log.
#[pyclass(module = "magma_rs")]
pub struct Records {
    stage: Box<dyn Stage>,
    items: VecDeque<WorkItem>,
    ready: VecDeque<Sample>,
    skipped: Vec<(String, Skipped)>,
}

/// Iterates the records of a dataset source: `kind` is `rlds` (a TFDS folder), `aitw` (GZIP
/// TFRecords), `mind2web` (task JSON, `images=` the screenshots), `seeclick` (JSON, `images=`),
/// `llava` (JSON, `images=`); `input` a file, folder or glob. Options are the `[[stage]]`
/// fields of `PIPELINE.toml` (`statistics`, `statistics_key`, `image_key`, `action_keys`,
/// `language_key`, `images`, `max_marks`, `max_turns`).
#[pyfunction]
#[pyo3(signature = (kind, input, **options))]
pub fn convert(
    py: Python<'_>,
    kind: &str,
    input: PathBuf,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Records> {
    if !matches!(kind, "rlds" | "aitw" | "mind2web" | "seeclick" | "llava") {
        return Err(value_error(
            "kind",
            format!("unknown source {kind:?}; expected rlds, aitw, mind2web, seeclick or llava"),
        ));
    }
    let mut spec = serde_json::json!({"name": kind, "kind": kind, "input": input});
    if let Some(options) = options {
        let text: String = py
            .import("json")?
            .call_method1("dumps", (options,))?
            .extract()?;
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| value_error("options", e))?;
        spec.as_object_mut().expect("an object").extend(extra);
    }
    let spec: StageSpec = serde_json::from_value(spec).map_err(|e| value_error("options", e))?;
    let pipeline = Pipeline {
        out: PathBuf::from("."),
        stages: vec![spec.clone()],
        base: std::env::current_dir().map_err(|e| value_error("current folder", e))?,
    };
    let (stage, items) = py.detach(|| pipeline.build(&spec)).or_py_err()?;
    Ok(Records {
        stage,
        items: items.into(),
        ready: VecDeque::new(),
        skipped: Vec::new(),
    })
}

#[pymethods]
impl Records {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyDict>)>> {
        while self.ready.is_empty() {
            let Some(item) = self.items.pop_front() else {
                return Ok(None);
            };
            let stage = &self.stage;
            let sink = py
                .detach(|| {
                    let mut sink = CollectSink::default();
                    stage.process(&item, &mut sink).map(|()| sink)
                })
                .or_py_err()?;
            let file = item.path.display().to_string();
            self.skipped
                .extend(sink.skipped.into_iter().map(|s| (file.clone(), s)));
            self.ready.extend(sink.samples);
        }
        let sample = self.ready.pop_front().expect("not empty");
        // Through the JSON text, as any reader of a shard sees the record.
        let text = serde_json::to_string(&sample.record).map_err(|e| value_error("record", e))?;
        let record: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| value_error("record", e))?;
        let assets = PyDict::new(py);
        for asset in sample.assets {
            assets.set_item(asset.name, PyBytes::new(py, &asset.bytes))?;
        }
        Ok(Some((json_to_py(py, &record)?, assets)))
    }

    /// Records skipped so far: `file`, `locator`, `reason`, `message`.
    #[getter]
    fn skipped<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.skipped
            .iter()
            .map(|(file, s)| {
                let d = to_py(py, s)?;
                d.set_item("file", file)?;
                Ok(d)
            })
            .collect()
    }
}
