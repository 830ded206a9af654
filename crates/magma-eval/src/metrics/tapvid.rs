//! TAP-Vid point tracking (`tapnet` `evaluation_datasets.compute_tapvid_metrics`): δ_avg over
//! visible points, occlusion accuracy and average Jaccard, per video on the 256 × 256 raster,
//! then averaged over videos. The thresholds and the counting rule are `magma-traces`'
//! ([`magma_traces::metrics`]), which scores the "first" mode with every query on frame 0; here
//! queries may sit on any frame: "first" mode evaluates the frames after each query's frame,
//! "strided" every frame but the query's own.

use serde::Deserialize;

use magma_traces::metrics::THRESHOLDS;

use crate::scores::{mean, Scores};

/// One reference video.
#[derive(Debug, Clone, Deserialize)]
pub struct TapVidReference {
    pub video_id: String,
    /// `first` or `strided`.
    pub query_mode: String,
    #[serde(default)]
    pub video_size: Option<[f64; 2]>,
    #[serde(default)]
    pub num_frames: Option<usize>,
    /// `[t, y, x]` per query.
    pub query_points: Vec<[f64; 3]>,
    /// `[n][T][x, y]`.
    pub target_points: Vec<Vec<[f64; 2]>>,
    /// `[n][T]`, true = occluded.
    pub occluded: Vec<Vec<bool>>,
}

/// One predicted video.
#[derive(Debug, Clone, Deserialize)]
pub struct TapVidPrediction {
    pub video_id: String,
    pub pred_tracks: Vec<Vec<[f64; 2]>>,
    pub pred_occluded: Vec<Vec<bool>>,
}

/// Metrics of one video, fractions in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoMetrics {
    pub average_pts_within_thresh: f64,
    pub occlusion_accuracy: f64,
    pub average_jaccard: f64,
}

/// Scores one video; shapes that do not agree are an error message.
pub fn score_video(r: &TapVidReference, p: &TapVidPrediction) -> Result<VideoMetrics, String> {
    let n = r.query_points.len();
    if r.target_points.len() != n || r.occluded.len() != n {
        return Err(format!(
            "video {}: {n} queries but {} target tracks and {} occlusion rows",
            r.video_id,
            r.target_points.len(),
            r.occluded.len()
        ));
    }
    if p.pred_tracks.len() != n || p.pred_occluded.len() != n {
        return Err(format!(
            "video {}: {n} queries but {} predicted tracks and {} predicted occlusion rows",
            r.video_id,
            p.pred_tracks.len(),
            p.pred_occluded.len()
        ));
    }
    let strided = match r.query_mode.as_str() {
        "first" => false,
        "strided" => true,
        other => {
            return Err(format!(
                "video {}: unknown query_mode `{other}` (first, strided)",
                r.video_id
            ))
        }
    };
    let (mut evaluated, mut occ_right, mut gt_visible) = (0usize, 0usize, 0usize);
    let mut within = [0usize; 5];
    let mut true_pos = [0usize; 5];
    let mut false_pos = [0usize; 5];
    for i in 0..n {
        let frames = r.target_points[i].len();
        if r.occluded[i].len() != frames
            || p.pred_tracks[i].len() != frames
            || p.pred_occluded[i].len() != frames
        {
            return Err(format!(
                "video {}: track {i} has frame counts that disagree",
                r.video_id
            ));
        }
        // the query frame is a float in the data; its integer part indexes the frame
        let query_t = r.query_points[i][0].round() as i64;
        for t in 0..frames {
            let ti = t as i64;
            let evaluate = if strided { ti != query_t } else { ti > query_t };
            if !evaluate {
                continue;
            }
            let gv = !r.occluded[i][t];
            let pv = !p.pred_occluded[i][t];
            evaluated += 1;
            occ_right += usize::from(gv == pv);
            gt_visible += usize::from(gv);
            let (g, q) = (r.target_points[i][t], p.pred_tracks[i][t]);
            let d2 = (q[0] - g[0]).powi(2) + (q[1] - g[1]).powi(2);
            for (k, thr) in THRESHOLDS.iter().enumerate() {
                let close = d2 < f64::from(*thr).powi(2);
                within[k] += usize::from(gv && close);
                if pv && gv && close {
                    true_pos[k] += 1;
                } else if pv {
                    false_pos[k] += 1;
                }
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(VideoMetrics {
        average_pts_within_thresh: (0..5).map(|k| ratio(within[k], gt_visible)).sum::<f64>() / 5.0,
        occlusion_accuracy: ratio(occ_right, evaluated),
        average_jaccard: (0..5)
            .map(|k| ratio(true_pos[k], gt_visible + false_pos[k]))
            .sum::<f64>()
            / 5.0,
    })
}

/// Per query mode (`first`, `strided`) and overall: `average_jaccard`,
/// `position_accuracy` (δ_avg), `occlusion_accuracy`, means over videos, in percent.
pub fn score(pairs: &[(TapVidReference, Option<TapVidPrediction>)]) -> Result<Scores, String> {
    let mut rows = Vec::new();
    for (r, p) in pairs {
        let m = match p {
            Some(p) => score_video(r, p)?,
            None => VideoMetrics {
                average_pts_within_thresh: 0.0,
                occlusion_accuracy: 0.0,
                average_jaccard: 0.0,
            },
        };
        rows.push((r.query_mode.as_str(), m));
    }
    let summarise = |rows: &[&(&str, VideoMetrics)]| {
        let mut s = Scores::new();
        let col = |f: fn(&VideoMetrics) -> f64| {
            100.0 * mean(&rows.iter().map(|r| f(&r.1)).collect::<Vec<_>>())
        };
        s.insert("average_jaccard", col(|m| m.average_jaccard));
        s.insert("position_accuracy", col(|m| m.average_pts_within_thresh));
        s.insert("occlusion_accuracy", col(|m| m.occlusion_accuracy));
        s.insert("videos", rows.len() as f64);
        s
    };
    let mut scores = Scores::new();
    for mode in ["first", "strided"] {
        let selected: Vec<_> = rows.iter().filter(|r| r.0 == mode).collect();
        if !selected.is_empty() {
            scores.insert_group(mode, summarise(&selected));
        }
    }
    let all: Vec<_> = rows.iter().collect();
    for (k, node) in summarise(&all).entries() {
        if let crate::scores::Node::Value(v) = node {
            scores.insert(k.clone(), *v);
        }
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use magma_traces::tracker::Tracks;

    /// With every query on frame 0 in "first" mode, the scores equal magma-traces' `tap_vid`.
    #[test]
    fn agrees_with_magma_traces_on_frame_zero_queries() {
        let truth_pts = [
            [[10.0, 10.0], [12.0, 11.0], [15.0, 14.0], [20.0, 18.0]],
            [[100.0, 50.0], [101.0, 52.0], [103.0, 55.0], [110.0, 60.0]],
        ];
        let pred_pts = [
            [[10.0, 10.0], [12.5, 11.0], [18.0, 14.0], [40.0, 18.0]],
            [[100.0, 50.0], [101.0, 57.0], [103.0, 55.5], [111.0, 60.0]],
        ];
        let truth_occ = [[false, false, true, false], [false, false, false, true]];
        let pred_occ = [[false, false, false, false], [false, true, false, true]];
        let reference = TapVidReference {
            video_id: "v".into(),
            query_mode: "first".into(),
            video_size: Some([256.0, 256.0]),
            num_frames: Some(4),
            query_points: vec![[0.0, 10.0, 10.0], [0.0, 50.0, 100.0]],
            target_points: truth_pts.iter().map(|t| t.to_vec()).collect(),
            occluded: truth_occ.iter().map(|o| o.to_vec()).collect(),
        };
        let prediction = TapVidPrediction {
            video_id: "v".into(),
            pred_tracks: pred_pts.iter().map(|t| t.to_vec()).collect(),
            pred_occluded: pred_occ.iter().map(|o| o.to_vec()).collect(),
        };
        let ours = score_video(&reference, &prediction).unwrap();
        // magma-traces lays tracks out frame-major
        let frame_major = |pts: &[[[f64; 2]; 4]; 2], occ: &[[bool; 4]; 2]| Tracks {
            points: (0..4)
                .map(|t| {
                    pts.iter()
                        .map(|p| [p[t][0] as f32, p[t][1] as f32])
                        .collect()
                })
                .collect(),
            visible: (0..4)
                .map(|t| occ.iter().map(|o| !o[t]).collect())
                .collect(),
        };
        let theirs = magma_traces::metrics::tap_vid(
            &frame_major(&pred_pts, &pred_occ),
            &frame_major(&truth_pts, &truth_occ),
            256,
            256,
        );
        assert!((ours.average_jaccard - theirs.average_jaccard).abs() < 1e-12);
        assert!((ours.average_pts_within_thresh - theirs.position_accuracy).abs() < 1e-12);
        assert!((ours.occlusion_accuracy - theirs.occlusion_accuracy).abs() < 1e-12);
    }

    #[test]
    fn strided_mode_skips_only_the_query_frame() {
        let reference = TapVidReference {
            video_id: "v".into(),
            query_mode: "strided".into(),
            video_size: None,
            num_frames: None,
            query_points: vec![[1.0, 0.0, 0.0]],
            target_points: vec![vec![[0.0, 0.0]; 3]],
            occluded: vec![vec![false; 3]],
        };
        // frame 0 (before the query) is 2 px off: within 4, 8, 16 only
        let prediction = TapVidPrediction {
            video_id: "v".into(),
            pred_tracks: vec![vec![[2.0, 0.0], [50.0, 50.0], [0.0, 0.0]]],
            pred_occluded: vec![vec![false; 3]],
        };
        let m = score_video(&reference, &prediction).unwrap();
        // frames 0 and 2 evaluated: (3/5 + 5/5) / 2 = 0.8
        assert!((m.average_pts_within_thresh - 0.8).abs() < 1e-12);
        let mut first = reference.clone();
        first.query_mode = "first".into();
        assert_eq!(
            score_video(&first, &prediction)
                .unwrap()
                .average_pts_within_thresh,
            1.0
        );
    }
}
