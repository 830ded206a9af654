//! TAP-Vid point-tracking metrics ("first" query mode): position accuracy δ_avg, occlusion
//! accuracy and average Jaccard, on coordinates scaled to a 256×256 raster.

use serde::{Deserialize, Serialize};

use crate::tracker::Tracks;

/// Pixel thresholds on the 256 raster, compared strictly (squared distance < threshold²).
pub const THRESHOLDS: [f32; 5] = [1.0, 2.0, 4.0, 8.0, 16.0];

/// TAP-Vid metrics of one video, each in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TapVidMetrics {
    /// δ_avg^vis: share of ground-truth-visible points within each threshold, averaged.
    pub position_accuracy: f64,
    /// Share of evaluated (point, frame) pairs whose predicted visibility is right.
    pub occlusion_accuracy: f64,
    /// Average Jaccard: TP / (GT visible + FP), averaged over thresholds.
    pub average_jaccard: f64,
    /// Per-threshold position accuracy, in [`THRESHOLDS`] order.
    pub within: [f64; 5],
}

/// Scores `pred` against `truth` for a `width`×`height` video, evaluating every frame after the
/// query frame 0 (TAP-Vid "first" mode, queries on frame 0).
///
/// ```
/// use magma_traces::metrics::tap_vid;
/// use magma_traces::tracker::Tracks;
/// let truth = Tracks { points: vec![vec![[10.0, 10.0]], vec![[20.0, 10.0]]], visible: vec![vec![true], vec![true]] };
/// let mut pred = truth.clone();
/// pred.points[1][0] = [23.0, 10.0]; // 3 px off on a 256-px-wide frame: within 4, 8 and 16
/// let m = tap_vid(&pred, &truth, 256, 256);
/// assert!((m.position_accuracy - 0.6).abs() < 1e-12);
/// assert_eq!(m.occlusion_accuracy, 1.0);
/// ```
pub fn tap_vid(pred: &Tracks, truth: &Tracks, width: u32, height: u32) -> TapVidMetrics {
    let (sx, sy) = (256.0 / width as f32, 256.0 / height as f32);
    let mut gt_visible = 0usize;
    let mut evaluated = 0usize;
    let mut occlusion_right = 0usize;
    let mut within = [0usize; 5];
    let mut true_pos = [0usize; 5];
    let mut false_pos = [0usize; 5];
    let frames = pred.num_frames().min(truth.num_frames());
    for t in 1..frames {
        let n = pred.points[t].len().min(truth.points[t].len());
        for i in 0..n {
            let (p, g) = (pred.points[t][i], truth.points[t][i]);
            let (pv, gv) = (pred.visible[t][i], truth.visible[t][i]);
            evaluated += 1;
            occlusion_right += usize::from(pv == gv);
            let d2 = ((p[0] - g[0]) * sx).powi(2) + ((p[1] - g[1]) * sy).powi(2);
            gt_visible += usize::from(gv);
            for (k, thr) in THRESHOLDS.iter().enumerate() {
                let close = d2 < thr * thr;
                if gv && close {
                    within[k] += 1;
                }
                if pv && gv && close {
                    true_pos[k] += 1;
                } else if pv {
                    false_pos[k] += 1;
                }
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let within: [f64; 5] = std::array::from_fn(|k| ratio(within[k], gt_visible));
    let jaccard: Vec<f64> = (0..5)
        .map(|k| ratio(true_pos[k], gt_visible + false_pos[k]))
        .collect();
    TapVidMetrics {
        position_accuracy: within.iter().sum::<f64>() / 5.0,
        occlusion_accuracy: ratio(occlusion_right, evaluated),
        average_jaccard: jaccard.iter().sum::<f64>() / 5.0,
        within,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_jaccard_and_occlusion() {
        // Two points, frames 0..2; frame 0 is not evaluated.
        let truth = Tracks {
            points: vec![vec![[0.0, 0.0]; 2], vec![[100.0, 100.0], [50.0, 50.0]]],
            visible: vec![vec![true, true], vec![true, false]],
        };
        let pred = Tracks {
            // Point 0 is 1.5 px off on a 512×512 frame = 0.75 raster px: within every threshold.
            // Point 1 is predicted visible though occluded: a false positive at every threshold.
            points: vec![vec![[0.0, 0.0]; 2], vec![[101.5, 100.0], [50.0, 50.0]]],
            visible: vec![vec![true, true], vec![true, true]],
        };
        let m = tap_vid(&pred, &truth, 512, 512);
        assert_eq!(m.position_accuracy, 1.0);
        assert_eq!(m.occlusion_accuracy, 0.5);
        // TP 1 / (GT visible 1 + FP 1) at every threshold.
        assert_eq!(m.average_jaccard, 0.5);
    }

    #[test]
    fn thresholds_are_strict() {
        let truth = Tracks {
            points: vec![vec![[0.0, 0.0]], vec![[0.0, 0.0]]],
            visible: vec![vec![true], vec![true]],
        };
        let pred = Tracks {
            points: vec![vec![[0.0, 0.0]], vec![[2.0, 0.0]]],
            visible: vec![vec![true], vec![true]],
        };
        let m = tap_vid(&pred, &truth, 256, 256);
        // Exactly 2 px away: not within 1 or 2, within 4, 8, 16.
        assert_eq!(m.within, [0.0, 0.0, 1.0, 1.0, 1.0]);
        assert!((m.average_jaccard - 0.6).abs() < 1e-12);
    }
}
