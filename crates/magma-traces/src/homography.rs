//! Planar homographies: normalised DLT (Hartley) and seeded RANSAC with a refit on the inliers,
//! the stand-in for `cv2.findHomography(src, dst, cv2.RANSAC, 4.0)`.

use nalgebra::{DMatrix, Matrix3, Vector3};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;

/// Why no homography could be estimated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HomographyError {
    /// Source and destination lists differ in length.
    #[error("{src} source points but {dst} destination points")]
    LengthMismatch { src: usize, dst: usize },
    /// Fewer than four correspondences.
    #[error("no homography: {got} correspondences, at least 4 needed")]
    TooFewPoints { got: usize },
    /// The points do not pin a homography down (collinear, coincident or non-finite).
    #[error("no homography: the points are degenerate (collinear or coincident)")]
    Degenerate,
    /// RANSAC found no model with at least four inliers.
    #[error("no homography: no model with at least 4 inliers within {threshold} px")]
    NoConsensus { threshold: f64 },
}

/// A 3×3 projective map of the plane, applied to (x, y, 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography(pub Matrix3<f64>);

impl Homography {
    /// The identity map.
    pub fn identity() -> Self {
        Self(Matrix3::identity())
    }

    /// Maps a point; `None` when it lands at infinity.
    ///
    /// ```
    /// use magma_traces::homography::Homography;
    /// let shift = Homography(nalgebra::Matrix3::new(1.0, 0.0, 5.0, 0.0, 1.0, -2.0, 0.0, 0.0, 1.0));
    /// assert_eq!(shift.apply([1.0, 1.0]), Some([6.0, -1.0]));
    /// ```
    pub fn apply(&self, p: [f64; 2]) -> Option<[f64; 2]> {
        let v = self.0 * Vector3::new(p[0], p[1], 1.0);
        let out = [v.x / v.z, v.y / v.z];
        (v.z.abs() > 1e-12 && out[0].is_finite() && out[1].is_finite()).then_some(out)
    }

    /// The inverse map, if the matrix is invertible.
    pub fn inverse(&self) -> Option<Self> {
        self.0.try_inverse().map(Self)
    }

    /// The matrix scaled so that its bottom-right entry is 1 (when it is not ~0).
    pub fn normalized(&self) -> Self {
        let z = self.0[(2, 2)];
        if z.abs() > 1e-12 {
            Self(self.0 / z)
        } else {
            *self
        }
    }
}

/// Settings of [`find_homography_ransac`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RansacConfig {
    /// Largest reprojection error (pixels) of an inlier; Magma passes 4.0 to OpenCV.
    pub threshold: f64,
    /// Confidence that drives the adaptive iteration count (OpenCV: 0.995).
    pub confidence: f64,
    /// Iterations at most (OpenCV: 2000).
    pub max_iterations: usize,
    /// Seed of the sampler, so results are reproducible.
    pub seed: u64,
}

impl Default for RansacConfig {
    fn default() -> Self {
        Self {
            threshold: 4.0,
            confidence: 0.995,
            max_iterations: 2000,
            seed: 0,
        }
    }
}

/// A RANSAC estimate: the model refitted on its inliers, and which correspondences they are.
#[derive(Debug, Clone, PartialEq)]
pub struct RansacFit {
    pub homography: Homography,
    pub inliers: Vec<bool>,
}

impl RansacFit {
    /// Number of inliers.
    pub fn num_inliers(&self) -> usize {
        self.inliers.iter().filter(|&&b| b).count()
    }
}

/// Similarity that moves the centroid of `points` to the origin and their mean distance to √2.
fn normalizer(points: &[[f64; 2]]) -> Option<Matrix3<f64>> {
    let n = points.len() as f64;
    let (cx, cy) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p[0] / n, y + p[1] / n));
    let mean_dist = points
        .iter()
        .map(|p| (p[0] - cx).hypot(p[1] - cy))
        .sum::<f64>()
        / n;
    if !(mean_dist.is_finite() && mean_dist > 1e-12) {
        return None;
    }
    let s = std::f64::consts::SQRT_2 / mean_dist;
    Some(Matrix3::new(
        s,
        0.0,
        -s * cx,
        0.0,
        s,
        -s * cy,
        0.0,
        0.0,
        1.0,
    ))
}

/// Whether three points are (nearly) on one line, relative to their spread.
fn collinear(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> bool {
    let (ux, uy) = (b[0] - a[0], b[1] - a[1]);
    let (vx, vy) = (c[0] - a[0], c[1] - a[1]);
    let cross = (ux * vy - uy * vx).abs();
    let scale = (ux * ux + uy * uy).max(vx * vx + vy * vy);
    cross <= 1e-6 * scale || scale < 1e-12
}

/// Whether any three of four points are collinear (such a sample has no unique homography).
fn degenerate_sample(p: &[[f64; 2]; 4]) -> bool {
    [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)]
        .iter()
        .any(|&(i, j, k)| collinear(p[i], p[j], p[k]))
}

/// Homography mapping `src` onto `dst` by the normalised direct linear transform (least squares
/// over all correspondences, SVD null vector).
///
/// ```
/// use magma_traces::homography::fit_dlt;
/// let src = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
/// let dst = [[2.0, 1.0], [4.0, 1.0], [4.0, 3.0], [2.0, 3.0]];
/// let h = fit_dlt(&src, &dst).unwrap();
/// let p = h.apply([0.5, 0.5]).unwrap();
/// assert!((p[0] - 3.0).abs() < 1e-9 && (p[1] - 2.0).abs() < 1e-9);
/// ```
pub fn fit_dlt(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Result<Homography, HomographyError> {
    if src.len() != dst.len() {
        return Err(HomographyError::LengthMismatch {
            src: src.len(),
            dst: dst.len(),
        });
    }
    if src.len() < 4 {
        return Err(HomographyError::TooFewPoints { got: src.len() });
    }
    let (Some(ts), Some(td)) = (normalizer(src), normalizer(dst)) else {
        return Err(HomographyError::Degenerate);
    };
    // nalgebra's SVD is thin: pad to at least 9 rows so the null vector is among V's rows.
    let rows = (2 * src.len()).max(9);
    let mut a = DMatrix::<f64>::zeros(rows, 9);
    for (i, (s, d)) in src.iter().zip(dst).enumerate() {
        let p = ts * Vector3::new(s[0], s[1], 1.0);
        let q = td * Vector3::new(d[0], d[1], 1.0);
        let (x, y, u, v) = (p.x, p.y, q.x, q.y);
        let r = 2 * i;
        for (c, val) in [-x, -y, -1.0, 0.0, 0.0, 0.0, u * x, u * y, u]
            .iter()
            .enumerate()
        {
            a[(r, c)] = *val;
        }
        for (c, val) in [0.0, 0.0, 0.0, -x, -y, -1.0, v * x, v * y, v]
            .iter()
            .enumerate()
        {
            a[(r + 1, c)] = *val;
        }
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(HomographyError::Degenerate);
    }
    let svd = a.svd(false, true);
    let v_t = svd.v_t.ok_or(HomographyError::Degenerate)?;
    let (smallest, _) = svd
        .singular_values
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .ok_or(HomographyError::Degenerate)?;
    let h = v_t.row(smallest);
    let hn = Matrix3::new(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]);
    let td_inv = td.try_inverse().ok_or(HomographyError::Degenerate)?;
    let full = Homography(td_inv * hn * ts).normalized();
    let det = full.0.determinant();
    if !det.is_finite() || det.abs() < 1e-10 || full.0.iter().any(|v| !v.is_finite()) {
        return Err(HomographyError::Degenerate);
    }
    Ok(full)
}

/// Inlier flags of `h` for reprojection error ‖h(src) − dst‖ ≤ threshold.
fn inliers_of(h: &Homography, src: &[[f64; 2]], dst: &[[f64; 2]], threshold: f64) -> Vec<bool> {
    src.iter()
        .zip(dst)
        .map(|(s, d)| {
            h.apply(*s).is_some_and(|p| {
                (p[0] - d[0]).powi(2) + (p[1] - d[1]).powi(2) <= threshold * threshold
            })
        })
        .collect()
}

fn select(points: &[[f64; 2]], mask: &[bool]) -> Vec<[f64; 2]> {
    points
        .iter()
        .zip(mask)
        .filter_map(|(p, &m)| m.then_some(*p))
        .collect()
}

/// Robust homography from `src` to `dst`: 4-point normalised-DLT hypotheses from a seeded sampler
/// (degenerate samples skipped), scored by inlier count, with OpenCV's adaptive iteration count;
/// the best model is refitted on its inliers (twice, keeping a refit only when it does not lose
/// inliers).
///
/// Errors rather than panics on every degenerate input: fewer than 4 points, collinear or
/// coincident points, or no model with 4 inliers.
///
/// ```
/// use magma_traces::homography::{find_homography_ransac, RansacConfig};
/// let src: Vec<[f64; 2]> = (0..20).map(|i| [(i % 5) as f64 * 10.0, (i / 5) as f64 * 10.0]).collect();
/// let mut dst: Vec<[f64; 2]> = src.iter().map(|p| [p[0] + 3.0, p[1] - 1.0]).collect();
/// dst[7] = [500.0, 500.0]; // an outlier
/// let fit = find_homography_ransac(&src, &dst, &RansacConfig::default()).unwrap();
/// assert_eq!(fit.num_inliers(), 19);
/// assert!(!fit.inliers[7]);
/// ```
pub fn find_homography_ransac(
    src: &[[f64; 2]],
    dst: &[[f64; 2]],
    config: &RansacConfig,
) -> Result<RansacFit, HomographyError> {
    if src.len() != dst.len() {
        return Err(HomographyError::LengthMismatch {
            src: src.len(),
            dst: dst.len(),
        });
    }
    let n = src.len();
    if n < 4 {
        return Err(HomographyError::TooFewPoints { got: n });
    }
    if src
        .iter()
        .chain(dst)
        .any(|p| !(p[0].is_finite() && p[1].is_finite()))
    {
        return Err(HomographyError::Degenerate);
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut best: Option<(Homography, Vec<bool>, usize)> = None;
    let mut needed = config.max_iterations;
    let mut iteration = 0;
    while iteration < needed.min(config.max_iterations) {
        iteration += 1;
        let idx = sample(&mut rng, n, 4);
        let pick = |pts: &[[f64; 2]]| -> [[f64; 2]; 4] {
            [
                pts[idx.index(0)],
                pts[idx.index(1)],
                pts[idx.index(2)],
                pts[idx.index(3)],
            ]
        };
        let (s4, d4) = (pick(src), pick(dst));
        if degenerate_sample(&s4) || degenerate_sample(&d4) {
            continue;
        }
        let Ok(h) = fit_dlt(&s4, &d4) else { continue };
        let mask = inliers_of(&h, src, dst, config.threshold);
        let count = mask.iter().filter(|&&b| b).count();
        if best.as_ref().is_none_or(|b| count > b.2) {
            let ratio = count as f64 / n as f64;
            needed = adaptive_iterations(ratio, config.confidence, config.max_iterations);
            best = Some((h, mask, count));
        }
    }
    let Some((mut h, mut mask, mut count)) = best else {
        return Err(HomographyError::Degenerate);
    };
    if count < 4 {
        return Err(HomographyError::NoConsensus {
            threshold: config.threshold,
        });
    }
    for _ in 0..2 {
        let Ok(refit) = fit_dlt(&select(src, &mask), &select(dst, &mask)) else {
            break;
        };
        let refit_mask = inliers_of(&refit, src, dst, config.threshold);
        let refit_count = refit_mask.iter().filter(|&&b| b).count();
        if refit_count < count {
            break;
        }
        (h, mask, count) = (refit, refit_mask, refit_count);
    }
    Ok(RansacFit {
        homography: h,
        inliers: mask,
    })
}

/// Iterations needed to draw one all-inlier 4-sample with the given confidence.
fn adaptive_iterations(inlier_ratio: f64, confidence: f64, max: usize) -> usize {
    let p_good = inlier_ratio.powi(4);
    if p_good >= 1.0 {
        return 1;
    }
    if p_good <= 0.0 {
        return max;
    }
    let k = (1.0 - confidence).ln() / (1.0 - p_good).ln();
    if k.is_finite() {
        (k.ceil() as usize).clamp(1, max)
    } else {
        max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn example() -> Homography {
        Homography(Matrix3::new(
            1.05, 0.08, 12.0, -0.06, 0.97, -7.0, 2e-4, -1e-4, 1.0,
        ))
    }

    fn scattered(n: usize, seed: u64) -> Vec<[f64; 2]> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| [rng.random_range(0.0..512.0), rng.random_range(0.0..384.0)])
            .collect()
    }

    fn max_error(a: &Homography, b: &Homography, pts: &[[f64; 2]]) -> f64 {
        pts.iter()
            .map(|p| {
                let (u, v) = (a.apply(*p).unwrap(), b.apply(*p).unwrap());
                (u[0] - v[0]).hypot(u[1] - v[1])
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn dlt_recovers_an_exact_homography() {
        let h = example();
        let src = scattered(10, 1);
        let dst: Vec<_> = src.iter().map(|p| h.apply(*p).unwrap()).collect();
        let fit = fit_dlt(&src, &dst).unwrap();
        assert!(max_error(&fit, &h, &src) < 1e-6);
        // The minimal case (8 equations, padded to 9 rows) works too.
        let fit4 = fit_dlt(&src[..4], &dst[..4]).unwrap();
        assert!(max_error(&fit4, &h, &src) < 1e-5);
    }

    #[test]
    fn ransac_survives_45_percent_planted_outliers() {
        let h = example();
        let src = scattered(200, 2);
        let mut rng = StdRng::seed_from_u64(3);
        let mut outlier = vec![false; src.len()];
        let dst: Vec<_> = src
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let q = h.apply(*p).unwrap();
                if i % 20 < 9 {
                    outlier[i] = true;
                    // Displaced by 20–80 px in a random direction.
                    let (r, a) = (
                        rng.random_range(20.0..80.0),
                        rng.random_range(0.0..std::f64::consts::TAU),
                    );
                    [q[0] + r * f64::cos(a), q[1] + r * f64::sin(a)]
                } else {
                    // Inliers carry ±0.5 px noise.
                    [
                        q[0] + rng.random_range(-0.5..0.5),
                        q[1] + rng.random_range(-0.5..0.5),
                    ]
                }
            })
            .collect();
        let fit = find_homography_ransac(&src, &dst, &RansacConfig::default()).unwrap();
        for (i, &o) in outlier.iter().enumerate() {
            assert_eq!(fit.inliers[i], !o, "point {i}");
        }
        assert!(max_error(&fit.homography, &h, &src) < 0.5);
    }

    #[test]
    fn ransac_is_reproducible_for_a_seed() {
        let h = example();
        let src = scattered(60, 4);
        let mut dst: Vec<_> = src.iter().map(|p| h.apply(*p).unwrap()).collect();
        for d in dst.iter_mut().step_by(3) {
            d[0] += 40.0;
        }
        let config = RansacConfig::default();
        let a = find_homography_ransac(&src, &dst, &config).unwrap();
        let b = find_homography_ransac(&src, &dst, &config).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn degenerate_inputs_give_no_homography() {
        let config = RansacConfig::default();
        let three = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        assert_eq!(
            find_homography_ransac(&three, &three, &config),
            Err(HomographyError::TooFewPoints { got: 3 })
        );
        assert_eq!(
            fit_dlt(&three, &three),
            Err(HomographyError::TooFewPoints { got: 3 })
        );
        let line: Vec<[f64; 2]> = (0..30).map(|i| [i as f64, 2.0 * i as f64 + 1.0]).collect();
        assert_eq!(
            find_homography_ransac(&line, &line, &config),
            Err(HomographyError::Degenerate)
        );
        let same = vec![[5.0, 5.0]; 10];
        assert_eq!(fit_dlt(&same, &same), Err(HomographyError::Degenerate));
        assert!(find_homography_ransac(&same, &same, &config).is_err());
        let nan = vec![[f64::NAN, 1.0]; 8];
        assert_eq!(
            find_homography_ransac(&nan, &nan, &config),
            Err(HomographyError::Degenerate)
        );
        assert!(matches!(
            find_homography_ransac(&three, &line, &config),
            Err(HomographyError::LengthMismatch { src: 3, dst: 30 })
        ));
    }

    #[test]
    fn random_destinations_have_no_consensus_or_few_inliers() {
        let src = scattered(40, 5);
        let dst = scattered(40, 6);
        match find_homography_ransac(&src, &dst, &RansacConfig::default()) {
            Ok(fit) => assert!(fit.num_inliers() < 10, "{}", fit.num_inliers()),
            Err(e) => assert!(matches!(e, HomographyError::NoConsensus { .. })),
        }
    }

    proptest::proptest! {
        #[test]
        fn ransac_never_panics(pts in proptest::collection::vec((-1e3f64..1e3, -1e3f64..1e3, -1e3f64..1e3, -1e3f64..1e3), 0..12)) {
            let src: Vec<[f64; 2]> = pts.iter().map(|p| [p.0, p.1]).collect();
            let dst: Vec<[f64; 2]> = pts.iter().map(|p| [p.2, p.3]).collect();
            let config = RansacConfig { max_iterations: 50, ..Default::default() };
            if let Ok(fit) = find_homography_ransac(&src, &dst, &config) {
                proptest::prop_assert!(fit.num_inliers() >= 4);
            }
        }
    }
}
