//! magma-data from Python: deterministic record ids, ToM windows as magma-data `Record`s, and
//! WebDataset shards written and read by magma-data itself (the format of `magma data`).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;

use magma_data::record::{
    record_id as rust_record_id, Asset, Provenance, Record, Sample, Trace, Turn,
};
use magma_data::webdataset::{read_shard as rust_read_shard, ShardWriter};
use magma_traces::frames::{load_clip, FrameWindow, Resize};
use magma_traces::lk::LucasKanade;
use magma_traces::pipeline::{run as run_pipeline, RecordKind, TomConfig};
use magma_traces::render::marked_frame;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::convert::{json_to_py, to_py, value_error};
use crate::error::OrPyErr;

/// The deterministic id of a record (magma-data's `record_id`): the source tag and 32 hex digits
/// of SHA-256 over source, NUL and item.
#[pyfunction]
pub fn record_id(source: &str, item: &str) -> String {
    rust_record_id(source, item)
}

/// The random seed of a record: the first 64 bits of the hash in its id, so the same record
/// makes the same random choices on every machine and rerun.
fn seed_of(id: &str) -> u64 {
    let hex = &id[id.len().saturating_sub(32)..];
    u64::from_str_radix(&hex[..16.min(hex.len())], 16).unwrap_or(0)
}

/// Trace-of-Mark on one window of a clip, as a magma-data record plus its marked first frame.
///
/// The record id is `record_id(source, f"{clip_id}#{start}+{frames}")`, the seed comes from the
/// id. The record holds the ToM (or SoM fallback) conversation, the marked frame as medium 0
/// (`<id>.0.png`), every mark's raw trace (pixels, visibility per frame), the CLIP score under
/// `scores["clip"]` and where it came from. Returns `(record_json, png_bytes, kind)`.
#[pyfunction]
#[pyo3(signature = (path, *, clip_id, start, frames, task, source="video_tom", grid=15, height=512, kind="video", clip_score=None))]
#[allow(clippy::too_many_arguments)]
pub fn tom_sample<'py>(
    py: Python<'py>,
    path: PathBuf,
    clip_id: &str,
    start: usize,
    frames: usize,
    task: &str,
    source: &str,
    grid: usize,
    height: u32,
    kind: &str,
    clip_score: Option<f64>,
) -> PyResult<(String, Bound<'py, PyBytes>, &'static str)> {
    let data_kind = match kind {
        "video" => magma_traces::select::DataKind::Video,
        "robot" => magma_traces::select::DataKind::Robot,
        other => {
            return Err(value_error(
                "kind",
                format!("unknown data kind {other:?}; expected video or robot"),
            ))
        }
    };
    let id = rust_record_id(source, &format!("{clip_id}#{start}+{frames}"));
    let resize = if height == 0 {
        Resize::Original
    } else {
        Resize::Height(height)
    };
    let window = FrameWindow {
        start,
        frames: Some(frames),
        stride: 1,
    };
    let config = TomConfig {
        grid_size: grid,
        kind: data_kind,
        seed: seed_of(&id),
        task: task.to_string(),
        ..TomConfig::default()
    };
    let (json, png, record_kind) = py.detach(|| -> PyResult<(String, Vec<u8>, RecordKind)> {
        let clip = load_clip(&path, &window, resize, &mut |_, _| {}).or_py_err()?;
        let result =
            run_pipeline(&clip.frames, &LucasKanade::default(), &config, &|_| {}).or_py_err()?;
        let marked = marked_frame(&clip.frames[0], &result).or_py_err()?;
        let mut png = Vec::new();
        marked
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| value_error("PNG encoding", e))?;
        let all_marks = result
            .selection
            .positives
            .iter()
            .chain(&result.selection.negatives);
        let traces = all_marks
            .map(|m| Trace {
                mark: m.id as u32,
                points: result.tracks.trace(m.point),
                visible: result.tracks.visible.iter().map(|f| f[m.point]).collect(),
            })
            .collect();
        let mut sample = Sample::new(Record {
            id: id.clone(),
            source: source.to_string(),
            media: Vec::new(),
            conversations: vec![
                Turn::human(result.question.clone()),
                Turn::gpt(result.answer.clone()),
            ],
            marks: Vec::new(),
            traces,
            actions: Vec::new(),
            scores: clip_score
                .map(|s| BTreeMap::from([("clip".to_string(), s)]))
                .unwrap_or_default(),
            provenance: Provenance {
                converter: format!("magma_rs.pipeline {}", env!("CARGO_PKG_VERSION")),
                input: path.display().to_string(),
                locator: format!("clip {clip_id} frames {:?}", clip.source_indices),
            },
        });
        let (w, h) = marked.dimensions();
        sample.push_image(png, "png", w, h);
        let Asset { bytes, .. } = sample.assets.pop().expect("pushed one image");
        let json = serde_json::to_string(&sample.record).map_err(|e| value_error("record", e))?;
        Ok((json, bytes, result.kind))
    })?;
    let kind = match record_kind {
        RecordKind::Tom => "tom",
        RecordKind::Som => "som",
    };
    Ok((json, PyBytes::new(py, &png), kind))
}

/// A sample as Python passes it: the record's JSON and its assets as `(name, bytes)`.
type PySample = (String, Vec<(String, Vec<u8>)>);

/// Writes one WebDataset shard with magma-data's `ShardWriter` (`<id>.json` then its assets,
/// fixed tar metadata, temporary file renamed into place). `samples`: `(record_json, [(name,
/// bytes), ...])` in the order to write. Returns the index rows (dicts).
#[pyfunction]
pub fn write_shard<'py>(
    py: Python<'py>,
    path: PathBuf,
    samples: Vec<PySample>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut parsed = Vec::with_capacity(samples.len());
    for (i, (json, assets)) in samples.into_iter().enumerate() {
        let record: Record = serde_json::from_str(&json).map_err(|e| {
            value_error(
                &format!("samples[{i}]"),
                format!("not a magma-data record: {e}"),
            )
        })?;
        let assets = assets
            .into_iter()
            .map(|(name, bytes)| Asset { name, bytes })
            .collect();
        parsed.push(Sample { record, assets });
    }
    let index = py
        .detach(|| {
            let mut writer = ShardWriter::create(&path)?;
            for sample in &parsed {
                writer.write(sample)?;
            }
            writer.finish()
        })
        .or_py_err()?;
    to_py(py, &index)
}

/// Reads a WebDataset shard with magma-data: a list of `(record dict, {asset name: bytes})`.
#[pyfunction]
pub fn read_shard<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyList>> {
    let samples = py.detach(|| rust_read_shard(&path)).or_py_err()?;
    let out = PyList::empty(py);
    for sample in samples {
        // Through the JSON text, so f32 traces read back as the shortest decimals the shard
        // holds (what any JSON reader of the shard sees), not as widened f64 values.
        let text = serde_json::to_string(&sample.record).map_err(|e| value_error("record", e))?;
        let record: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| value_error("record", e))?;
        let assets = PyDict::new(py);
        for asset in sample.assets {
            assets.set_item(asset.name, PyBytes::new(py, &asset.bytes))?;
        }
        out.append((json_to_py(py, &record)?, assets))?;
    }
    Ok(out)
}
