//! magma-data's job runner (`magma data run PIPELINE.toml`) from Python, split so that any
//! scheduler (Ray) can run the work items: every item is one output part written by the job
//! runner itself, so the files are those of `magma data run`, exactly once.

use std::path::PathBuf;

use magma_data::curate::clip::ClipScorer;
use magma_data::curate::shots::ShotConfig;
use magma_data::curate::stage::VideoTomStage;
use magma_data::job::run_stage;
use magma_data::job::ShardSpec;
use magma_data::pipeline::{run as run_all, Pipeline, RunOptions};
use magma_data::stage::{Stage, WorkItem};
use magma_traces::frames::Resize;
use magma_traces::pipeline::TomConfig;
use magma_traces::select::DataKind;
use pyo3::prelude::*;

use crate::convert::{to_py, value_error};
use crate::error::OrPyErr;

fn load(path: &std::path::Path) -> PyResult<Pipeline> {
    Pipeline::from_file(path).or_py_err()
}

fn spec<'a>(pipeline: &'a Pipeline, stage: &str) -> PyResult<&'a magma_data::pipeline::StageSpec> {
    pipeline
        .stages
        .iter()
        .find(|s| s.name == stage)
        .ok_or_else(|| {
            let names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
            value_error(
                "stage",
                format!("no stage {stage:?}; the pipeline has {}", names.join(", ")),
            )
        })
}

/// The stages of a pipeline file, in order: `name`, `kind`, `dir` (its output folder).
#[pyfunction]
pub fn pipeline_stages<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let pipeline = load(&path)?;
    pipeline
        .stages
        .iter()
        .map(|s| {
            let d = to_py(py, &serde_json::json!({"name": s.name, "kind": s.kind}))?;
            d.set_item("dir", pipeline.stage_dir(s))?;
            Ok(d)
        })
        .collect()
}

/// The work items of one stage (for a filter stage: the done parts of the stage it reads, so
/// call it once that stage has run): a list of JSON strings, one per item.
#[pyfunction]
pub fn pipeline_items(py: Python<'_>, path: PathBuf, stage: &str) -> PyResult<Vec<String>> {
    let pipeline = load(&path)?;
    let spec = spec(&pipeline, stage)?.clone();
    let (_, items) = py.detach(|| pipeline.build(&spec)).or_py_err()?;
    items
        .iter()
        .map(|i| serde_json::to_string(i).map_err(|e| value_error("item", e)))
        .collect()
}

/// One stage of a pipeline, built once (models loaded once) and run on any subset of its work
/// items with the job runner: each item becomes `part-<hash>.tar`, `.errors.jsonl` and
/// `.done.json` in the stage's folder; items already done are skipped.
#[pyclass(module = "magma_rs", frozen)]
pub struct StageRunner {
    stage: Box<dyn Stage>,
    dir: PathBuf,
}

#[pymethods]
impl StageRunner {
    #[new]
    fn new(py: Python<'_>, path: PathBuf, stage: &str) -> PyResult<Self> {
        let pipeline = load(&path)?;
        let spec = spec(&pipeline, stage)?.clone();
        let dir = pipeline.stage_dir(&spec);
        let (stage, _) = py.detach(|| pipeline.build(&spec)).or_py_err()?;
        Ok(Self { stage, dir })
    }

    /// magma-data's video converter stage (clip list JSON → shots → CLIP score → windows →
    /// ToM records) writing into `out`: `window` frames per window, frames resized to `height`
    /// (0: decoded size), `grid`² query points, CLIP scores from `clip_model` when given.
    /// Work items come from `work_item(clip_list_path)`.
    #[staticmethod]
    #[pyo3(signature = (out, *, window=16, height=256, grid=15, kind="video", seed=0, shot_threshold=27.0, clip_model=None))]
    #[allow(clippy::too_many_arguments)]
    fn video(
        py: Python<'_>,
        out: PathBuf,
        window: usize,
        height: u32,
        grid: usize,
        kind: &str,
        seed: u64,
        shot_threshold: f64,
        clip_model: Option<PathBuf>,
    ) -> PyResult<Self> {
        let kind = match kind {
            "video" => DataKind::Video,
            "robot" => DataKind::Robot,
            other => {
                return Err(value_error(
                    "kind",
                    format!("unknown data kind {other:?}; expected video or robot"),
                ))
            }
        };
        let clip = match clip_model {
            Some(dir) => Some(py.detach(|| ClipScorer::load(&dir)).or_py_err()?),
            None => None,
        };
        let stage = VideoTomStage {
            shots: ShotConfig {
                threshold: shot_threshold,
                ..ShotConfig::default()
            },
            window,
            resize: if height == 0 {
                Resize::Original
            } else {
                Resize::Height(height)
            },
            tom: TomConfig {
                grid_size: grid,
                kind,
                seed,
                ..TomConfig::default()
            },
            clip,
        };
        Ok(Self {
            stage: Box::new(stage),
            dir: out,
        })
    }

    /// Runs `items` (JSON strings from `pipeline_items` or `work_item`); returns their funnel.
    fn run<'py>(&self, py: Python<'py>, items: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let items = items
            .iter()
            .map(|t| serde_json::from_str::<WorkItem>(t).map_err(|e| value_error("item", e)))
            .collect::<PyResult<Vec<_>>>()?;
        let funnel = py
            .detach(|| run_stage(self.stage.as_ref(), &items, &self.dir, &mut |_| {}))
            .or_py_err()?;
        to_py(py, &funnel)
    }
}

/// The work item of one input file (its key is the file name), as a JSON string.
#[pyfunction]
pub fn work_item(path: PathBuf) -> PyResult<String> {
    if !path.exists() {
        return Err(crate::convert::io_error(
            std::io::ErrorKind::NotFound,
            format!("{}: no such file", path.display()),
        ));
    }
    serde_json::to_string(&WorkItem::file(&path)).map_err(|e| value_error("item", e))
}

/// `magma data run PIPELINE.toml [--shard i/n]` on this machine: runs every stage in order
/// (items already done are skipped) and writes the stage funnels; returns the stage reports.
#[pyfunction]
#[pyo3(signature = (path, *, shard_index=0, shard_count=1))]
pub fn run_pipeline<'py>(
    py: Python<'py>,
    path: PathBuf,
    shard_index: usize,
    shard_count: usize,
) -> PyResult<Bound<'py, PyAny>> {
    if shard_count == 0 || shard_index >= shard_count {
        return Err(value_error(
            "shard",
            format!("{shard_index}/{shard_count} is not a shard"),
        ));
    }
    let pipeline = load(&path)?;
    let options = RunOptions {
        shard: ShardSpec {
            index: shard_index,
            count: shard_count,
        },
        dry_run: false,
    };
    let reports = py
        .detach(|| run_all(&pipeline, &options, &mut |_, _| {}))
        .or_py_err()?;
    to_py(py, &reports)
}
