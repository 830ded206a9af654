//! Pyramidal Lucas–Kanade point tracking (Bouguet's iterative scheme) with a forward–backward
//! consistency check for visibility.
//!
//! Each point is chained frame to frame from its query on frame 0: at every pyramid level, coarse to
//! fine, the window around the point in the earlier frame is matched against the later frame by
//! Gauss–Newton steps on bilinearly sampled intensities and Scharr gradients. A point counts as
//! visible in frame t+1 when tracking it back to frame t lands within `fb_threshold` pixels of where
//! it started and it is still inside the image.

use image::RgbImage;
use rayon::prelude::*;

use crate::error::{Result, TracesError};
use crate::pyramid::{Level, Pyramid};
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
}

impl Default for LucasKanadeConfig {
    /// Window 21, max level 3, 30 iterations, ε 0.01 px (OpenCV's defaults), forward–backward 1 px.
    fn default() -> Self {
        Self {
            window: 21,
            max_level: 3,
            max_iterations: 30,
            epsilon: 0.01,
            min_eigenvalue: 1e-2,
            fb_threshold: 1.0,
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

/// Per-thread buffers for one tracking window.
struct Scratch {
    template: Vec<f32>,
    grad_x: Vec<f32>,
    grad_y: Vec<f32>,
    target: Vec<f32>,
}

impl Scratch {
    fn new(window: usize) -> Self {
        let n = window * window;
        Self {
            template: vec![0.0; n],
            grad_x: vec![0.0; n],
            grad_y: vec![0.0; n],
            target: vec![0.0; n],
        }
    }
}

/// Outcome of tracking one point between two frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairResult {
    pub position: [f32; 2],
    pub visible: bool,
    /// False once the point has left the image; it is then no longer tracked.
    pub in_view: bool,
}

impl LucasKanade {
    /// A tracker with the given settings; fails on an even or zero window.
    pub fn new(config: LucasKanadeConfig) -> Result<Self> {
        if config.window == 0 || config.window % 2 == 0 {
            return Err(TracesError::invalid(
                "window",
                format!("must be odd and positive, got {}", config.window),
            ));
        }
        Ok(Self { config })
    }

    /// Border each pyramid plane needs so that windows around in-image points can be sampled.
    pub fn pad(&self) -> usize {
        self.config.window / 2 + 3
    }

    /// Builds the pyramid of one frame as this tracker reads it.
    pub fn pyramid(&self, frame: &RgbImage) -> Pyramid {
        Pyramid::new(frame, self.config.max_level, self.pad())
    }

    /// Follows `point` from the frame of `from` into the frame of `to`; `None` when the window
    /// leaves the image or has too little texture.
    pub fn track_point(&self, from: &Pyramid, to: &Pyramid, point: [f32; 2]) -> Option<[f32; 2]> {
        let mut scratch = Scratch::new(self.config.window);
        self.track_point_with(from, to, point, &mut scratch)
    }

    fn track_point_with(
        &self,
        from: &Pyramid,
        to: &Pyramid,
        point: [f32; 2],
        s: &mut Scratch,
    ) -> Option<[f32; 2]> {
        let levels = from.levels().len().min(to.levels().len());
        let mut guess = [0.0f32; 2];
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
    fn refine_level(
        &self,
        from: &Level,
        to: &Level,
        p: [f32; 2],
        guess: [f32; 2],
        s: &mut Scratch,
    ) -> Option<[f32; 2]> {
        let half = self.config.window / 2;
        if !from.image.window_fits(p[0], p[1], half) {
            return None;
        }
        from.image.sample_window(p[0], p[1], half, &mut s.template);
        from.grad_x.sample_window(p[0], p[1], half, &mut s.grad_x);
        from.grad_y.sample_window(p[0], p[1], half, &mut s.grad_y);
        let (mut gxx, mut gxy, mut gyy) = (0.0f32, 0.0f32, 0.0f32);
        for (&gx, &gy) in s.grad_x.iter().zip(&s.grad_y) {
            gxx += gx * gx;
            gxy += gx * gy;
            gyy += gy * gy;
        }
        let area = s.template.len() as f32;
        let det = gxx * gyy - gxy * gxy;
        let min_eig = (gxx + gyy - ((gxx - gyy).powi(2) + 4.0 * gxy * gxy).sqrt()) / (2.0 * area);
        if min_eig < self.config.min_eigenvalue || det <= f32::EPSILON {
            return None;
        }
        let mut v = [0.0f32; 2];
        for _ in 0..self.config.max_iterations {
            let (qx, qy) = (p[0] + guess[0] + v[0], p[1] + guess[1] + v[1]);
            if !to.image.window_fits(qx, qy, half) {
                return None;
            }
            to.image.sample_window(qx, qy, half, &mut s.target);
            let (mut bx, mut by) = (0.0f32, 0.0f32);
            for i in 0..s.template.len() {
                let diff = s.template[i] - s.target[i];
                bx += diff * s.grad_x[i];
                by += diff * s.grad_y[i];
            }
            let dx = (gyy * bx - gxy * by) / det;
            let dy = (gxx * by - gxy * bx) / det;
            v[0] += dx;
            v[1] += dy;
            if dx * dx + dy * dy < self.config.epsilon * self.config.epsilon {
                break;
            }
        }
        Some(v)
    }

    /// Tracks `points` from the frame of `from` to the frame of `to` with the forward–backward
    /// check, in parallel over points. Points with `in_view == false` stay where they are.
    pub fn track_pair(
        &self,
        from: &Pyramid,
        to: &Pyramid,
        points: &[[f32; 2]],
        in_view: &[bool],
    ) -> Vec<PairResult> {
        let Some(base) = to.levels().first() else {
            return Vec::new();
        };
        let (w, h) = (base.image.width() as f32, base.image.height() as f32);
        points
            .par_iter()
            .zip(in_view.par_iter())
            .map_init(
                || Scratch::new(self.config.window),
                |scratch, (&p, &alive)| {
                    let stay = PairResult {
                        position: p,
                        visible: false,
                        in_view: alive,
                    };
                    if !alive {
                        return stay;
                    }
                    let Some(q) = self.track_point_with(from, to, p, scratch) else {
                        return stay;
                    };
                    let inside = q[0] >= 0.0 && q[1] >= 0.0 && q[0] <= w - 1.0 && q[1] <= h - 1.0;
                    let back = self.track_point_with(to, from, q, scratch);
                    let consistent = back.is_some_and(|b| {
                        (b[0] - p[0]).hypot(b[1] - p[1]) <= self.config.fb_threshold
                    });
                    PairResult {
                        position: q,
                        visible: inside && consistent,
                        in_view: inside,
                    }
                },
            )
            .collect()
    }
}

impl Tracker for LucasKanade {
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
        let mut in_view: Vec<bool> = queries.iter().map(inside).collect();
        let mut points = vec![queries.to_vec()];
        let mut visible = vec![in_view.clone()];
        progress(0);
        // Pyramids are built a few frames at a time in parallel, then consumed pairwise.
        let batch = (2 * rayon::current_num_threads()).max(2);
        let mut previous = self.pyramid(first);
        let mut t = 1;
        while t < frames.len() {
            let end = (t + batch).min(frames.len());
            let pyramids: Vec<Pyramid> =
                frames[t..end].par_iter().map(|f| self.pyramid(f)).collect();
            for next in pyramids {
                let last = points.last().map_or(&[][..], Vec::as_slice);
                let results = self.track_pair(&previous, &next, last, &in_view);
                in_view = results.iter().map(|r| r.in_view).collect();
                visible.push(results.iter().map(|r| r.visible).collect());
                points.push(results.iter().map(|r| r.position).collect());
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
    fn points_leaving_the_image_become_invisible_and_stay_put() {
        let frames: Vec<RgbImage> = (0..4)
            .map(|t| textured(96, 96, 8.0 * t as f32, 0.0))
            .collect();
        let tracks = LucasKanade::default()
            .track(&frames, &[[90.0, 48.0], [20.0, 48.0]], &|_| {})
            .unwrap();
        assert!(!tracks.visible[3][0]);
        assert!(tracks.visible[3][1]);
        assert!((tracks.points[3][1][0] - 44.0).abs() < 0.1);
        assert_eq!(tracks.points[3][0], tracks.points[2][0]);
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
