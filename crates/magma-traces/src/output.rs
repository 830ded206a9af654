//! Files of a run, written atomically: the conversation record, a JSON with every trace, the
//! marked first frame, the trace picture and the tracking GIF.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageFormat, RgbImage};
use serde_json::{json, Value};

use crate::error::{Result, TracesError};
use crate::pipeline::{RecordKind, TomResult};
use crate::record::ConversationRecord;
use crate::render::{marked_frame, trace_picture, tracks_gif};

/// File names inside the output folder.
pub const RECORD_FILE: &str = "record.json";
pub const TRACES_FILE: &str = "traces.json";
pub const MARKED_FILE: &str = "marked.png";
pub const FIRST_FRAME_FILE: &str = "frame0.png";
pub const TRACE_PICTURE_FILE: &str = "traces.png";
pub const GIF_FILE: &str = "tracks.gif";

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so readers
/// never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| TracesError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TracesError::io(path, e)
    })
}

fn png_bytes(image: &RgbImage, name: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .map_err(|e| TracesError::Image {
            path: name.into(),
            message: e.to_string(),
        })?;
    Ok(bytes)
}

/// Every trace of a run as JSON: pixel positions and visibility per frame, whether it passed the
/// visibility filter, its stabilised positions and mean step, the moving flag, its mark (if any)
/// and whether its trace is in the answer.
pub fn traces_json(result: &TomResult) -> Value {
    let sel = &result.selection;
    let round = |v: f32| (v as f64 * 1000.0).round() / 1000.0;
    let pts = |trace: &[[f32; 2]]| -> Value {
        trace
            .iter()
            .map(|p| json!([round(p[0]), round(p[1])]))
            .collect()
    };
    let mark_of = |n: usize| {
        let role = |marks: &[crate::select::Mark], role: &str| {
            marks
                .iter()
                .find(|m| m.point == n)
                .map(|m| json!({"id": m.id, "role": role}))
        };
        role(&sel.positives, "positive").or_else(|| role(&sel.negatives, "negative"))
    };
    let traces: Vec<Value> = (0..result.tracks.num_points())
        .map(|n| {
            let k = sel.valid.iter().position(|&v| v == n);
            let mark = mark_of(n);
            let in_answer = mark.as_ref().is_some_and(|m| {
                result
                    .traces
                    .iter()
                    .any(|t| Some(t.trace.id as u64) == m["id"].as_u64())
            });
            json!({
                "index": n,
                "query": [round(result.queries[n][0]), round(result.queries[n][1])],
                "points": pts(&result.tracks.trace(n)),
                "visible": result.tracks.visible.iter().map(|f| f[n]).collect::<Vec<_>>(),
                "valid": k.is_some(),
                "stabilized": k.map(|k| pts(&sel.stabilized.tracks.trace(k))),
                "mean_step": k.map(|k| round(sel.lengths[k])),
                "moving": k.map(|k| sel.moving[k]),
                "mark": mark,
                "in_answer": in_answer,
            })
        })
        .collect();
    let failures: Vec<Value> = sel
        .stabilized
        .failures
        .iter()
        .map(|(t, e)| json!({"frame": t, "error": e.to_string()}))
        .collect();
    json!({
        "width": result.size.0,
        "height": result.size.1,
        "frames": result.tracks.num_frames(),
        "record": match result.kind { RecordKind::Tom => "tom", RecordKind::Som => "som" },
        "fallback": result.fallback,
        "camera_motion_removed": sel.stabilized.applied,
        "homography_failures": failures,
        "marks": result.marks.iter().zip(&result.mark_pixels).map(|(m, p)| json!({
            "id": m.id, "grid": [m.at.x, m.at.y], "pixel": [round(p[0]), round(p[1])],
        })).collect::<Vec<_>>(),
        "question": result.question,
        "answer": result.answer,
        "traces": traces,
    })
}

/// The conversation record of a run; `record_id` names the sample. ToM and SoM records show the
/// marked frame, except robot ToM records, whose question lists the marks as text and whose
/// image is the plain first frame.
pub fn conversation_record(
    result: &TomResult,
    record_id: &str,
    textual_marks: bool,
) -> ConversationRecord {
    let image = if result.kind == RecordKind::Tom && textual_marks {
        FIRST_FRAME_FILE
    } else {
        MARKED_FILE
    };
    ConversationRecord::new(
        record_id,
        image,
        result.question.clone(),
        result.answer.clone(),
    )
}

/// Writes every output of a run into `dir` (created if needed) and returns the written paths.
pub fn write_outputs(
    dir: &Path,
    frames: &[RgbImage],
    result: &TomResult,
    record: &ConversationRecord,
    extra: Value,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| TracesError::io(dir, e))?;
    let first = frames
        .first()
        .ok_or_else(|| TracesError::invalid("frames", "no frame to draw on"))?;
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: Vec<u8>| -> Result<()> {
        let path = dir.join(name);
        write_atomic(&path, &bytes)?;
        written.push(path);
        Ok(())
    };
    put(FIRST_FRAME_FILE, png_bytes(first, FIRST_FRAME_FILE)?)?;
    put(
        MARKED_FILE,
        png_bytes(&marked_frame(first, result)?, MARKED_FILE)?,
    )?;
    put(
        TRACE_PICTURE_FILE,
        png_bytes(&trace_picture(first, result)?, TRACE_PICTURE_FILE)?,
    )?;
    put(GIF_FILE, tracks_gif(frames, result, 100)?)?;
    let mut traces = traces_json(result);
    if let (Some(obj), Value::Object(more)) = (traces.as_object_mut(), extra) {
        obj.extend(more);
    }
    put(TRACES_FILE, serde_json::to_vec_pretty(&traces)?)?;
    put(RECORD_FILE, serde_json::to_vec_pretty(record)?)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lk::LucasKanade;
    use crate::pipeline::{run, TomConfig};
    use crate::synthetic::{Scene, SceneKind};

    #[test]
    fn writes_every_file_and_the_json_describes_every_trace() {
        let scene = Scene::generate(SceneKind::PanObjects, 160, 120, 6, 5);
        let config = TomConfig {
            grid_size: 10,
            task: "t".into(),
            ..Default::default()
        };
        let result = run(&scene.frames, &LucasKanade::default(), &config, &|_| {}).unwrap();
        let dir = std::env::temp_dir().join(format!("magma-traces-out-{}", std::process::id()));
        let record = conversation_record(&result, "clip", false);
        let written = write_outputs(
            &dir,
            &scene.frames,
            &result,
            &record,
            json!({"source": "synthetic"}),
        )
        .unwrap();
        assert_eq!(written.len(), 6);
        let traces: Value =
            serde_json::from_slice(&std::fs::read(dir.join(TRACES_FILE)).unwrap()).unwrap();
        assert_eq!(traces["traces"].as_array().unwrap().len(), 100);
        assert_eq!(traces["source"], "synthetic");
        assert_eq!(traces["traces"][0]["points"].as_array().unwrap().len(), 6);
        let back: ConversationRecord =
            serde_json::from_slice(&std::fs::read(dir.join(RECORD_FILE)).unwrap()).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.conversations[1].value, result.answer);
        // No temporary files left behind.
        assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
