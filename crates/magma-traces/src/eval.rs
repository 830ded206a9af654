//! The synthetic Trace-of-Mark benchmark: tracking accuracy (TAP-Vid), camera-motion homography
//! error and the moving/static split, per scene of [`crate::synthetic`].

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::camera::stabilize;
use crate::homography::{Homography, RansacConfig};
use crate::metrics::{tap_vid, TapVidMetrics};
use crate::select::{visible_majority, DataKind};
use crate::synthetic::{GroundTruth, Scene, SceneKind};
use crate::tracker::{grid_points, Tracker};

/// Benchmark settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    pub grid_size: usize,
    pub seed: u64,
    /// Thresholds of this data kind decide the camera test and the moving split.
    pub kind: DataKind,
}

impl Default for EvalConfig {
    /// 512×384 frames, 24 frames, 15×15 grid, video thresholds.
    fn default() -> Self {
        Self {
            width: 512,
            height: 384,
            frames: 24,
            grid_size: 15,
            seed: 0,
            kind: DataKind::Video,
        }
    }
}

/// Results on one scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneReport {
    pub scene: SceneKind,
    pub tap_vid: TapVidMetrics,
    /// Whether the camera-motion test fired.
    pub camera_motion_removed: bool,
    /// Mean distance (pixels) between where the applied frame→frame-0 map (identity when none)
    /// and the true one send the grid points, over frames 1…T−1.
    pub homography_error_px: f64,
    /// Frames whose homography failed.
    pub homography_failures: usize,
    /// Grid points on moving objects (ground truth) and predicted moving.
    pub moving_truth: usize,
    pub moving_predicted: usize,
    /// Precision and recall of the predicted moving points (`None` when undefined: nothing
    /// predicted, or nothing moving).
    pub moving_precision: Option<f64>,
    pub moving_recall: Option<f64>,
    /// Wall time of tracking, milliseconds per frame pair.
    pub track_ms_per_frame: f64,
}

impl EvalConfig {
    /// Renders a scene of this size, length and seed, with its query grid (frame 0) and the
    /// exact ground truth of those queries.
    pub fn render(&self, kind: SceneKind) -> (Scene, Vec<[f32; 2]>, GroundTruth) {
        let scene = Scene::generate(kind, self.width, self.height, self.frames, self.seed);
        let queries = grid_points(self.grid_size, self.width, self.height);
        let truth = scene.ground_truth(&queries);
        (scene, queries, truth)
    }
}

/// Renders one scene, tracks its grid and scores every stage.
pub fn evaluate_scene(
    kind: SceneKind,
    config: &EvalConfig,
    tracker: &dyn Tracker,
) -> crate::Result<SceneReport> {
    let (scene, queries, truth) = config.render(kind);
    let started = Instant::now();
    let tracks = tracker.track(&scene.frames, &queries, &|_| {})?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let metrics = tap_vid(&tracks, &truth.tracks, config.width, config.height);

    let params = config.kind.params();
    let valid = visible_majority(&tracks);
    let ransac = RansacConfig {
        seed: config.seed,
        ..Default::default()
    };
    let stabilized = stabilize(
        &tracks.subset(&valid),
        params.camera_rule,
        params.camera_threshold,
        &ransac,
    );
    let lengths = crate::camera::trace_lengths(&stabilized.tracks);
    let mut predicted = vec![false; queries.len()];
    for (k, &n) in valid.iter().enumerate() {
        predicted[n] = lengths[k] > params.foreground_threshold;
    }

    let mut error_sum = 0.0;
    let mut error_frames = 0;
    for t in 1..config.frames {
        let applied = stabilized
            .homographies
            .get(t)
            .copied()
            .flatten()
            .filter(|_| stabilized.applied)
            .unwrap_or_else(Homography::identity);
        let Some(true_map) = scene.camera[t].inverse() else {
            continue;
        };
        let per_point: f64 = queries
            .iter()
            .filter_map(|q| {
                let p = [q[0] as f64, q[1] as f64];
                let (a, b) = (applied.apply(p)?, true_map.apply(p)?);
                Some((a[0] - b[0]).hypot(a[1] - b[1]))
            })
            .sum::<f64>()
            / queries.len().max(1) as f64;
        error_sum += per_point;
        error_frames += 1;
    }

    let truth_count = truth.moving.iter().filter(|&&m| m).count();
    let predicted_count = predicted.iter().filter(|&&m| m).count();
    let both = truth
        .moving
        .iter()
        .zip(&predicted)
        .filter(|(&a, &b)| a && b)
        .count();
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    Ok(SceneReport {
        scene: kind,
        tap_vid: metrics,
        camera_motion_removed: stabilized.applied,
        homography_error_px: if error_frames > 0 {
            error_sum / error_frames as f64
        } else {
            0.0
        },
        homography_failures: stabilized.failures.len(),
        moving_truth: truth_count,
        moving_predicted: predicted_count,
        moving_precision: ratio(both, predicted_count),
        moving_recall: ratio(both, truth_count),
        track_ms_per_frame: elapsed / config.frames.saturating_sub(1).max(1) as f64,
    })
}

/// Markdown table of reports (metrics ×100, as TAP-Vid reports them).
pub fn markdown_table(reports: &[SceneReport]) -> String {
    let mut out = String::from(
        "| scene | δ_avg | OA | AJ | camera removed | H error (px) | moving P | moving R | ms/frame |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.2}", v));
    for r in reports {
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {} | {} | {:.1} |\n",
            r.scene.name(),
            100.0 * r.tap_vid.position_accuracy,
            100.0 * r.tap_vid.occlusion_accuracy,
            100.0 * r.tap_vid.average_jaccard,
            if r.camera_motion_removed { "yes" } else { "no" },
            r.homography_error_px,
            opt(r.moving_precision),
            opt(r.moving_recall),
            r.track_ms_per_frame,
        ));
    }
    out
}
