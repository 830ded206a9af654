//! Synthetic tracking benchmark with exact ground truth: a textured world plane seen through a known
//! camera homography per frame (pan, zoom, rotation), with independently moving textured objects that
//! occlude the background and each other.
//!
//! World coordinates are frame 0's pixel coordinates (`camera[0]` is the identity), so the true
//! camera-motion homography from frame t back to frame 0 is `camera[t]⁻¹`.

use image::RgbImage;
use nalgebra::Matrix3;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::homography::Homography;
use crate::tracker::Tracks;

/// The kinds of scene the benchmark renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SceneKind {
    /// Nothing moves: no camera motion, a static object.
    Static,
    /// The camera pans (translation only).
    Pan,
    /// The camera zooms in about the image centre.
    Zoom,
    /// The camera rolls about the image centre.
    Rotate,
    /// Fixed camera; three moving objects, one passing under a static occluding bar.
    Objects,
    /// Panning camera and moving objects.
    PanObjects,
    /// Pan, zoom and rotation together, with moving objects.
    Combined,
}

impl SceneKind {
    /// Every kind, in benchmark order.
    pub const ALL: [SceneKind; 7] = [
        SceneKind::Static,
        SceneKind::Pan,
        SceneKind::Zoom,
        SceneKind::Rotate,
        SceneKind::Objects,
        SceneKind::PanObjects,
        SceneKind::Combined,
    ];

    /// The kind of a [`SceneKind::name`].
    ///
    /// ```
    /// use magma_traces::synthetic::SceneKind;
    /// assert_eq!(SceneKind::from_name("pan-objects"), Some(SceneKind::PanObjects));
    /// assert_eq!(SceneKind::from_name("dolly"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Kebab-case name, as in the benchmark table.
    pub fn name(self) -> &'static str {
        match self {
            SceneKind::Static => "static",
            SceneKind::Pan => "pan",
            SceneKind::Zoom => "zoom",
            SceneKind::Rotate => "rotate",
            SceneKind::Objects => "objects",
            SceneKind::PanObjects => "pan-objects",
            SceneKind::Combined => "combined",
        }
    }

    fn camera_motion(self) -> CameraMotion {
        let none = CameraMotion::default();
        match self {
            SceneKind::Static | SceneKind::Objects => none,
            SceneKind::Pan | SceneKind::PanObjects => CameraMotion {
                pan: [-3.0, -1.25],
                ..none
            },
            SceneKind::Zoom => CameraMotion {
                zoom: 0.012,
                ..none
            },
            SceneKind::Rotate => CameraMotion {
                roll_degrees: 0.7,
                ..none
            },
            SceneKind::Combined => CameraMotion {
                pan: [2.0, -1.0],
                zoom: 0.006,
                roll_degrees: 0.4,
            },
        }
    }

    fn has_moving_objects(self) -> bool {
        matches!(
            self,
            SceneKind::Objects | SceneKind::PanObjects | SceneKind::Combined
        )
    }
}

/// Per-frame camera motion (pixels, fraction and degrees per frame).
#[derive(Debug, Clone, Copy, Default)]
struct CameraMotion {
    pan: [f64; 2],
    zoom: f64,
    roll_degrees: f64,
}

impl CameraMotion {
    /// World (frame-0 pixels) → frame-t pixels: zoom and roll about the image centre, then pan.
    fn at(&self, t: usize, w: u32, h: u32) -> Homography {
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        let t = t as f64;
        let s = (1.0 + self.zoom).powf(t);
        let a = (self.roll_degrees * t).to_radians();
        let (c, sn) = (s * a.cos(), s * a.sin());
        let (px, py) = (self.pan[0] * t, self.pan[1] * t);
        Homography(Matrix3::new(
            c,
            -sn,
            cx - c * cx + sn * cy + px,
            sn,
            c,
            cy - sn * cx - c * cy + py,
            0.0,
            0.0,
            1.0,
        ))
    }
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Disc { radius: f64 },
    Rect { half_w: f64, half_h: f64 },
}

impl Shape {
    fn contains(&self, local: [f64; 2]) -> bool {
        match *self {
            Shape::Disc { radius } => local[0].hypot(local[1]) <= radius,
            Shape::Rect { half_w, half_h } => local[0].abs() <= half_w && local[1].abs() <= half_h,
        }
    }

    fn half_extent(&self) -> f64 {
        match *self {
            Shape::Disc { radius } => radius,
            Shape::Rect { half_w, half_h } => half_w.max(half_h),
        }
    }
}

/// A textured object translating in the world plane.
#[derive(Debug, Clone)]
struct MovingObject {
    start: [f64; 2],
    velocity: [f64; 2],
    shape: Shape,
    texture: Texture,
}

impl MovingObject {
    fn center(&self, t: usize) -> [f64; 2] {
        [
            self.start[0] + self.velocity[0] * t as f64,
            self.start[1] + self.velocity[1] * t as f64,
        ]
    }

    fn local(&self, world: [f64; 2], t: usize) -> [f64; 2] {
        let c = self.center(t);
        [world[0] - c[0], world[1] - c[1]]
    }

    fn is_moving(&self) -> bool {
        self.velocity[0] != 0.0 || self.velocity[1] != 0.0
    }
}

/// A colour texture over a rectangle of the plane, sampled bilinearly with clamped borders.
#[derive(Debug, Clone)]
struct Texture {
    origin: [f64; 2],
    image: RgbImage,
}

impl Texture {
    /// Multi-octave value noise around `base` colour, covering `size` pixels from `origin`.
    fn noise(origin: [f64; 2], size: [u32; 2], seed: u64, base: [f32; 3], contrast: f32) -> Self {
        const OCTAVES: [(f64, f32); 4] = [(40.0, 1.0), (17.0, 0.7), (7.0, 0.5), (3.0, 0.35)];
        let norm: f32 = OCTAVES.iter().map(|o| o.1).sum();
        let mut image = RgbImage::new(size[0].max(1), size[1].max(1));
        let width = image.width() as usize;
        image
            .par_chunks_mut(3 * width)
            .enumerate()
            .for_each(|(y, row)| {
                for (x, px) in row.chunks_exact_mut(3).enumerate() {
                    let (wx, wy) = (x as f64, y as f64);
                    for (ch, out) in px.iter_mut().enumerate() {
                        let mut v = 0.0f32;
                        for (o, &(cell, amp)) in OCTAVES.iter().enumerate() {
                            let key = seed ^ ((o as u64) << 8) ^ ((ch as u64) << 16);
                            v += amp * lattice_noise(wx / cell, wy / cell, key);
                        }
                        let val = base[ch] + contrast * (v / norm - 0.5) * 2.0;
                        *out = val.clamp(0.0, 255.0) as u8;
                    }
                }
            });
        Self { origin, image }
    }

    fn sample(&self, p: [f64; 2]) -> [f32; 3] {
        let (w, h) = (self.image.width() as f64, self.image.height() as f64);
        let x = (p[0] - self.origin[0]).clamp(0.0, w - 1.0);
        let y = (p[1] - self.origin[1]).clamp(0.0, h - 1.0);
        let (x0, y0) = (x.floor(), y.floor());
        let (ax, ay) = ((x - x0) as f32, (y - y0) as f32);
        let (x0, y0) = (x0 as u32, y0 as u32);
        let (x1, y1) = (
            (x0 + 1).min(self.image.width() - 1),
            (y0 + 1).min(self.image.height() - 1),
        );
        let get = |x, y| self.image.get_pixel(x, y).0;
        let (a, b, c, d) = (get(x0, y0), get(x1, y0), get(x0, y1), get(x1, y1));
        std::array::from_fn(|i| {
            (1.0 - ax) * (1.0 - ay) * a[i] as f32
                + ax * (1.0 - ay) * b[i] as f32
                + (1.0 - ax) * ay * c[i] as f32
                + ax * ay * d[i] as f32
        })
    }
}

/// Smoothly interpolated hash noise in [0, 1) on the unit lattice.
fn lattice_noise(x: f64, y: f64, key: u64) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i64, fy as i64);
    let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (smooth(x - fx) as f32, smooth(y - fy) as f32);
    let at = |i: i64, j: i64| hash01(i, j, key);
    let top = at(ix, iy) * (1.0 - sx) + at(ix + 1, iy) * sx;
    let bottom = at(ix, iy + 1) * (1.0 - sx) + at(ix + 1, iy + 1) * sx;
    top * (1.0 - sy) + bottom * sy
}

/// A well-mixed hash (SplitMix64 finaliser) of a lattice point, mapped to [0, 1).
fn hash01(i: i64, j: i64, key: u64) -> f32 {
    let mut z = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
        .wrapping_add(key.wrapping_mul(0x1656_67B1_9E37_79F9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// Which surface a world point shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    Background,
    Object(usize),
}

/// A rendered synthetic video with its exact geometry.
#[derive(Debug, Clone)]
pub struct Scene {
    pub kind: SceneKind,
    pub width: u32,
    pub height: u32,
    pub frames: Vec<RgbImage>,
    /// World (= frame 0 pixels) → frame t pixels, per frame.
    pub camera: Vec<Homography>,
    background: Texture,
    objects: Vec<MovingObject>,
}

/// Ground truth for a set of query points: exact tracks, visibility and which points move in the
/// world (lie on a moving object).
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    pub tracks: Tracks,
    pub moving: Vec<bool>,
}

impl Scene {
    /// Renders `num_frames` frames of a `width`×`height` scene of the given kind; same seed, same
    /// scene.
    ///
    /// ```
    /// use magma_traces::synthetic::{Scene, SceneKind};
    /// let scene = Scene::generate(SceneKind::Pan, 64, 48, 3, 1);
    /// assert_eq!(scene.frames.len(), 3);
    /// // Pure pan: frame 2 shows the world shifted by two steps of the pan.
    /// let p = scene.camera[2].apply([10.0, 10.0]).unwrap();
    /// assert!((p[0] - 4.0).abs() < 1e-9 && (p[1] - 7.5).abs() < 1e-9);
    /// ```
    pub fn generate(
        kind: SceneKind,
        width: u32,
        height: u32,
        num_frames: usize,
        seed: u64,
    ) -> Self {
        let (w, h) = (width.max(8), height.max(8));
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_0F5C_E4E5);
        let motion = kind.camera_motion();
        let camera: Vec<Homography> = (0..num_frames).map(|t| motion.at(t, w, h)).collect();
        let (wf, hf) = (w as f64, h as f64);
        let background = Texture::noise(
            [-wf, -hf],
            [3 * w, 3 * h],
            rng.random(),
            [128.0, 120.0, 110.0],
            110.0,
        );
        let objects = make_objects(kind, w, h, num_frames, &mut rng);
        let mut scene = Self {
            kind,
            width: w,
            height: h,
            frames: Vec::with_capacity(num_frames),
            camera,
            background,
            objects,
        };
        scene.frames = (0..num_frames).map(|t| scene.render(t)).collect();
        scene
    }

    fn surface_at(&self, world: [f64; 2], t: usize) -> Surface {
        self.objects
            .iter()
            .enumerate()
            .rev()
            .find(|(_, o)| o.shape.contains(o.local(world, t)))
            .map_or(Surface::Background, |(i, _)| Surface::Object(i))
    }

    fn render(&self, t: usize) -> RgbImage {
        let (w, h) = (self.width, self.height);
        let to_world = self.camera[t]
            .inverse()
            .unwrap_or_else(Homography::identity);
        let mut image = RgbImage::new(w, h);
        image
            .par_chunks_mut(3 * w as usize)
            .enumerate()
            .for_each(|(y, row)| {
                for (x, px) in row.chunks_exact_mut(3).enumerate() {
                    let world = to_world
                        .apply([x as f64, y as f64])
                        .unwrap_or([x as f64, y as f64]);
                    let colour = match self.surface_at(world, t) {
                        Surface::Background => self.background.sample(world),
                        Surface::Object(i) => {
                            let o = &self.objects[i];
                            o.texture.sample(o.local(world, t))
                        }
                    };
                    for (out, c) in px.iter_mut().zip(colour) {
                        *out = c.round().clamp(0.0, 255.0) as u8;
                    }
                }
            });
        image
    }

    /// Exact tracks of `queries` (pixels on frame 0): positions in every frame, visibility (inside
    /// the frame and not covered by another surface) and whether each lies on a moving object.
    pub fn ground_truth(&self, queries: &[[f32; 2]]) -> GroundTruth {
        let (w, h) = (self.width, self.height);
        let surfaces: Vec<(Surface, [f64; 2])> = queries
            .iter()
            .map(|q| {
                let world = [q[0] as f64, q[1] as f64];
                match self.surface_at(world, 0) {
                    Surface::Background => (Surface::Background, world),
                    Surface::Object(i) => (Surface::Object(i), self.objects[i].local(world, 0)),
                }
            })
            .collect();
        let mut points = Vec::with_capacity(self.frames.len());
        let mut visible = Vec::with_capacity(self.frames.len());
        for (t, camera) in self.camera.iter().enumerate() {
            let (frame_points, frame_visible): (Vec<[f32; 2]>, Vec<bool>) = surfaces
                .iter()
                .map(|&(surface, anchor)| {
                    let world = match surface {
                        Surface::Background => anchor,
                        Surface::Object(i) => {
                            let c = self.objects[i].center(t);
                            [c[0] + anchor[0], c[1] + anchor[1]]
                        }
                    };
                    let p = camera.apply(world).unwrap_or([f64::NAN, f64::NAN]);
                    let inside = p[0] >= 0.0
                        && p[1] >= 0.0
                        && p[0] <= (w as f64 - 1.0)
                        && p[1] <= (h as f64 - 1.0);
                    let seen = inside && self.surface_at(world, t) == surface;
                    ([p[0] as f32, p[1] as f32], seen)
                })
                .unzip();
            points.push(frame_points);
            visible.push(frame_visible);
        }
        let moving = surfaces
            .iter()
            .map(|(s, _)| matches!(s, Surface::Object(i) if self.objects[*i].is_moving()))
            .collect();
        GroundTruth {
            tracks: Tracks { points, visible },
            moving,
        }
    }
}

/// Objects of a scene: three movers (sizes relative to the frame, 4–6 px per frame, heading
/// roughly through the centre) plus a static occluding bar on top, or one static disc for
/// [`SceneKind::Static`].
fn make_objects(
    kind: SceneKind,
    w: u32,
    h: u32,
    num_frames: usize,
    rng: &mut StdRng,
) -> Vec<MovingObject> {
    let (wf, hf) = (w as f64, h as f64);
    let side = wf.min(hf);
    let palette = [
        [220.0, 60.0, 50.0],
        [50.0, 170.0, 220.0],
        [230.0, 200.0, 40.0],
        [90.0, 60.0, 160.0],
    ];
    let object = |rng: &mut StdRng, start, velocity, shape: Shape, colour: [f32; 3]| {
        let r = shape.half_extent();
        let size = (2.0 * r + 4.0).ceil() as u32;
        MovingObject {
            start,
            velocity,
            shape,
            texture: Texture::noise(
                [-r - 2.0, -r - 2.0],
                [size, size],
                rng.random(),
                colour,
                90.0,
            ),
        }
    };
    if kind == SceneKind::Static {
        let disc = Shape::Disc {
            radius: 0.15 * side,
        };
        return vec![object(
            rng,
            [0.5 * wf, 0.5 * hf],
            [0.0, 0.0],
            disc,
            palette[0],
        )];
    }
    if !kind.has_moving_objects() {
        return Vec::new();
    }
    let span = num_frames.saturating_sub(1).max(1) as f64;
    let mut objects: Vec<MovingObject> = (0..3)
        .map(|i| {
            // Start in one of three sectors, head towards a point near the centre.
            let sector = i as f64 * 2.1 + rng.random_range(-0.3..0.3);
            let start = [
                0.5 * wf + 0.27 * wf * sector.cos(),
                0.5 * hf + 0.27 * hf * sector.sin(),
            ];
            let speed: f64 = rng.random_range(4.0..6.0);
            let target = [
                0.5 * wf + rng.random_range(-0.1..0.1) * wf,
                0.5 * hf + rng.random_range(-0.1..0.1) * hf,
            ];
            let (dx, dy) = (target[0] - start[0], target[1] - start[1]);
            let len = dx.hypot(dy).max(1e-9);
            // Do not travel further than the distance to the target and a bit beyond.
            let speed = speed.min(1.6 * len / span).max(3.5);
            let shape = if i == 1 {
                Shape::Rect {
                    half_w: 0.1 * side,
                    half_h: 0.08 * side,
                }
            } else {
                Shape::Disc {
                    radius: rng.random_range(0.09..0.12) * side,
                }
            };
            object(
                rng,
                start,
                [speed * dx / len, speed * dy / len],
                shape,
                palette[i],
            )
        })
        .collect();
    // A static bar across the middle that the movers pass under.
    let bar = Shape::Rect {
        half_w: 0.025 * side,
        half_h: 0.3 * hf,
    };
    objects.push(object(
        rng,
        [0.5 * wf, 0.5 * hf],
        [0.0, 0.0],
        bar,
        palette[3],
    ));
    objects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::grid_points;

    #[test]
    fn same_seed_same_scene() {
        let a = Scene::generate(SceneKind::Combined, 96, 64, 3, 9);
        let b = Scene::generate(SceneKind::Combined, 96, 64, 3, 9);
        assert_eq!(a.frames, b.frames);
        let c = Scene::generate(SceneKind::Combined, 96, 64, 3, 10);
        assert_ne!(a.frames, c.frames);
    }

    #[test]
    fn ground_truth_colours_follow_the_points() {
        // Each visible ground-truth point shows (nearly) the colour it had in frame 0.
        let scene = Scene::generate(SceneKind::Combined, 160, 120, 6, 3);
        let queries = grid_points(10, 160, 120);
        let gt = scene.ground_truth(&queries);
        let colour = |t: usize, p: [f32; 2]| {
            let px = scene.frames[t].get_pixel(p[0].round() as u32, p[1].round() as u32);
            px.0.map(|c| c as f32)
        };
        let mut checked = 0;
        let mut total_err = 0.0;
        for n in 0..queries.len() {
            for t in 1..6 {
                if gt.tracks.visible[t][n] {
                    let (a, b) = (
                        colour(0, gt.tracks.points[0][n]),
                        colour(t, gt.tracks.points[t][n]),
                    );
                    total_err += (0..3).map(|i| (a[i] - b[i]).abs()).sum::<f32>() / 3.0;
                    checked += 1;
                }
            }
        }
        assert!(checked > 300);
        // Rounding to the nearest pixel of a smooth texture: small mean colour change.
        assert!(
            total_err / (checked as f32) < 12.0,
            "{}",
            total_err / checked as f32
        );
    }

    #[test]
    fn objects_move_and_occlude() {
        let scene = Scene::generate(SceneKind::Objects, 256, 192, 16, 1);
        let gt = scene.ground_truth(&grid_points(15, 256, 192));
        let movers = gt.moving.iter().filter(|&&m| m).count();
        assert!(movers >= 10, "{movers} moving points");
        let occluded = (0..gt.moving.len())
            .filter(|&n| (0..16).any(|t| !gt.tracks.visible[t][n]))
            .count();
        assert!(occluded >= 5, "{occluded} points ever occluded");
        assert!(gt.tracks.visible[0].iter().all(|&v| v));
    }

    #[test]
    fn camera_maps_compose_pan_zoom_and_roll() {
        let m = CameraMotion {
            pan: [1.0, 2.0],
            zoom: 0.1,
            roll_degrees: 90.0,
        };
        // About the centre (50, 50): rotate 90°, scale 1.1, then shift (1, 2).
        let p = m.at(1, 100, 100).apply([60.0, 50.0]).unwrap();
        assert!(
            (p[0] - 51.0).abs() < 1e-9 && (p[1] - 63.0).abs() < 1e-9,
            "{p:?}"
        );
    }
}
