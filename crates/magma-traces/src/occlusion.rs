//! Occlusion handling for frame-to-frame trackers: an appearance check against each point's
//! query patch, and carrying lost points along with the scene.
//!
//! Lucas–Kanade has no occlusion model: when a moving object covers a background point, or a
//! point sits next to an object's edge, the matching window locks onto the object and the point
//! is dragged along while the forward–backward check still passes. The point's trace then looks
//! like motion, and the reference's foreground rule (mean step > threshold) labels static
//! background as moving. CoTracker, the reference's tracker, instead reports such points as
//! occluded and keeps them where the background puts them. This module does the same for a
//! chained tracker:
//!
//! * a point is *verified* in a frame when its small intensity patch still correlates (zero-mean
//!   normalised cross-correlation, ZNCC) with its patch on the query frame and keeps its grey
//!   levels (mean absolute difference);
//! * a point that fails is *lost*: invisible, and carried from frame to frame by the motion of the
//!   verified points (a RANSAC homography, i.e. the dominant surface) plus its own median
//!   residual step from the frames where it was verified (so occluded movers keep moving);
//! * a lost point is re-acquired where its query patch, matched by the tracker near the carried
//!   position, correlates again, or else where a search of the patch around the carried position
//!   finds it with a stricter grey-level limit ([`Appearance::search`]): the tracker's window
//!   takes in the query frame's surroundings of the point, which a moving object has left.

use crate::homography::{find_homography_ransac, Homography, RansacConfig};
use crate::pyramid::Plane;

/// Zero-mean normalised cross-correlation of two equally long patches, in [−1, 1]; 0 when either
/// patch is flat.
///
/// ```
/// use magma_traces::occlusion::zncc;
/// let a = [1.0, 2.0, 3.0, 4.0];
/// assert!((zncc(&a, &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-6);
/// assert!((zncc(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-6);
/// assert_eq!(zncc(&a, &[5.0; 4]), 0.0);
/// ```
pub fn zncc(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let mean = |v: &[f32]| v[..n].iter().sum::<f32>() / n as f32;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for (&x, &y) in a[..n].iter().zip(&b[..n]) {
        let (x, y) = (x - ma, y - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let norm = (aa * bb).sqrt();
    // Below ~0.1 grey level of variation per pixel there is no texture to compare.
    if norm <= 1e-2 * n as f32 {
        0.0
    } else {
        ab / norm
    }
}

/// Mean absolute difference of two equally long patches (grey levels); infinite when empty.
///
/// ```
/// use magma_traces::occlusion::mean_difference;
/// assert_eq!(mean_difference(&[1.0, 2.0], &[2.0, 4.0]), 1.5);
/// ```
pub fn mean_difference(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    if n == 0 {
        return f32::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / n as f32
}

/// The appearance check: each point's `side`×`side` patch on the query frame, compared with its
/// patch where the tracker puts it by ZNCC (the texture's shape) and by mean absolute
/// difference (its grey levels).
///
/// ZNCC alone is blind to brightness and contrast, and on smooth texture a 7×7 patch is close
/// to a linear ramp, so any surface whose gradient points the same way correlates well: a
/// background point dragged onto an occluder of another colour passes. The grey-level
/// difference catches that.
#[derive(Debug, Clone)]
pub struct Appearance {
    side: usize,
    threshold: f32,
    max_difference: f32,
    references: Vec<Option<Vec<f32>>>,
}

/// Where [`Appearance::search`] found a point's query patch, and how well it matches there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    pub position: [f32; 2],
    /// ZNCC with the query patch, in [−1, 1].
    pub correlation: f32,
    /// Mean absolute grey difference from the query patch.
    pub difference: f32,
}

impl Appearance {
    /// Samples the reference patches of `queries` on `image` (the query frame's finest level).
    /// A point still looks like itself where its patch has ZNCC ≥ `threshold` with the
    /// reference and differs from it by at most `max_difference` grey levels on average.
    /// `side` 0 turns the check off (every point always passes).
    pub fn new(
        image: &Plane,
        queries: &[[f32; 2]],
        side: usize,
        threshold: f32,
        max_difference: f32,
    ) -> Self {
        let references = queries
            .iter()
            .map(|&q| (side > 0).then(|| patch(image, q, side)).flatten())
            .collect();
        Self {
            side,
            threshold,
            max_difference,
            references,
        }
    }

    /// Whether point `n` at `p` on `image` still looks like its query patch.
    pub fn matches(&self, image: &Plane, n: usize, p: [f32; 2]) -> bool {
        if self.side == 0 {
            return true;
        }
        let Some(Some(reference)) = self.references.get(n) else {
            return false;
        };
        patch(image, p, self.side).is_some_and(|here| {
            mean_difference(reference, &here) <= self.max_difference
                && zncc(reference, &here) >= self.threshold
        })
    }

    /// Standard deviation of point `n`'s query patch (grey levels; `None` when the check is off
    /// or the point has none): how far apart in grey levels places on its texture are, so a
    /// patch with little of it cannot be told apart from its surroundings.
    pub fn contrast(&self, n: usize) -> Option<f32> {
        let reference = self.references.get(n)?.as_ref()?;
        let count = reference.len().max(1) as f32;
        let mean = reference.iter().sum::<f32>() / count;
        let variance = reference.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / count;
        Some(variance.sqrt())
    }

    /// Searches a `(2·radius+1)²` grid of whole-pixel offsets around `around` for the place
    /// where point `n`'s query patch correlates best, refined to sub-pixel by a parabola
    /// through the neighbouring scores (`None` when the check is off, the point has no
    /// reference or the search area leaves the padded plane).
    ///
    /// Re-acquiring a point this way needs only its own small patch to match, where the
    /// tracker's larger window also takes in the surroundings of the query frame, which have
    /// moved on when the point belongs to a moving object.
    ///
    /// ```
    /// use magma_traces::occlusion::Appearance;
    /// use magma_traces::pyramid::Pyramid;
    /// let texture = |x: f32, y: f32| 100.0 + 40.0 * (0.4 * x).sin() * (0.3 * y).cos() + 20.0 * (0.17 * x + 0.23 * y).sin();
    /// let grey = |dx: f32, dy: f32| (0..64 * 64).map(|i| texture((i % 64) as f32 - dx, (i / 64) as f32 - dy)).collect();
    /// let first = Pyramid::from_grey(grey(0.0, 0.0), 64, 64, 0, 24);
    /// let later = Pyramid::from_grey(grey(5.0, -3.0), 64, 64, 0, 24);
    /// let check = Appearance::new(&first.levels()[0], &[[30.0, 30.0]], 7, 0.5, 10.0);
    /// // The point is now at (35, 27); search from 6 px away.
    /// let found = check.search(&later.levels()[0], 0, [31.0, 31.0], 8).unwrap();
    /// let [x, y] = found.position;
    /// assert!((x - 35.0).abs() < 0.3 && (y - 27.0).abs() < 0.3, "{found:?}");
    /// assert!(found.correlation > 0.99 && found.difference < 1.0, "{found:?}");
    /// ```
    pub fn search(
        &self,
        image: &Plane,
        n: usize,
        around: [f32; 2],
        radius: usize,
    ) -> Option<Found> {
        let reference = self.references.get(n)?.as_ref()?;
        let side = self.side;
        let span = 2 * radius + 1;
        let width = span + side - 1;
        let mut region = vec![0.0; width * width];
        if !image.sample_window(around[0], around[1], width / 2, &mut region) {
            return None;
        }
        let mut here = vec![0.0; side * side];
        let mut scores = vec![f32::NEG_INFINITY; span * span];
        for oy in 0..span {
            for ox in 0..span {
                for (r, row) in here.chunks_exact_mut(side).enumerate() {
                    let start = (oy + r) * width + ox;
                    row.copy_from_slice(&region[start..start + side]);
                }
                scores[oy * span + ox] = zncc(reference, &here);
            }
        }
        let (best, &score) = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        let (bx, by) = (best % span, best / span);
        // Vertex of the parabola through three neighbouring scores, within half a pixel.
        let vertex = |before: f32, at: f32, after: f32| {
            let curvature = before - 2.0 * at + after;
            if curvature < 0.0 {
                (0.5 * (before - after) / curvature).clamp(-0.5, 0.5)
            } else {
                0.0
            }
        };
        let fx = if bx > 0 && bx + 1 < span {
            vertex(scores[best - 1], score, scores[best + 1])
        } else {
            0.0
        };
        let fy = if by > 0 && by + 1 < span {
            vertex(scores[best - span], score, scores[best + span])
        } else {
            0.0
        };
        let position = [
            around[0] + bx as f32 - radius as f32 + fx,
            around[1] + by as f32 - radius as f32 + fy,
        ];
        let difference =
            patch(image, position, side).map_or(f32::INFINITY, |p| mean_difference(reference, &p));
        Some(Found {
            position,
            correlation: score,
            difference,
        })
    }
}

/// The bilinearly sampled `side`×`side` patch centred at `p`, if it fits in the padded plane.
fn patch(image: &Plane, p: [f32; 2], side: usize) -> Option<Vec<f32>> {
    let mut out = vec![0.0; side * side];
    image
        .sample_window(p[0], p[1], side / 2, &mut out)
        .then_some(out)
}

/// Frame-to-frame motion of the dominant surface, estimated from the verified points.
#[derive(Debug, Clone)]
pub enum SceneMotion {
    /// A RANSAC homography (at least 4 well-spread verified points).
    Homography(Homography),
    /// The median shift of the verified points (too few or degenerate points for a homography).
    Shift([f32; 2]),
}

impl SceneMotion {
    /// Fits the motion from `from` to `to` over the points flagged in `use_point`.
    ///
    /// ```
    /// use magma_traces::occlusion::SceneMotion;
    /// let from = [[0.0, 0.0], [10.0, 0.0]];
    /// let to = [[2.0, 1.0], [12.0, 1.0]];
    /// let motion = SceneMotion::estimate(&from, &to, &[true, true], 0);
    /// assert_eq!(motion.apply([5.0, 5.0]), [7.0, 6.0]);
    /// ```
    pub fn estimate(from: &[[f32; 2]], to: &[[f32; 2]], use_point: &[bool], seed: u64) -> Self {
        let (src, dst): (Vec<[f64; 2]>, Vec<[f64; 2]>) = from
            .iter()
            .zip(to)
            .zip(use_point)
            .filter(|(_, &u)| u)
            .map(|((a, b), _)| ([a[0] as f64, a[1] as f64], [b[0] as f64, b[1] as f64]))
            .unzip();
        let config = RansacConfig {
            seed,
            ..RansacConfig::default()
        };
        if let Ok(fit) = find_homography_ransac(&src, &dst, &config) {
            return SceneMotion::Homography(fit.homography);
        }
        let mut dx: Vec<f64> = src.iter().zip(&dst).map(|(a, b)| b[0] - a[0]).collect();
        let mut dy: Vec<f64> = src.iter().zip(&dst).map(|(a, b)| b[1] - a[1]).collect();
        SceneMotion::Shift([median(&mut dx) as f32, median(&mut dy) as f32])
    }

    /// Where the surface moves point `p`.
    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        match self {
            SceneMotion::Homography(h) => h
                .apply([p[0] as f64, p[1] as f64])
                .map_or(p, |q| [q[0] as f32, q[1] as f32]),
            SceneMotion::Shift(d) => [p[0] + d[0], p[1] + d[1]],
        }
    }
}

/// Median of `values` (0 when empty); reorders them.
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        0.5 * (values[mid - 1] + values[mid])
    }
}

/// A point's own motion relative to the scene, from the frames where it was verified.
#[derive(Debug, Clone, Default)]
pub struct OwnMotion {
    steps: Vec<[f64; 2]>,
}

impl OwnMotion {
    /// Records a verified step: how far the point went beyond where the scene's motion alone
    /// would put it.
    pub fn record(&mut self, step: [f32; 2]) {
        self.steps.push([step[0] as f64, step[1] as f64]);
    }

    /// The median recorded step (robust to the few steps dragged by an approaching occluder);
    /// zero before any.
    ///
    /// ```
    /// use magma_traces::occlusion::OwnMotion;
    /// let mut m = OwnMotion::default();
    /// for step in [[3.0, 1.0], [3.2, 1.0], [0.5, 0.2]] {
    ///     m.record(step);
    /// }
    /// assert_eq!(m.step(), [3.0, 1.0]);
    /// ```
    pub fn step(&self) -> [f32; 2] {
        let mut dx: Vec<f64> = self.steps.iter().map(|s| s[0]).collect();
        let mut dy: Vec<f64> = self.steps.iter().map(|s| s[1]).collect();
        [median(&mut dx) as f32, median(&mut dy) as f32]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyramid::Pyramid;

    fn plane(w: usize, h: usize, f: impl Fn(f32, f32) -> f32) -> Pyramid {
        let values = (0..w * h)
            .map(|i| f((i % w) as f32, (i / w) as f32))
            .collect();
        Pyramid::from_grey(values, w, h, 0, 8)
    }

    #[test]
    fn the_check_follows_the_texture_and_rejects_another_surface() {
        let texture = |x: f32, y: f32| 100.0 + 40.0 * (0.4 * x).sin() * (0.3 * y).cos();
        let first = plane(64, 64, texture);
        let shifted = plane(64, 64, |x, y| texture(x - 3.0, y + 2.0));
        let other = plane(64, 64, |x, y| 100.0 + 40.0 * (0.23 * x + 0.5 * y).sin());
        let check = Appearance::new(&first.levels()[0], &[[30.0, 30.0]], 11, 0.7, 10.0);
        assert!(check.matches(&shifted.levels()[0], 0, [33.0, 28.0]));
        assert!(!check.matches(&other.levels()[0], 0, [33.0, 28.0]));
        // The same texture 30 grey levels brighter correlates perfectly but is another surface.
        let brighter = plane(64, 64, |x, y| texture(x - 3.0, y + 2.0) + 30.0);
        assert!(!check.matches(&brighter.levels()[0], 0, [33.0, 28.0]));
        assert!(check.contrast(0).is_some_and(|c| c > 10.0));
        let off = Appearance::new(&first.levels()[0], &[[30.0, 30.0]], 0, 0.7, 10.0);
        assert!(off.matches(&other.levels()[0], 0, [33.0, 28.0]));
    }

    #[test]
    fn scene_motion_ignores_a_moving_minority() {
        let from: Vec<[f32; 2]> = (0..30)
            .map(|i| [10.0 * (i % 6) as f32, 12.0 * (i / 6) as f32])
            .collect();
        // The scene shifts by (1, −2); five points ride an object moving by (9, 9) instead.
        let to: Vec<[f32; 2]> = from
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let d = if i < 5 { [9.0, 9.0] } else { [1.0, -2.0] };
                [p[0] + d[0], p[1] + d[1]]
            })
            .collect();
        let motion = SceneMotion::estimate(&from, &to, &[true; 30], 3);
        assert!(matches!(motion, SceneMotion::Homography(_)));
        let q = motion.apply([25.0, 25.0]);
        assert!(
            (q[0] - 26.0).abs() < 1e-3 && (q[1] - 23.0).abs() < 1e-3,
            "{q:?}"
        );
        // Nothing to fit: no motion.
        let none = SceneMotion::estimate(&from, &to, &[false; 30], 3);
        assert_eq!(none.apply([1.0, 2.0]), [1.0, 2.0]);
    }
}
