//! Mark selection (Alg. 2 lines 5–7, training-data order of `data/conversations.py`): keep traces
//! visible in more than half the frames, remove camera motion, split moving (foreground) from
//! static (background) traces, cluster each side with k-means and keep one random trace per
//! cluster, then number the kept traces with a random permutation.

use std::ops::RangeInclusive;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::camera::{stabilize, trace_lengths, CameraMotionRule, Stabilized};
use crate::homography::RansacConfig;
use crate::kmeans::kmeans;
use crate::tracker::Tracks;

/// The kind of data, which fixes the reference's thresholds and cluster counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataKind {
    /// Human videos (Ego4D, Something-Something v2, Epic-Kitchens, YouCook2).
    #[default]
    Video,
    /// Robot episodes (Magma-OXE-ToM).
    Robot,
}

/// Thresholds and cluster counts of one [`DataKind`].
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionParams {
    /// Camera-motion test: mean step (px) a trace must exceed (1 px in the training code).
    pub camera_threshold: f32,
    /// When to remove camera motion.
    pub camera_rule: CameraMotionRule,
    /// Mean step (px, after camera-motion removal) above which a trace is foreground.
    pub foreground_threshold: f32,
    /// Number of foreground clusters, drawn uniformly.
    pub positive_clusters: RangeInclusive<usize>,
    /// Number of background clusters, drawn uniformly.
    pub negative_clusters: RangeInclusive<usize>,
    /// Mean step on the 256 grid below which a positive mark gets no trace in the answer.
    pub speed_threshold: f32,
}

impl DataKind {
    /// The reference's settings for this kind of data.
    ///
    /// ```
    /// use magma_traces::select::DataKind;
    /// assert_eq!(DataKind::Video.params().foreground_threshold, 3.0);
    /// assert_eq!(DataKind::Robot.params().negative_clusters, 4..=9);
    /// ```
    pub fn params(self) -> SelectionParams {
        match self {
            // Video: foreground threshold hard-coded to 3 px; clusters randint(2, 6) / randint(6, 15);
            // positive speed threshold 2 (Ego4D / Sth-v2 settings.yaml).
            DataKind::Video => SelectionParams {
                camera_threshold: 1.0,
                camera_rule: CameraMotionRule::Auto,
                foreground_threshold: 3.0,
                positive_clusters: 2..=5,
                negative_clusters: 6..=14,
                speed_threshold: 2.0,
            },
            // Robot (OXE): foreground threshold 1, clusters 2..4 / 4..9, speed threshold 1.
            DataKind::Robot => SelectionParams {
                camera_threshold: 1.0,
                camera_rule: CameraMotionRule::Auto,
                foreground_threshold: 1.0,
                positive_clusters: 2..=4,
                negative_clusters: 4..=9,
                speed_threshold: 1.0,
            },
        }
    }

    /// Subject of the ToM question: "person" for videos, "robot" for robot data.
    pub fn subject(self) -> &'static str {
        match self {
            DataKind::Video => "person",
            DataKind::Robot => "robot",
        }
    }
}

/// A numbered mark on a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// 1-based mark number drawn on the image.
    pub id: usize,
    /// Index of the trace among all tracked points.
    pub point: usize,
}

/// Why the pipeline fell back to a Set-of-Mark record (no trace to predict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// At most one trace is visible in more than half of the frames.
    TooFewVisible,
    /// At most one trace moves more than the foreground threshold (a static video).
    NothingMoves,
    /// No background trace to cluster.
    NoBackground,
    /// No positive mark survived the 256-grid cleaning and speed threshold.
    NoMarkMovesEnough,
}

/// What selection decided.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Indices (into all tracked points) of the traces visible in more than half of the frames.
    pub valid: Vec<usize>,
    /// Camera-motion removal over the valid traces (indexed like `valid`).
    pub stabilized: Stabilized,
    /// Mean step (px) of each valid trace after camera-motion removal.
    pub lengths: Vec<f32>,
    /// Whether each valid trace is foreground.
    pub moving: Vec<bool>,
    /// Marks on foreground traces (ToM) — or the random "positive" draws of the SoM fallback.
    pub positives: Vec<Mark>,
    /// Marks on background traces.
    pub negatives: Vec<Mark>,
    /// `Some` when the record becomes a SoM-only record.
    pub fallback: Option<Fallback>,
}

impl Selection {
    /// Stabilised trace of tracked point `point`, if it is valid.
    pub fn stabilized_trace(&self, point: usize) -> Option<Vec<[f32; 2]>> {
        let k = self.valid.iter().position(|&v| v == point)?;
        Some(self.stabilized.tracks.trace(k))
    }
}

/// Indices of the points visible in strictly more than half of the frames.
pub fn visible_majority(tracks: &Tracks) -> Vec<usize> {
    let t = tracks.num_frames() as f32;
    (0..tracks.num_points())
        .filter(|&n| {
            let seen = tracks.visible.iter().filter(|f| f[n]).count();
            seen as f32 > 0.5 * t
        })
        .collect()
}

/// One random member of each k-means cluster of the given traces (flattened T·2 vectors).
fn representatives<R: Rng + ?Sized>(
    tracks: &Tracks,
    members: &[usize],
    k: usize,
    rng: &mut R,
) -> Vec<usize> {
    let rows: Vec<Vec<f32>> = members
        .iter()
        .map(|&m| tracks.trace(m).into_iter().flatten().collect())
        .collect();
    let ids = kmeans(&rows, k, rng);
    // The reference's "sample 20%" reads max(1, min(1, …)): exactly one per cluster.
    (0..k.min(members.len()))
        .filter_map(|cluster| {
            let in_cluster: Vec<usize> =
                (0..members.len()).filter(|&i| ids[i] == cluster).collect();
            (!in_cluster.is_empty())
                .then(|| members[in_cluster[rng.random_range(0..in_cluster.len())]])
        })
        .collect()
}

/// Numbers `positives` then `negatives` (point indices) by a random permutation of 1..=total,
/// as `som_prompting` does.
pub fn number_marks<R: Rng + ?Sized>(
    positives: &[usize],
    negatives: &[usize],
    rng: &mut R,
) -> (Vec<Mark>, Vec<Mark>) {
    let mut ids: Vec<usize> = (1..=positives.len() + negatives.len()).collect();
    ids.shuffle(rng);
    let (pos_ids, neg_ids) = ids.split_at(positives.len());
    let pair = |points: &[usize], ids: &[usize]| {
        points
            .iter()
            .zip(ids)
            .map(|(&point, &id)| Mark { id, point })
            .collect()
    };
    (pair(positives, pos_ids), pair(negatives, neg_ids))
}

/// The SoM-only fallback's marks: 2–5 "positive" and 6–14 "negative" traces drawn uniformly with
/// replacement from all tracked points (the reference's `_construct_conv_som`; the ranges are the
/// video ones whatever the data kind).
fn fallback_marks<R: Rng + ?Sized>(num_points: usize, rng: &mut R) -> (Vec<Mark>, Vec<Mark>) {
    if num_points == 0 {
        return (Vec::new(), Vec::new());
    }
    let n_pos = rng.random_range(2..=5);
    let n_neg = rng.random_range(6..=14);
    let pos: Vec<usize> = (0..n_pos)
        .map(|_| rng.random_range(0..num_points))
        .collect();
    let neg: Vec<usize> = (0..n_neg)
        .map(|_| rng.random_range(0..num_points))
        .collect();
    number_marks(&pos, &neg, rng)
}

/// Runs selection on raw tracks.
pub fn select<R: Rng + ?Sized>(
    tracks: &Tracks,
    params: &SelectionParams,
    ransac: &RansacConfig,
    rng: &mut R,
) -> Selection {
    let valid = visible_majority(tracks);
    let subset = tracks.subset(&valid);
    let stabilized = stabilize(&subset, params.camera_rule, params.camera_threshold, ransac);
    let lengths = trace_lengths(&stabilized.tracks);
    let moving: Vec<bool> = lengths
        .iter()
        .map(|&l| l > params.foreground_threshold)
        .collect();
    let mut selection = Selection {
        valid,
        stabilized,
        lengths,
        moving,
        positives: Vec::new(),
        negatives: Vec::new(),
        fallback: None,
    };
    let fallback = if selection.valid.len() <= 1 {
        Some(Fallback::TooFewVisible)
    } else if selection.moving.iter().filter(|&&m| m).count() <= 1 {
        Some(Fallback::NothingMoves)
    } else if selection.moving.iter().all(|&m| m) {
        Some(Fallback::NoBackground)
    } else {
        None
    };
    if let Some(reason) = fallback {
        let (pos, neg) = fallback_marks(tracks.num_points(), rng);
        selection.positives = pos;
        selection.negatives = neg;
        selection.fallback = Some(reason);
        return selection;
    }
    let split = |want: bool| -> Vec<usize> {
        (0..selection.valid.len())
            .filter(|&i| selection.moving[i] == want)
            .collect()
    };
    let (fg, bg) = (split(true), split(false));
    let k_pos = rng.random_range(params.positive_clusters.clone());
    let pos_local = representatives(&selection.stabilized.tracks, &fg, k_pos, rng);
    let k_neg = rng.random_range(params.negative_clusters.clone());
    let neg_local = representatives(&selection.stabilized.tracks, &bg, k_neg, rng);
    let to_points = |local: Vec<usize>| -> Vec<usize> {
        local.into_iter().map(|i| selection.valid[i]).collect()
    };
    let (pos, neg) = number_marks(&to_points(pos_local), &to_points(neg_local), rng);
    selection.positives = pos;
    selection.negatives = neg;
    selection
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// 30 static points and 10 points moving 5 px per frame in two groups, 8 frames.
    fn scene(moving_speed: f32) -> Tracks {
        let n = 40;
        let points = (0..8)
            .map(|t| {
                (0..n)
                    .map(|i| {
                        let base = [20.0 + 10.0 * (i % 8) as f32, 20.0 + 10.0 * (i / 8) as f32];
                        let dir = if i < 5 {
                            [1.0, 0.0]
                        } else if i < 10 {
                            [0.0, 1.0]
                        } else {
                            [0.0, 0.0]
                        };
                        let s = moving_speed * t as f32;
                        [base[0] + dir[0] * s, base[1] + dir[1] * s]
                    })
                    .collect()
            })
            .collect();
        let mut visible = vec![vec![true; n]; 8];
        // Point 39 is visible in only 4 of 8 frames: not more than half, dropped.
        for f in visible.iter_mut().take(4) {
            f[39] = false;
        }
        Tracks { points, visible }
    }

    #[test]
    fn picks_moving_positives_and_static_negatives() {
        let tracks = scene(5.0);
        let mut rng = StdRng::seed_from_u64(11);
        let sel = select(
            &tracks,
            &DataKind::Video.params(),
            &RansacConfig::default(),
            &mut rng,
        );
        assert_eq!(sel.fallback, None);
        assert_eq!(sel.valid.len(), 39);
        assert!(!sel.valid.contains(&39));
        assert!(!sel.stabilized.applied);
        assert!((2..=5).contains(&sel.positives.len()) || sel.positives.len() == 10);
        assert!(sel.positives.iter().all(|m| m.point < 10));
        assert!(sel.negatives.iter().all(|m| m.point >= 10));
        assert!((6..=14).contains(&sel.negatives.len()));
        let mut ids: Vec<usize> = sel
            .positives
            .iter()
            .chain(&sel.negatives)
            .map(|m| m.id)
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            (1..=sel.positives.len() + sel.negatives.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_static_video_falls_back_to_som() {
        let tracks = scene(0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let sel = select(
            &tracks,
            &DataKind::Video.params(),
            &RansacConfig::default(),
            &mut rng,
        );
        assert_eq!(sel.fallback, Some(Fallback::NothingMoves));
        assert!((2..=5).contains(&sel.positives.len()));
        assert!((6..=14).contains(&sel.negatives.len()));
    }

    #[test]
    fn robot_threshold_is_lower() {
        // 2 px per frame: background for videos (≤ 3), foreground for robots (> 1).
        let tracks = scene(2.0);
        let mut rng = StdRng::seed_from_u64(2);
        let video = select(
            &tracks,
            &DataKind::Video.params(),
            &RansacConfig::default(),
            &mut rng,
        );
        assert_eq!(video.fallback, Some(Fallback::NothingMoves));
        let robot = select(
            &tracks,
            &DataKind::Robot.params(),
            &RansacConfig::default(),
            &mut rng,
        );
        assert_eq!(robot.fallback, None);
        assert!((4..=9).contains(&robot.negatives.len()));
    }

    #[test]
    fn seeds_reproduce_selection() {
        let tracks = scene(5.0);
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let s = select(
                &tracks,
                &DataKind::Video.params(),
                &RansacConfig::default(),
                &mut rng,
            );
            (s.positives, s.negatives)
        };
        assert_eq!(run(5), run(5));
    }
}
