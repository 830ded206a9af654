//! Camera-motion detection and removal (Alg. 2 lines 2–4): when most points move, map every later
//! frame's points into frame 0's coordinates by a per-frame RANSAC homography.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::homography::{find_homography_ransac, Homography, HomographyError, RansacConfig};
use crate::tracker::Tracks;

/// When to remove camera motion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CameraMotionRule {
    /// Only when the camera-motion test fires (the reference's rule for most datasets).
    #[default]
    Auto,
    /// Always (the reference's rule for Ego4D, Epic-Kitchens and Exo-Ego4D).
    Always,
    /// Never.
    Never,
}

/// Share of points that must move for the camera-motion test to fire (strictly more than 80%).
pub const CAMERA_MOTION_SHARE: f32 = 0.8;

/// Mean step length of every trace, in pixels: mean over t of ‖p(t+1) − p(t)‖.
///
/// Visibility is ignored, as in the reference's `visual_trace_length` (its visibility-weighted
/// mean is commented out).
///
/// ```
/// use magma_traces::camera::trace_lengths;
/// use magma_traces::tracker::Tracks;
/// let tracks = Tracks {
///     points: vec![vec![[0.0, 0.0]], vec![[3.0, 4.0]], vec![[3.0, 4.0]]],
///     visible: vec![vec![true]; 3],
/// };
/// assert_eq!(trace_lengths(&tracks), vec![2.5]);
/// ```
pub fn trace_lengths(tracks: &Tracks) -> Vec<f32> {
    let (t_len, n) = (tracks.num_frames(), tracks.num_points());
    if t_len < 2 {
        return vec![0.0; n];
    }
    (0..n)
        .map(|i| {
            let total: f32 = tracks
                .points
                .windows(2)
                .map(|w| (w[1][i][0] - w[0][i][0]).hypot(w[1][i][1] - w[0][i][1]))
                .sum();
            total / (t_len - 1) as f32
        })
        .collect()
}

/// The camera-motion test: more than 80% of the traces have a mean step longer than `threshold`
/// pixels (training data: 1 px; the Alg. 2 demo: 0.5 px).
///
/// ```
/// use magma_traces::camera::camera_motion_detected;
/// assert!(camera_motion_detected(&[2.0, 2.0, 2.0, 2.0, 2.0, 0.1], 1.0) == true); // 5/6 > 0.8
/// assert!(camera_motion_detected(&[2.0, 2.0, 2.0, 2.0, 0.1], 1.0) == false); // 4/5 is not > 0.8
/// ```
pub fn camera_motion_detected(lengths: &[f32], threshold: f32) -> bool {
    let moving = lengths.iter().filter(|&&l| l > threshold).count();
    !lengths.is_empty() && moving as f32 > CAMERA_MOTION_SHARE * lengths.len() as f32
}

/// Traces after camera-motion removal, with what was done per frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Stabilized {
    /// The traces in frame 0's coordinates (unchanged where no homography was applied).
    pub tracks: Tracks,
    /// Whether camera motion was removed at all.
    pub applied: bool,
    /// Per frame, the homography from that frame to frame 0 (frame 0: identity; `None` where
    /// estimation failed or nothing was applied).
    pub homographies: Vec<Option<Homography>>,
    /// Frames whose homography could not be estimated, with the reason; their points are kept
    /// as tracked.
    pub failures: Vec<(usize, HomographyError)>,
}

/// Maps each frame's points into frame 0's coordinates by a RANSAC homography fitted on the
/// points visible in that frame (threshold 4 px, seed `ransac.seed + t` for frame t).
///
/// The reference fits on all points, as CoTracker still estimates occluded ones; Lucas–Kanade
/// leaves lost points behind, so only visible points are used here. Where a frame's homography
/// fails the frame keeps its original points and the failure is recorded (the reference silently
/// drops such frames, misaligning traces and visibility).
pub fn remove_camera_motion(tracks: &Tracks, ransac: &RansacConfig) -> Stabilized {
    let reference: Vec<[f64; 2]> = tracks
        .points
        .first()
        .map(|f| f.iter().map(|p| [p[0] as f64, p[1] as f64]).collect())
        .unwrap_or_default();
    let fits: Vec<Result<Homography, HomographyError>> = (1..tracks.num_frames())
        .into_par_iter()
        .map(|t| {
            let (src, dst): (Vec<[f64; 2]>, Vec<[f64; 2]>) = tracks.points[t]
                .iter()
                .zip(&reference)
                .zip(&tracks.visible[t])
                .filter(|(_, &v)| v)
                .map(|((p, r), _)| ([p[0] as f64, p[1] as f64], *r))
                .unzip();
            let config = RansacConfig {
                seed: ransac.seed.wrapping_add(t as u64),
                ..*ransac
            };
            find_homography_ransac(&src, &dst, &config).map(|fit| fit.homography)
        })
        .collect();
    let mut out = tracks.clone();
    let mut homographies = vec![Some(Homography::identity())];
    let mut failures = Vec::new();
    for (k, fit) in fits.into_iter().enumerate() {
        let t = k + 1;
        match fit {
            Ok(h) => {
                for p in out.points[t].iter_mut() {
                    if let Some(q) = h.apply([p[0] as f64, p[1] as f64]) {
                        *p = [q[0] as f32, q[1] as f32];
                    }
                }
                homographies.push(Some(h));
            }
            Err(e) => {
                homographies.push(None);
                failures.push((t, e));
            }
        }
    }
    Stabilized {
        tracks: out,
        applied: true,
        homographies,
        failures,
    }
}

/// Applies `rule`: tests for camera motion (mean step > `threshold` px for more than 80% of the
/// traces) and removes it when the rule says so; otherwise returns the traces unchanged.
pub fn stabilize(
    tracks: &Tracks,
    rule: CameraMotionRule,
    threshold: f32,
    ransac: &RansacConfig,
) -> Stabilized {
    let apply = match rule {
        CameraMotionRule::Always => true,
        CameraMotionRule::Never => false,
        CameraMotionRule::Auto => camera_motion_detected(&trace_lengths(tracks), threshold),
    };
    if apply {
        remove_camera_motion(tracks, ransac)
    } else {
        Stabilized {
            tracks: tracks.clone(),
            applied: false,
            homographies: vec![None; tracks.num_frames()],
            failures: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panned(n_frames: usize, shift: f32, movers: usize) -> Tracks {
        let grid: Vec<[f32; 2]> = (0..36)
            .map(|i| [10.0 + 20.0 * (i % 6) as f32, 10.0 + 20.0 * (i / 6) as f32])
            .collect();
        let points = (0..n_frames)
            .map(|t| {
                grid.iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let extra = if i < movers { 5.0 * t as f32 } else { 0.0 };
                        [
                            p[0] + shift * t as f32 + extra,
                            p[1] - 0.5 * shift * t as f32,
                        ]
                    })
                    .collect()
            })
            .collect();
        Tracks {
            points,
            visible: vec![vec![true; 36]; n_frames],
        }
    }

    #[test]
    fn removes_a_pan_and_keeps_object_motion() {
        let tracks = panned(5, 3.0, 4);
        let out = stabilize(
            &tracks,
            CameraMotionRule::Auto,
            1.0,
            &RansacConfig::default(),
        );
        assert!(out.applied && out.failures.is_empty());
        let lengths = trace_lengths(&out.tracks);
        for (i, l) in lengths.iter().enumerate() {
            let want = if i < 4 { 5.0 } else { 0.0 };
            assert!((l - want).abs() < 1e-3, "trace {i}: {l}");
        }
    }

    #[test]
    fn auto_leaves_a_still_camera_alone() {
        let tracks = panned(5, 0.0, 4);
        let out = stabilize(
            &tracks,
            CameraMotionRule::Auto,
            1.0,
            &RansacConfig::default(),
        );
        assert!(!out.applied);
        assert_eq!(out.tracks, tracks);
    }

    #[test]
    fn failed_frames_keep_their_points() {
        let mut tracks = panned(4, 3.0, 0);
        // Frame 2: only three visible points, so no homography there.
        for (i, v) in tracks.visible[2].iter_mut().enumerate() {
            *v = i < 3;
        }
        let out = stabilize(
            &tracks,
            CameraMotionRule::Always,
            1.0,
            &RansacConfig::default(),
        );
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].0, 2);
        assert_eq!(out.tracks.points[2], tracks.points[2]);
        assert!(out.homographies[2].is_none() && out.homographies[3].is_some());
        assert!((out.tracks.points[3][10][0] - tracks.points[0][10][0]).abs() < 1e-3);
    }
}
