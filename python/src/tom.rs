//! Trace-of-Mark (`magma tom`) and the synthetic scenes of magma-traces.

use std::io::Cursor;
use std::path::PathBuf;

use image::RgbImage;
use magma_traces::camera::CameraMotionRule;
use magma_traces::frames::{load_clip, Clip, FrameWindow, Resize};
use magma_traces::lk::LucasKanade;
use magma_traces::output::{conversation_record, traces_json, write_outputs};
use magma_traces::pipeline::{run as run_pipeline, RecordKind, TomConfig, TomResult};
use magma_traces::record::RecordOptions;
use magma_traces::render::marked_frame;
use magma_traces::select::DataKind;
use magma_traces::synthetic::{Scene, SceneKind};
use numpy::ndarray::{Array1, Array2, Array3, Array4};
use numpy::{PyArray1, PyArray2, PyArray3, PyArray4};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde_json::json;

use crate::convert::{image_from_py, image_to_py, json_to_py, to_py, value_error};
use crate::error::OrPyErr;

/// Frames given to `tom`: a path (folder of frames or video file) or frames in memory.
enum FrameSource {
    Path(PathBuf),
    Frames(Vec<RgbImage>),
}

fn frame_source(input: &Bound<'_, PyAny>) -> PyResult<FrameSource> {
    if input.is_instance_of::<pyo3::types::PyString>() || input.hasattr("__fspath__")? {
        return Ok(FrameSource::Path(input.extract()?));
    }
    let mut frames = Vec::new();
    let iter = input.try_iter().map_err(|_| {
        value_error(
            "frames",
            "expected a path, a sequence of images or a (T, H, W, 3) uint8 array",
        )
    })?;
    for (i, item) in iter.enumerate() {
        frames.push(image_from_py(&item?, &format!("frames[{i}]"))?);
    }
    Ok(FrameSource::Frames(frames))
}

/// The window and resize of in-memory frames, applied exactly as `load_clip` does for folders.
fn clip_from_frames(frames: Vec<RgbImage>, window: &FrameWindow, resize: Resize) -> PyResult<Clip> {
    let indices = window.indices("frames", Some(frames.len())).or_py_err()?;
    let original_size = frames
        .first()
        .map(RgbImage::dimensions)
        .ok_or_else(|| value_error("frames", "no frame given"))?;
    let mut picked = Vec::with_capacity(indices.len());
    for &i in &indices {
        let frame = &frames[i];
        if frame.dimensions() != original_size {
            return Err(value_error(
                &format!("frames[{i}]"),
                format!(
                    "is {}x{}, expected {}x{} like frame 0",
                    frame.width(),
                    frame.height(),
                    original_size.0,
                    original_size.1
                ),
            ));
        }
        picked.push(resize.apply(frame.clone()));
    }
    Ok(Clip {
        frames: picked,
        source_indices: indices,
        original_size,
    })
}

fn parse_kind(kind: &str) -> PyResult<DataKind> {
    match kind {
        "video" => Ok(DataKind::Video),
        "robot" => Ok(DataKind::Robot),
        other => Err(value_error(
            "kind",
            format!("unknown data kind {other:?}; expected video or robot"),
        )),
    }
}

fn parse_camera(camera: &str, kind: DataKind) -> PyResult<CameraMotionRule> {
    match camera {
        "auto" => Ok(kind.params().camera_rule),
        "always" => Ok(CameraMotionRule::Always),
        "never" => Ok(CameraMotionRule::Never),
        other => Err(value_error(
            "camera",
            format!("unknown camera rule {other:?}; expected auto, always or never"),
        )),
    }
}

fn png(image: &RgbImage) -> PyResult<Vec<u8>> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| value_error("PNG encoding", e))?;
    Ok(bytes)
}

/// Runs Trace-of-Mark on a window of frames, as `magma tom` does; see `magma_rs.tom`.
#[pyfunction]
#[pyo3(signature = (
    input, *, grid=15, start=0, frames=None, stride=1, task="the task shown in the video",
    kind="video", seed=0, height=512, size=None, camera="auto", trace_speed=false,
    trace_start_end=false, keep_static_points=false, record_id=None, out=None
))]
#[allow(clippy::too_many_arguments)]
pub fn tom<'py>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    grid: usize,
    start: usize,
    frames: Option<usize>,
    stride: usize,
    task: &str,
    kind: &str,
    seed: u64,
    height: u32,
    size: Option<(u32, u32)>,
    camera: &str,
    trace_speed: bool,
    trace_start_end: bool,
    keep_static_points: bool,
    record_id: Option<String>,
    out: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let resize = match size {
        Some((0, _)) | Some((_, 0)) => return Err(value_error("size", "sides must be positive")),
        Some((w, h)) => Resize::Exact(w, h),
        None if height == 0 => Resize::Original,
        None => Resize::Height(height),
    };
    let window = FrameWindow {
        start,
        frames,
        stride,
    };
    let kind = parse_kind(kind)?;
    let config = TomConfig {
        grid_size: grid,
        kind,
        seed,
        task: task.to_string(),
        record: RecordOptions {
            remove_static_points: !keep_static_points,
            trace_speed,
            trace_start_end,
        },
        camera_rule: Some(parse_camera(camera, kind)?),
    };
    let source = frame_source(input)?;
    // The CLI names the record after the input's file stem.
    let record_id = record_id.unwrap_or_else(|| match &source {
        FrameSource::Path(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "clip".into()),
        FrameSource::Frames(_) => "clip".into(),
    });
    let input_name = match &source {
        FrameSource::Path(p) => p.display().to_string(),
        FrameSource::Frames(_) => "<frames>".to_string(),
    };
    let (clip, result, marked) = py.detach(|| -> PyResult<(Clip, TomResult, RgbImage)> {
        let clip = match source {
            FrameSource::Path(path) => {
                load_clip(&path, &window, resize, &mut |_, _| {}).or_py_err()?
            }
            FrameSource::Frames(frames) => clip_from_frames(frames, &window, resize)?,
        };
        let result =
            run_pipeline(&clip.frames, &LucasKanade::default(), &config, &|_| {}).or_py_err()?;
        let marked = marked_frame(&clip.frames[0], &result).or_py_err()?;
        Ok((clip, result, marked))
    })?;
    let record = conversation_record(&result, &record_id, kind == DataKind::Robot);
    let extra = json!({
        "input": input_name,
        "source_frames": clip.source_indices,
        "original_size": [clip.original_size.0, clip.original_size.1],
        "grid": grid,
        "kind": kind,
        "seed": seed,
        "task": task,
    });
    let written = match &out {
        Some(dir) => py
            .detach(|| write_outputs(dir, &clip.frames, &result, &record, extra.clone()))
            .or_py_err()?,
        None => Vec::new(),
    };
    result_dict(py, &clip, &result, &record, marked, &extra, &written)
}

fn result_dict<'py>(
    py: Python<'py>,
    clip: &Clip,
    result: &TomResult,
    record: &magma_traces::record::ConversationRecord,
    marked: RgbImage,
    extra: &serde_json::Value,
    written: &[PathBuf],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let sel = &result.selection;
    let (t, n, v) = (
        result.tracks.num_frames(),
        result.tracks.num_points(),
        sel.valid.len(),
    );
    d.set_item("id", &record.id)?;
    d.set_item(
        "kind",
        match result.kind {
            RecordKind::Tom => "tom",
            RecordKind::Som => "som",
        },
    )?;
    d.set_item("fallback", to_py(py, &result.fallback)?)?;
    d.set_item("question", &result.question)?;
    d.set_item("answer", &result.answer)?;
    d.set_item("record", to_py(py, record)?)?;
    d.set_item("width", result.size.0)?;
    d.set_item("height", result.size.1)?;
    d.set_item("frames", t)?;
    let queries: Vec<f32> = result.queries.iter().flatten().copied().collect();
    d.set_item("queries", array2(py, queries, n, 2)?)?;
    let points: Vec<f32> = result
        .tracks
        .points
        .iter()
        .flatten()
        .flatten()
        .copied()
        .collect();
    d.set_item("tracks", array3(py, points, t, n)?)?;
    let visible: Vec<bool> = result.tracks.visible.iter().flatten().copied().collect();
    d.set_item("visible", array2(py, visible, t, n)?)?;
    let valid: Vec<i64> = sel.valid.iter().map(|&i| i as i64).collect();
    d.set_item("valid", PyArray1::from_owned_array(py, Array1::from(valid)))?;
    let stabilized: Vec<f32> = sel
        .stabilized
        .tracks
        .points
        .iter()
        .flatten()
        .flatten()
        .copied()
        .collect();
    d.set_item("stabilized", array3(py, stabilized, t, v)?)?;
    d.set_item(
        "mean_step",
        PyArray1::from_owned_array(py, Array1::from(sel.lengths.clone())),
    )?;
    d.set_item(
        "moving",
        PyArray1::from_owned_array(py, Array1::from(sel.moving.clone())),
    )?;
    d.set_item("camera_motion_removed", sel.stabilized.applied)?;
    let failures: Vec<serde_json::Value> = sel
        .stabilized
        .failures
        .iter()
        .map(|(t, e)| json!({"frame": t, "error": e.to_string()}))
        .collect();
    d.set_item("homography_failures", to_py(py, &failures)?)?;
    let role = |point: usize| {
        if sel.positives.iter().any(|m| m.point == point) {
            "positive"
        } else {
            "negative"
        }
    };
    let all_marks: Vec<_> = sel.positives.iter().chain(&sel.negatives).collect();
    let marks: Vec<serde_json::Value> = result
        .marks
        .iter()
        .zip(&result.mark_pixels)
        .zip(&all_marks)
        .map(|((m, p), sm)| {
            json!({"id": m.id, "grid": [m.at.x, m.at.y], "pixel": [p[0], p[1]],
                   "point": sm.point, "role": role(sm.point)})
        })
        .collect();
    d.set_item("marks", to_py(py, &marks)?)?;
    let traces = pyo3::types::PyList::empty(py);
    for trace in &result.traces {
        let item = PyDict::new(py);
        item.set_item("id", trace.trace.id)?;
        let pts: Vec<i32> = std::iter::once(trace.trace.start)
            .chain(trace.trace.future.iter().copied())
            .flat_map(|p| [p.x, p.y])
            .collect();
        let k = pts.len() / 2;
        item.set_item("points", array2(py, pts, k, 2)?)?;
        item.set_item("speed", trace.speed)?;
        traces.append(item)?;
    }
    d.set_item("traces", traces)?;
    d.set_item("source_frames", clip.source_indices.clone())?;
    d.set_item(
        "original_size",
        (clip.original_size.0, clip.original_size.1),
    )?;
    d.set_item("marked_image", image_to_py(py, marked)?)?;
    d.set_item(
        "traces_json",
        json_to_py(py, &{
            let mut v = traces_json(result);
            if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra.clone())
            {
                obj.extend(more);
            }
            v
        })?,
    )?;
    d.set_item(
        "files",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>(),
    )?;
    Ok(d)
}

fn array2<'py, T: numpy::Element>(
    py: Python<'py>,
    data: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let a = Array2::from_shape_vec((rows, cols), data).map_err(|e| value_error("array", e))?;
    Ok(PyArray2::from_owned_array(py, a))
}

fn array3<'py>(
    py: Python<'py>,
    data: Vec<f32>,
    frames: usize,
    points: usize,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let a =
        Array3::from_shape_vec((frames, points, 2), data).map_err(|e| value_error("array", e))?;
    Ok(PyArray3::from_owned_array(py, a))
}

/// Encodes an image (numpy or PIL) as PNG with the same encoder the Rust outputs use.
#[pyfunction]
pub fn encode_png<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let image = image_from_py(image, "image")?;
    let bytes = py.detach(|| png(&image))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Renders one of magma-traces' synthetic scenes (exact ground truth known) as a
/// (T, H, W, 3) uint8 array; same arguments, same frames.
#[pyfunction]
#[pyo3(signature = (kind, width=256, height=192, frames=16, seed=0))]
pub fn synthetic_scene<'py>(
    py: Python<'py>,
    kind: &str,
    width: u32,
    height: u32,
    frames: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyArray4<u8>>> {
    let scene_kind = SceneKind::from_name(kind).ok_or_else(|| {
        let names: Vec<&str> = SceneKind::ALL.iter().map(|k| k.name()).collect();
        value_error(
            "kind",
            format!(
                "unknown scene {kind:?}; expected one of {}",
                names.join(", ")
            ),
        )
    })?;
    if frames == 0 {
        return Err(value_error("frames", "must be at least 1"));
    }
    let scene = py.detach(|| Scene::generate(scene_kind, width, height, frames, seed));
    let (w, h) = (scene.width as usize, scene.height as usize);
    let data: Vec<u8> = scene
        .frames
        .into_iter()
        .flat_map(RgbImage::into_raw)
        .collect();
    let a = Array4::from_shape_vec((frames, h, w, 3), data).map_err(|e| value_error("scene", e))?;
    Ok(PyArray4::from_owned_array(py, a))
}

/// Number of frames of a folder of numbered frames or (built with the `video` feature) a video
/// file.
#[pyfunction]
pub fn frame_count(py: Python<'_>, path: PathBuf) -> PyResult<usize> {
    py.detach(|| {
        if path.is_dir() {
            return magma_traces::frames::frame_files(&path)
                .map(|f| f.len())
                .or_py_err();
        }
        // magma-traces has no container-level frame count: decode every frame, each shrunk to 8×8
        // right after decoding so memory stays small.
        load_clip(
            &path,
            &FrameWindow::default(),
            Resize::Exact(8, 8),
            &mut |_, _| {},
        )
        .map(|clip| clip.frames.len())
        .or_py_err()
    })
}

/// Loads the frames at `indices` of a folder or video as (H, W, 3) uint8 arrays, resized like
/// `tom` (`height` 0 keeps the decoded size).
#[pyfunction]
#[pyo3(signature = (path, indices, *, height=0))]
pub fn load_frames<'py>(
    py: Python<'py>,
    path: PathBuf,
    indices: Vec<usize>,
    height: u32,
) -> PyResult<Vec<Bound<'py, PyArray3<u8>>>> {
    let resize = if height == 0 {
        Resize::Original
    } else {
        Resize::Height(height)
    };
    let frames = py.detach(|| -> PyResult<Vec<RgbImage>> {
        if path.is_dir() {
            // Frame files: read just the frames asked for.
            return indices
                .iter()
                .map(|&i| {
                    let window = FrameWindow {
                        start: i,
                        frames: Some(1),
                        stride: 1,
                    };
                    load_clip(&path, &window, resize, &mut |_, _| {})
                        .map(|mut clip| clip.frames.remove(0))
                        .or_py_err()
                })
                .collect();
        }
        // A video decodes sequentially: one pass over the span of the indices.
        let (Some(&first), Some(&last)) = (indices.iter().min(), indices.iter().max()) else {
            return Ok(Vec::new());
        };
        let window = FrameWindow {
            start: first,
            frames: Some(last - first + 1),
            stride: 1,
        };
        let clip = load_clip(&path, &window, resize, &mut |_, _| {}).or_py_err()?;
        Ok(indices
            .iter()
            .map(|&i| clip.frames[i - first].clone())
            .collect())
    })?;
    frames.into_iter().map(|f| image_to_py(py, f)).collect()
}
