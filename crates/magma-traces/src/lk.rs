//! Pyramidal Lucas–Kanade point tracking (Bouguet's iterative scheme) with a forward–backward
//! consistency check for visibility.
//!
//! Each point is chained frame to frame from its query on frame 0: at every pyramid level, coarse to
//! fine, the window around the point in the earlier frame is matched against the later frame by
//! Gauss–Newton steps on bilinearly sampled intensities and Scharr gradients. A point counts as
//! visible in frame t+1 when tracking it back to frame t lands within `fb_threshold` pixels of where
//! it started, it is still inside the image and it still looks like its query patch; points that
//! fail are carried along with the scene until they reappear ([`crate::occlusion`]).
//!
//! Speed: every frame's pyramid and Scharr gradients are built once and shared by the forward and
//! backward passes; the window loops run over rows padded to 8 lanes with one set of bilinear
//! weights per window, in f32, so the compiler vectorises them.

use image::RgbImage;
use rayon::prelude::*;

use crate::error::{Result, TracesError};
use crate::occlusion::{Appearance, OwnMotion, SceneMotion};
use crate::pyramid::{Plane, Pyramid, WindowAt};
use crate::tracker::{Tracker, Tracks};

/// Settings of [`LucasKanade`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LucasKanadeConfig {
    /// Side of the square matching window in pixels (odd).
    pub window: usize,
    /// Index of the coarsest pyramid level (0 = no pyramid), as OpenCV's `maxLevel`.
    pub max_level: usize,
    /// Gauss–Newton iterations per level at most.
    pub max_iterations: usize,
    /// Stop iterating once a step is shorter than this many pixels.
    pub epsilon: f32,
    /// Smallest eigenvalue of the window's gradient matrix, per pixel, below which a point is
    /// untrackable (flat texture) at that level.
    pub min_eigenvalue: f32,
    /// Largest forward–backward error in pixels of a visible point.
    pub fb_threshold: f32,
    /// Side of the patch compared with the point's patch on the query frame (odd; 0 turns the
    /// appearance check of [`crate::occlusion`] off).
    pub appearance_patch: usize,
    /// Smallest ZNCC with the query patch of a point that is still itself (not occluded, not
    /// dragged onto another surface).
    pub appearance_threshold: f32,
}

impl Default for LucasKanadeConfig {
    /// Window 21, max level 3, 30 iterations, ε 0.01 px (OpenCV's defaults), forward–backward 1 px,
    /// appearance check on 7×7 patches at ZNCC 0.5 (chosen on the synthetic benchmark: the best
    /// balance of moving-point precision and recall among 7/11 px and 0.5/0.7).
    fn default() -> Self {
        Self {
            window: 21,
            max_level: 3,
            max_iterations: 30,
            epsilon: 0.01,
            min_eigenvalue: 1e-2,
            fb_threshold: 1.0,
            appearance_patch: 7,
            appearance_threshold: 0.5,
        }
    }
}

/// The default point tracker: pyramidal Lucas–Kanade with a forward–backward check.
///
/// ```
/// use magma_traces::lk::LucasKanade;
/// use magma_traces::synthetic::{Scene, SceneKind};
/// use magma_traces::tracker::{grid_points, Tracker};
///
/// let scene = Scene::generate(SceneKind::Pan, 128, 96, 4, 7);
/// let queries = grid_points(5, 128, 96);
/// let tracks = LucasKanade::default().track(&scene.frames, &queries, &|_| {}).unwrap();
/// assert_eq!(tracks.num_frames(), 4);
/// assert_eq!(tracks.num_points(), 25);
/// ```
#[derive(Debug, Clone, Default)]
pub struct LucasKanade {
    pub config: LucasKanadeConfig,
}

/// Lanes of the window loops: rows are padded to a multiple of this so that the sums run over
/// fixed-size chunks the compiler vectorises.
const LANES: usize = 8;

/// Per-thread buffers for one tracking window: the earlier frame's intensities and gradients,
/// `rows` rows of `cols` values; the gradients are zero in the padding columns so that those
/// columns add nothing to any sum. `border` holds the window sampled one pixel wider on every
/// side, from which the gradients are taken.
struct Scratch {
    rows: usize,
    cols: usize,
    template: Vec<f32>,
    grad_x: Vec<f32>,
    grad_y: Vec<f32>,
    border: Vec<f32>,
}

impl Scratch {
    fn new(window: usize) -> Self {
        let cols = padded_columns(window);
        let n = window * cols;
        Self {
            rows: window,
            cols,
            template: vec![0.0; n],
            grad_x: vec![0.0; n],
            grad_y: vec![0.0; n],
            border: vec![0.0; (window + 2) * (cols + 2)],
        }
    }

    /// Samples the earlier frame's window centred at `p` (`None` where it does not fit), takes
    /// its Scharr (3, 10, 3)/32 gradients and returns the gradient matrix (Σgx², Σgx·gy, Σgy²).
    ///
    /// Bilinear sampling at one sub-pixel offset and the Scharr filter are both convolutions, so
    /// the gradients of the sampled window equal sampled gradient images; taking them here reads
    /// one plane instead of three, which is what the window load costs.
    #[inline(always)]
    fn load(&mut self, image: &Plane, p: [f32; 2]) -> Option<[f32; 3]> {
        let (rows, cols) = (self.rows, self.cols);
        let wide = cols + 2;
        let at = image.locate(p[0], p[1], rows / 2 + 1, wide)?;
        image.sample(at, rows + 2, wide, &mut self.border);
        for r in 0..rows {
            let band = &self.border[r * wide..(r + 3) * wide];
            let (up, mid, down) = (&band[..wide], &band[wide..2 * wide], &band[2 * wide..]);
            let row = r * cols..(r + 1) * cols;
            self.template[row.clone()].copy_from_slice(&mid[1..cols + 1]);
            let (gx, gy) = (&mut self.grad_x[row.clone()], &mut self.grad_y[row]);
            // The window is square: columns from `rows` on are padding.
            for c in 0..rows {
                gx[c] = (3.0 * (up[c + 2] - up[c])
                    + 10.0 * (mid[c + 2] - mid[c])
                    + 3.0 * (down[c + 2] - down[c]))
                    * (1.0 / 32.0);
                gy[c] = (3.0 * (down[c] - up[c])
                    + 10.0 * (down[c + 1] - up[c + 1])
                    + 3.0 * (down[c + 2] - up[c + 2]))
                    * (1.0 / 32.0);
            }
            gx[rows..].fill(0.0);
            gy[rows..].fill(0.0);
        }
        let mut sums = [[0.0f32; LANES]; 3];
        for (row_x, row_y) in self
            .grad_x
            .chunks_exact(cols)
            .zip(self.grad_y.chunks_exact(cols))
        {
            let (xs, _) = row_x.as_chunks::<LANES>();
            let (ys, _) = row_y.as_chunks::<LANES>();
            for (x, y) in xs.iter().zip(ys) {
                for l in 0..LANES {
                    sums[0][l] += x[l] * x[l];
                    sums[1][l] += x[l] * y[l];
                    sums[2][l] += y[l] * y[l];
                }
            }
        }
        Some(sums.map(|lanes| lanes.iter().sum()))
    }

    /// The image mismatch vector Σ (template − target)·∇ against the later frame's window at
    /// `at` (bilinear samples computed on the fly, never stored).
    #[inline(always)]
    fn mismatch(&self, target: &Plane, at: WindowAt) -> [f32; 2] {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU supports AVX2, checked just above.
            return unsafe { self.mismatch_avx2(target, at) };
        }
        self.mismatch_portable(target, at)
    }

    /// [`Scratch::mismatch`] with explicit 8-lane AVX2 vectors (the compiler does not vectorise
    /// the shifted loads of the bilinear taps on its own).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn mismatch_avx2(&self, target: &Plane, at: WindowAt) -> [f32; 2] {
        use std::arch::x86_64::{
            __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps,
            _mm256_setzero_ps, _mm256_storeu_ps, _mm256_sub_ps,
        };
        let cols = self.cols;
        let (stride, data) = (target.stride(), target.data());
        let weights = at.weights.map(|w| _mm256_set1_ps(w));
        let (mut bx, mut by) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let load = |values: &[f32], c: usize| -> __m256 {
            let lanes = &values[c..c + LANES];
            // SAFETY: `lanes` holds exactly 8 f32 values (bounds-checked slice above).
            unsafe { _mm256_loadu_ps(lanes.as_ptr()) }
        };
        for r in 0..self.rows {
            let start = at.offset + r * stride;
            let top = &data[start..start + cols + 1];
            let bottom = &data[start + stride..start + stride + cols + 1];
            let row = r * cols..(r + 1) * cols;
            let (tm, gx, gy) = (
                &self.template[row.clone()],
                &self.grad_x[row.clone()],
                &self.grad_y[row],
            );
            for c in (0..cols).step_by(LANES) {
                let sampled = _mm256_add_ps(
                    _mm256_add_ps(
                        _mm256_mul_ps(weights[0], load(top, c)),
                        _mm256_mul_ps(weights[1], load(top, c + 1)),
                    ),
                    _mm256_add_ps(
                        _mm256_mul_ps(weights[2], load(bottom, c)),
                        _mm256_mul_ps(weights[3], load(bottom, c + 1)),
                    ),
                );
                let diff = _mm256_sub_ps(load(tm, c), sampled);
                bx = _mm256_add_ps(bx, _mm256_mul_ps(diff, load(gx, c)));
                by = _mm256_add_ps(by, _mm256_mul_ps(diff, load(gy, c)));
            }
        }
        let (mut sx, mut sy) = ([0.0f32; LANES], [0.0f32; LANES]);
        // SAFETY: each destination is an array of 8 f32 values.
        unsafe {
            _mm256_storeu_ps(sx.as_mut_ptr(), bx);
            _mm256_storeu_ps(sy.as_mut_ptr(), by);
        }
        [sx.iter().sum(), sy.iter().sum()]
    }

    /// [`Scratch::mismatch`] in plain Rust, lane-chunked.
    #[inline(always)]
    fn mismatch_portable(&self, target: &Plane, at: WindowAt) -> [f32; 2] {
        let cols = self.cols;
        let chunks = cols / LANES;
        let (stride, data) = (target.stride(), target.data());
        let [w00, w01, w10, w11] = at.weights;
        let mut bx = [0.0f32; LANES];
        let mut by = [0.0f32; LANES];
        for r in 0..self.rows {
            let start = at.offset + r * stride;
            let top = &data[start..start + cols + 1];
            let bottom = &data[start + stride..start + stride + cols + 1];
            let row = r * cols..(r + 1) * cols;
            let (t0, t1, b0, b1) = (
                lane_chunks(&top[..cols], chunks),
                lane_chunks(&top[1..], chunks),
                lane_chunks(&bottom[..cols], chunks),
                lane_chunks(&bottom[1..], chunks),
            );
            let (tm, gx, gy) = (
                lane_chunks(&self.template[row.clone()], chunks),
                lane_chunks(&self.grad_x[row.clone()], chunks),
                lane_chunks(&self.grad_y[row], chunks),
            );
            for k in 0..chunks {
                for l in 0..LANES {
                    let sampled = w00 * t0[k][l] + w01 * t1[k][l] + w10 * b0[k][l] + w11 * b1[k][l];
                    let diff = tm[k][l] - sampled;
                    bx[l] += diff * gx[k][l];
                    by[l] += diff * gy[k][l];
                }
            }
        }
        [bx.iter().sum(), by.iter().sum()]
    }
}

/// The first `chunks` whole lane chunks of `values`.
fn lane_chunks(values: &[f32], chunks: usize) -> &[[f32; LANES]] {
    &values.as_chunks::<LANES>().0[..chunks]
}

/// The finest level's intensities of a pyramid.
fn finest(pyramid: &Pyramid) -> Result<&Plane> {
    pyramid
        .levels()
        .first()
        .ok_or_else(|| TracesError::invalid("frames", "an empty frame has no pyramid"))
}

/// `window` rounded up to a whole number of [`LANES`].
fn padded_columns(window: usize) -> usize {
    window.div_ceil(LANES) * LANES
}

/// Outcome of tracking one point between two frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairResult {
    /// Where the point went; `None` when it was not tracked, its window left the image or its
    /// texture is too flat.
    pub position: Option<[f32; 2]>,
    /// Tracking back from `position` lands within `fb_threshold` pixels of the start.
    pub consistent: bool,
    /// `position` lies inside the image.
    pub inside: bool,
}

impl LucasKanade {
    /// A tracker with the given settings; fails on an even or zero window.
    pub fn new(config: LucasKanadeConfig) -> Result<Self> {
        if config.window == 0 || config.window.is_multiple_of(2) {
            return Err(TracesError::invalid(
                "window",
                format!("must be odd and positive, got {}", config.window),
            ));
        }
        if config.appearance_patch.is_multiple_of(2) && config.appearance_patch != 0 {
            return Err(TracesError::invalid(
                "appearance_patch",
                format!(
                    "must be odd, or 0 to turn the check off, got {}",
                    config.appearance_patch
                ),
            ));
        }
        Ok(Self { config })
    }

    /// Border each pyramid plane needs so that windows around in-image points can be sampled,
    /// including the padding columns of the window loops.
    pub fn pad(&self) -> usize {
        self.config.window / 2 + 3 + padded_columns(self.config.window) - self.config.window
    }

    /// Builds the pyramid of one frame as this tracker reads it.
    pub fn pyramid(&self, frame: &RgbImage) -> Pyramid {
        Pyramid::new(frame, self.config.max_level, self.pad())
    }

    /// Follows `point` from the frame of `from` into the frame of `to`; `None` when the window
    /// leaves the image or has too little texture.
    pub fn track_point(&self, from: &Pyramid, to: &Pyramid, point: [f32; 2]) -> Option<[f32; 2]> {
        let mut scratch = Scratch::new(self.config.window);
        self.track_point_with(from, to, point, [0.0; 2], &mut scratch)
    }

    /// [`LucasKanade::track_point`] starting from the displacement `initial` (pixels). Runs the
    /// window loops with 8-wide AVX2 vectors where the CPU has them.
    fn track_point_with(
        &self,
        from: &Pyramid,
        to: &Pyramid,
        point: [f32; 2],
        initial: [f32; 2],
        s: &mut Scratch,
    ) -> Option<[f32; 2]> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU supports AVX2, checked just above.
            return unsafe { self.track_point_avx2(from, to, point, initial, s) };
        }
        self.track_point_body(from, to, point, initial, s)
    }

    /// [`LucasKanade::track_point_body`] compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn track_point_avx2(
        &self,
        from: &Pyramid,
        to: &Pyramid,
        point: [f32; 2],
        initial: [f32; 2],
        s: &mut Scratch,
    ) -> Option<[f32; 2]> {
        self.track_point_body(from, to, point, initial, s)
    }

    /// Coarse-to-fine tracking of one point (inlined into each instruction-set variant, as is
    /// everything it calls).
    #[inline(always)]
    fn track_point_body(
        &self,
        from: &Pyramid,
        to: &Pyramid,
        point: [f32; 2],
        initial: [f32; 2],
        s: &mut Scratch,
    ) -> Option<[f32; 2]> {
        let levels = from.levels().len().min(to.levels().len());
        let top_scale = 1.0 / (1u32 << levels.saturating_sub(1)) as f32;
        let mut guess = [initial[0] * top_scale, initial[1] * top_scale];
        for level in (0..levels).rev() {
            let scale = 1.0 / (1u32 << level) as f32;
            let (px, py) = (point[0] * scale, point[1] * scale);
            let step = self.refine_level(
                &from.levels()[level],
                &to.levels()[level],
                [px, py],
                guess,
                s,
            )?;
            let total = [guess[0] + step[0], guess[1] + step[1]];
            guess = if level > 0 {
                [2.0 * total[0], 2.0 * total[1]]
            } else {
                total
            };
        }
        let moved = [point[0] + guess[0], point[1] + guess[1]];
        (moved[0].is_finite() && moved[1].is_finite()).then_some(moved)
    }

    /// Gauss–Newton refinement at one level; returns the step added to `guess`.
    #[inline(always)]
    fn refine_level(
        &self,
        from: &Plane,
        to: &Plane,
        p: [f32; 2],
        guess: [f32; 2],
        s: &mut Scratch,
    ) -> Option<[f32; 2]> {
        let half = self.config.window / 2;
        let [gxx, gxy, gyy] = s.load(from, p)?;
        let area = (s.rows * s.rows) as f32;
        let det = gxx * gyy - gxy * gxy;
        let min_eig = (gxx + gyy - ((gxx - gyy).powi(2) + 4.0 * gxy * gxy).sqrt()) / (2.0 * area);
        if min_eig < self.config.min_eigenvalue || det <= f32::EPSILON {
            return None;
        }
        let eps2 = self.config.epsilon * self.config.epsilon;
        let mut v = [0.0f32; 2];
        let mut previous = [0.0f32; 2];
        for iteration in 0..self.config.max_iterations {
            let (qx, qy) = (p[0] + guess[0] + v[0], p[1] + guess[1] + v[1]);
            let at = to.locate(qx, qy, half, s.cols)?;
            let [bx, by] = s.mismatch(to, at);
            let dx = (gyy * bx - gxy * by) / det;
            let dy = (gxx * by - gxy * bx) / det;
            // A step that undoes the previous one oscillates about the optimum: settle midway.
            let (ox, oy) = (dx + previous[0], dy + previous[1]);
            if iteration > 0 && ox * ox + oy * oy < eps2 {
                v[0] += 0.5 * dx;
                v[1] += 0.5 * dy;
                break;
            }
            v[0] += dx;
            v[1] += dy;
            if dx * dx + dy * dy < eps2 {
                break;
            }
            previous = [dx, dy];
        }
        Some(v)
    }

    /// Tracks `points` from the frame of `from` to the frame of `to` with the forward–backward
    /// check, in parallel over points; points with `tracked == false` are skipped.
    pub fn track_pair(
        &self,
        from: &Pyramid,
        to: &Pyramid,
        points: &[[f32; 2]],
        tracked: &[bool],
    ) -> Vec<PairResult> {
        let Some(base) = to.levels().first() else {
            return Vec::new();
        };
        let (w, h) = (base.width() as f32, base.height() as f32);
        let skipped = PairResult {
            position: None,
            consistent: false,
            inside: false,
        };
        points
            .par_iter()
            .zip(tracked.par_iter())
            .map_init(
                || Scratch::new(self.config.window),
                |scratch, (&p, &tracked)| {
                    if !tracked {
                        return skipped;
                    }
                    let Some(q) = self.track_point_with(from, to, p, [0.0; 2], scratch) else {
                        return skipped;
                    };
                    let back = self.track_point_with(to, from, q, [0.0; 2], scratch);
                    PairResult {
                        position: Some(q),
                        consistent: back.is_some_and(|b| {
                            (b[0] - p[0]).hypot(b[1] - p[1]) <= self.config.fb_threshold
                        }),
                        inside: q[0] >= 0.0 && q[1] >= 0.0 && q[0] <= w - 1.0 && q[1] <= h - 1.0,
                    }
                },
            )
            .collect()
    }
}

/// Where a point stands while a clip is tracked.
#[derive(Debug, Clone, Default)]
struct PointState {
    /// Followed by Lucas–Kanade (else lost: carried along with the scene).
    tracked: bool,
    own_motion: OwnMotion,
}

/// What one frame did to one point.
struct Update {
    position: [f32; 2],
    seen: bool,
    tracked: bool,
    /// The point's own step beyond the scene's motion, when it was verified.
    own_step: Option<[f32; 2]>,
}

impl Tracker for LucasKanade {
    /// Chains [`LucasKanade::track_pair`] frame to frame. A point is visible where it is inside
    /// the image, forward–backward consistent and still looks like its query patch
    /// ([`crate::occlusion`]); a point that left the image, lost its texture or failed the
    /// appearance check is carried with the scene's motion until it looks like itself again.
    fn track(
        &self,
        frames: &[RgbImage],
        queries: &[[f32; 2]],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Tracks> {
        let Some(first) = frames.first() else {
            return Err(TracesError::invalid("frames", "no frames to track"));
        };
        let (w, h) = first.dimensions();
        if let Some((index, f)) = frames
            .iter()
            .enumerate()
            .find(|(_, f)| f.dimensions() != (w, h))
        {
            return Err(TracesError::FrameSizeMismatch {
                index,
                got_w: f.width(),
                got_h: f.height(),
                want_w: w,
                want_h: h,
            });
        }
        let inside = |p: &[f32; 2]| {
            p[0] >= 0.0 && p[1] >= 0.0 && p[0] <= w as f32 - 1.0 && p[1] <= h as f32 - 1.0
        };
        let first_pyramid = self.pyramid(first);
        let mut previous = first_pyramid.clone();
        let appearance = Appearance::new(
            finest(&first_pyramid)?,
            queries,
            self.config.appearance_patch,
            self.config.appearance_threshold,
        );
        let mut states: Vec<PointState> = queries
            .iter()
            .map(|q| PointState {
                tracked: inside(q),
                ..Default::default()
            })
            .collect();
        let mut points = vec![queries.to_vec()];
        let mut visible = vec![states.iter().map(|s| s.tracked).collect::<Vec<_>>()];
        progress(0);
        // Pyramids are built a few frames at a time in parallel, then consumed pairwise.
        let batch = (2 * rayon::current_num_threads()).max(2);
        let mut t = 1;
        while t < frames.len() {
            let end = (t + batch).min(frames.len());
            let pyramids: Vec<Pyramid> =
                frames[t..end].par_iter().map(|f| self.pyramid(f)).collect();
            for next in pyramids {
                let last = points.last().map_or(&[][..], Vec::as_slice);
                let tracked: Vec<bool> = states.iter().map(|s| s.tracked).collect();
                let results = self.track_pair(&previous, &next, last, &tracked);
                let image = finest(&next)?;
                let verified: Vec<bool> = results
                    .par_iter()
                    .enumerate()
                    .map(|(n, r)| match r.position {
                        Some(q) if r.inside && r.consistent => appearance.matches(image, n, q),
                        _ => false,
                    })
                    .collect();
                let moved: Vec<[f32; 2]> = results
                    .iter()
                    .zip(last)
                    .map(|(r, p)| r.position.unwrap_or(*p))
                    .collect();
                let scene = SceneMotion::estimate(last, &moved, &verified, t as u64);
                let updates: Vec<Update> = (0..states.len())
                    .into_par_iter()
                    .map_init(
                        || Scratch::new(self.config.window),
                        |scratch, n| {
                            let by_scene = scene.apply(last[n]);
                            let r = &results[n];
                            match r.position {
                                Some(q) if verified[n] => Update {
                                    position: q,
                                    seen: true,
                                    tracked: true,
                                    own_step: Some([q[0] - by_scene[0], q[1] - by_scene[1]]),
                                },
                                // Inconsistent forward–backward but still itself: keep following.
                                Some(q) if r.inside && appearance.matches(image, n, q) => Update {
                                    position: q,
                                    seen: false,
                                    tracked: true,
                                    own_step: None,
                                },
                                _ => {
                                    let own = states[n].own_motion.step();
                                    let carried = [by_scene[0] + own[0], by_scene[1] + own[1]];
                                    let query = queries[n];
                                    // Re-acquire: match the query patch near the carried position.
                                    let guess = [carried[0] - query[0], carried[1] - query[1]];
                                    let found = self
                                        .track_point_with(
                                            &first_pyramid,
                                            &next,
                                            query,
                                            guess,
                                            scratch,
                                        )
                                        .filter(|p| {
                                            let near = (p[0] - carried[0]).hypot(p[1] - carried[1])
                                                <= (self.config.window / 2) as f32;
                                            near && inside(p) && appearance.matches(image, n, *p)
                                        });
                                    Update {
                                        position: found.unwrap_or(carried),
                                        seen: found.is_some(),
                                        tracked: found.is_some(),
                                        own_step: None,
                                    }
                                }
                            }
                        },
                    )
                    .collect();
                let mut frame_points = Vec::with_capacity(states.len());
                let mut frame_visible = Vec::with_capacity(states.len());
                for (state, update) in states.iter_mut().zip(updates) {
                    state.tracked = update.tracked;
                    if let Some(step) = update.own_step {
                        state.own_motion.record(step);
                    }
                    frame_points.push(update.position);
                    frame_visible.push(update.seen);
                }
                points.push(frame_points);
                visible.push(frame_visible);
                previous = next;
                progress(t);
                t += 1;
            }
        }
        Ok(Tracks { points, visible })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth, richly textured test image, shifted by (dx, dy).
    fn textured(w: u32, h: u32, dx: f32, dy: f32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 - dx, y as f32 - dy);
            let val = 128.0
                + 50.0 * (u * 0.21).sin() * (v * 0.17).cos()
                + 40.0 * (u * 0.07 + v * 0.11).sin()
                + 30.0 * ((u - v) * 0.13).cos();
            let g = val.clamp(0.0, 255.0) as u8;
            image::Rgb([g, g, g])
        })
    }

    #[test]
    fn window_gradients_of_a_ramp_are_its_slope() {
        let values: Vec<f32> = (0..40 * 40)
            .map(|i| 2.0 * (i % 40) as f32 - 1.5 * (i / 40) as f32)
            .collect();
        let pyramid = Pyramid::from_grey(values, 40, 40, 0, 16);
        let mut s = Scratch::new(5);
        let [gxx, gxy, gyy] = s.load(&pyramid.levels()[0], [20.3, 19.6]).unwrap();
        for r in 0..5 {
            for c in 0..s.cols {
                let (gx, gy) = (s.grad_x[r * s.cols + c], s.grad_y[r * s.cols + c]);
                if c < 5 {
                    assert!(
                        (gx - 2.0).abs() < 1e-4 && (gy + 1.5).abs() < 1e-4,
                        "{gx} {gy}"
                    );
                } else {
                    assert_eq!((gx, gy), (0.0, 0.0));
                }
            }
        }
        // The template is the ramp sampled around (20.3, 19.6).
        let centre = s.template[2 * s.cols + 2];
        assert!(
            (centre - (2.0 * 20.3 - 1.5 * 19.6)).abs() < 1e-3,
            "{centre}"
        );
        assert!((gxx - 25.0 * 4.0).abs() < 1e-2 && (gxy + 25.0 * 3.0).abs() < 1e-2);
        assert!((gyy - 25.0 * 2.25).abs() < 1e-2);
    }

    #[test]
    fn recovers_a_subpixel_translation() {
        let a = textured(160, 120, 0.0, 0.0);
        let b = textured(160, 120, 3.3, -2.1);
        let lk = LucasKanade::default();
        let (pa, pb) = (lk.pyramid(&a), lk.pyramid(&b));
        for p in [[40.0, 40.0], [80.5, 60.25], [120.0, 90.0]] {
            let q = lk.track_point(&pa, &pb, p).unwrap();
            assert!((q[0] - p[0] - 3.3).abs() < 0.05, "{q:?}");
            assert!((q[1] - p[1] + 2.1).abs() < 0.05, "{q:?}");
        }
    }

    #[test]
    fn pyramid_handles_large_motion() {
        let a = textured(256, 192, 0.0, 0.0);
        let b = textured(256, 192, 17.0, 11.0);
        let lk = LucasKanade::default();
        let q = lk
            .track_point(&lk.pyramid(&a), &lk.pyramid(&b), [128.0, 96.0])
            .unwrap();
        assert!(
            (q[0] - 145.0).abs() < 0.1 && (q[1] - 107.0).abs() < 0.1,
            "{q:?}"
        );
    }

    #[test]
    fn flat_regions_are_untrackable() {
        let a = RgbImage::from_pixel(64, 64, image::Rgb([90, 90, 90]));
        let lk = LucasKanade::default();
        let p = lk.pyramid(&a);
        assert_eq!(lk.track_point(&p, &p, [32.0, 32.0]), None);
    }

    #[test]
    fn points_leaving_the_image_become_invisible_and_move_with_the_scene() {
        let frames: Vec<RgbImage> = (0..4)
            .map(|t| textured(96, 96, 8.0 * t as f32, 0.0))
            .collect();
        let tracks = LucasKanade::default()
            .track(&frames, &[[90.0, 48.0], [20.0, 48.0]], &|_| {})
            .unwrap();
        assert!(!tracks.visible[3][0]);
        assert!(tracks.visible[3][1]);
        assert!((tracks.points[3][1][0] - 44.0).abs() < 0.1);
        // Carried by the scene's shift of 8 px per frame, measured on the visible point.
        assert!(
            (tracks.points[3][0][0] - 114.0).abs() < 0.1,
            "{:?}",
            tracks.points[3][0]
        );
    }

    #[test]
    fn an_occluded_point_is_invisible_stays_with_the_background_and_comes_back() {
        // A static textured background; a differently textured square slides over the point at
        // (40, 48) in frames 2–4 and is gone again by frame 6.
        let background = textured(128, 96, 0.0, 0.0);
        let frames: Vec<RgbImage> = (0..8)
            .map(|t| {
                let left = -40.0 + 16.0 * t as f32;
                RgbImage::from_fn(128, 96, |x, y| {
                    let (u, v) = (x as f32 - left, y as f32);
                    if (0.0..36.0).contains(&u) && (30.0..66.0).contains(&v) {
                        // The square's own texture, moving with it.
                        let g =
                            128.0 + 90.0 * (0.9 * u + 0.3 * v).sin() * (0.45 * v - 0.2 * u).cos();
                        image::Rgb([g as u8; 3])
                    } else {
                        *background.get_pixel(x, y)
                    }
                })
            })
            .collect();
        let queries: Vec<[f32; 2]> = (0..5)
            .flat_map(|r| (0..5).map(move |c| [12.0 + 24.0 * c as f32, 12.0 + 18.0 * r as f32]))
            .collect();
        let target = queries.iter().position(|q| *q == [36.0, 48.0]).unwrap();
        let tracks = LucasKanade::default()
            .track(&frames, &queries, &|_| {})
            .unwrap();
        let seen: Vec<bool> = tracks.visible.iter().map(|f| f[target]).collect();
        // Covered in frames 3 and 4 (square spans x 8..44 and 24..60).
        assert!(!seen[3] && !seen[4], "{seen:?}");
        assert!(seen[7], "{seen:?}");
        // Plain chained Lucas–Kanade is dragged off with the square; here the point stays
        // within a few pixels of where it is (a little drift comes from the frames before the
        // square covers it, when the window already sees its edge).
        for frame in &tracks.points {
            let p = frame[target];
            assert!((p[0] - 36.0).hypot(p[1] - 48.0) < 3.0, "{p:?}");
        }
    }

    #[test]
    fn rejects_even_windows_and_mismatched_frames() {
        let config = LucasKanadeConfig {
            window: 20,
            ..Default::default()
        };
        assert!(LucasKanade::new(config).is_err());
        let frames = [textured(32, 32, 0.0, 0.0), textured(33, 32, 0.0, 0.0)];
        let err = LucasKanade::default()
            .track(&frames, &[[5.0, 5.0]], &|_| {})
            .unwrap_err();
        assert!(matches!(
            err,
            TracesError::FrameSizeMismatch { index: 1, .. }
        ));
    }
}
