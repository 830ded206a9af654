//! The whole Trace-of-Mark pipeline on a window of frames: grid queries → tracking → selection →
//! the ToM record (or the SoM-only fallback).

use image::RgbImage;
use magma_actions::marks::MarkPosition;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::camera::CameraMotionRule;
use crate::error::{Result, TracesError};
use crate::homography::RansacConfig;
use crate::record::{
    clean_trace, som_text, to_grid, tom_text, truncate, CleanTrace, RecordOptions,
};
use crate::select::{select, DataKind, Fallback, Mark, Selection};
use crate::tracker::{grid_points, Tracker, Tracks};

/// Settings of one pipeline run.
#[derive(Debug, Clone, PartialEq)]
pub struct TomConfig {
    /// Query grid side `s` (s×s points on frame 0; Magma's demo: 15).
    pub grid_size: usize,
    /// Video or robot thresholds.
    pub kind: DataKind,
    /// Seed of every random choice (cluster counts, k-means, representatives, mark ids, RANSAC).
    pub seed: u64,
    /// Task text of the ToM question.
    pub task: String,
    /// Record format switches.
    pub record: RecordOptions,
    /// Overrides the kind's camera-motion rule.
    pub camera_rule: Option<CameraMotionRule>,
}

impl Default for TomConfig {
    fn default() -> Self {
        Self {
            grid_size: 15,
            kind: DataKind::Video,
            seed: 0,
            task: String::new(),
            record: RecordOptions::default(),
            camera_rule: None,
        }
    }
}

/// Which record the run produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// Trace-of-Mark: where the moving marks go next.
    Tom,
    /// Set-of-Mark only: locate the marks.
    Som,
}

/// Everything a run decided.
#[derive(Debug, Clone)]
pub struct TomResult {
    /// Size of the tracked frames.
    pub size: (u32, u32),
    /// Query points on frame 0.
    pub queries: Vec<[f32; 2]>,
    /// Raw tracks of every query.
    pub tracks: Tracks,
    /// Visibility filter, camera-motion removal, split and marks.
    pub selection: Selection,
    /// Every mark with its truncated grid start (positives then negatives).
    pub marks: Vec<MarkPosition>,
    /// Pixel start of every mark, in the order of `marks`.
    pub mark_pixels: Vec<[f32; 2]>,
    /// Positive marks whose traces made it into the ToM answer (sorted by id).
    pub traces: Vec<CleanTrace>,
    /// ToM or SoM.
    pub kind: RecordKind,
    /// Why the run fell back to SoM, if it did.
    pub fallback: Option<Fallback>,
    /// The user turn.
    pub question: String,
    /// The assistant turn.
    pub answer: String,
}

/// Runs the pipeline on `frames` (all the same size) with `tracker`, calling `progress(t)` per
/// tracked frame.
///
/// ```
/// use magma_traces::lk::LucasKanade;
/// use magma_traces::pipeline::{run, RecordKind, TomConfig};
/// use magma_traces::synthetic::{Scene, SceneKind};
///
/// let scene = Scene::generate(SceneKind::Static, 96, 64, 4, 1);
/// let result = run(&scene.frames, &LucasKanade::default(), &TomConfig::default(), &|_| {}).unwrap();
/// // Nothing moves: Set-of-Mark fallback.
/// assert_eq!(result.kind, RecordKind::Som);
/// assert!(result.question.ends_with("Please locate all the numerical marks in the image.\n"));
/// ```
pub fn run(
    frames: &[RgbImage],
    tracker: &dyn Tracker,
    config: &TomConfig,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<TomResult> {
    let Some(first) = frames.first() else {
        return Err(TracesError::invalid("frames", "the window holds no frame"));
    };
    if config.grid_size == 0 {
        return Err(TracesError::invalid(
            "grid",
            "the query grid needs at least 1×1 points",
        ));
    }
    let size = first.dimensions();
    let queries = grid_points(config.grid_size, size.0, size.1);
    let tracks = tracker.track(frames, &queries, progress)?;
    let mut params = config.kind.params();
    if let Some(rule) = config.camera_rule {
        params.camera_rule = rule;
    }
    let ransac = RansacConfig {
        seed: config.seed,
        ..RansacConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(config.seed);
    let selection = select(&tracks, &params, &ransac, &mut rng);
    let all_marks: Vec<Mark> = selection
        .positives
        .iter()
        .chain(&selection.negatives)
        .copied()
        .collect();
    let mark_pixels: Vec<[f32; 2]> = all_marks
        .iter()
        .map(|m| tracks.points[0][m.point])
        .collect();
    let marks: Vec<MarkPosition> = all_marks
        .iter()
        .zip(&mark_pixels)
        .map(|(m, &p)| MarkPosition {
            id: m.id as u32,
            at: truncate(to_grid(p, size.0, size.1)),
        })
        .collect();
    let mut traces = Vec::new();
    let mut fallback = selection.fallback;
    if fallback.is_none() {
        let mut positives = selection.positives.clone();
        positives.sort_by_key(|m| m.id);
        traces = positives
            .iter()
            .filter_map(|m| {
                let trace = selection.stabilized_trace(m.point)?;
                clean_trace(
                    m.id as u32,
                    &trace,
                    size,
                    config.kind,
                    params.speed_threshold,
                    &config.record,
                )
            })
            .collect();
        if traces.is_empty() {
            fallback = Some(Fallback::NoMarkMovesEnough);
        }
    }
    let (kind, (question, answer)) = match fallback {
        None => (
            RecordKind::Tom,
            tom_text(&marks, &traces, &config.task, config.kind, &config.record),
        ),
        Some(_) => (RecordKind::Som, som_text(&marks)),
    };
    Ok(TomResult {
        size,
        queries,
        tracks,
        selection,
        marks,
        mark_pixels,
        traces,
        kind,
        fallback,
        question,
        answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lk::LucasKanade;
    use crate::synthetic::{Scene, SceneKind};

    #[test]
    fn moving_objects_give_a_tom_record_with_moving_marks() {
        let scene = Scene::generate(SceneKind::PanObjects, 256, 192, 10, 4);
        let config = TomConfig {
            task: "move the discs".into(),
            seed: 3,
            ..Default::default()
        };
        let result = run(&scene.frames, &LucasKanade::default(), &config, &|_| {}).unwrap();
        assert_eq!(result.kind, RecordKind::Tom, "{:?}", result.fallback);
        assert!(result.selection.stabilized.applied);
        let gt = scene.ground_truth(&result.queries);
        // Marks whose traces are in the answer include moving-object points. Not all of them:
        // Lucas–Kanade drags background points along with an object that passes over them, and
        // those count as moving too (see the moving-precision column of `magma tom-eval`).
        let on_movers = result
            .traces
            .iter()
            .filter(|t| {
                let mark = result
                    .selection
                    .positives
                    .iter()
                    .find(|m| m.id as u32 == t.trace.id);
                mark.is_some_and(|m| gt.moving[m.point])
            })
            .count();
        assert!(on_movers >= 1, "{on_movers} of {}", result.traces.len());
        assert!(result
            .question
            .contains("The person is doing: move the discs."));
        assert!(result
            .answer
            .contains("should be moved, and their future positions are:\n\n"));
    }

    #[test]
    fn empty_windows_and_zero_grids_are_errors() {
        let lk = LucasKanade::default();
        assert!(run(&[], &lk, &TomConfig::default(), &|_| {}).is_err());
        let scene = Scene::generate(SceneKind::Static, 32, 32, 2, 1);
        let config = TomConfig {
            grid_size: 0,
            ..Default::default()
        };
        assert!(run(&scene.frames, &lk, &config, &|_| {}).is_err());
    }

    #[test]
    fn a_single_frame_is_a_som_record() {
        let scene = Scene::generate(SceneKind::Pan, 64, 64, 1, 1);
        let result = run(
            &scene.frames,
            &LucasKanade::default(),
            &TomConfig::default(),
            &|_| {},
        )
        .unwrap();
        assert_eq!(result.kind, RecordKind::Som);
        assert!(result.answer.starts_with("Mark "));
    }
}
