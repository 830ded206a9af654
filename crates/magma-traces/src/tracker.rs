//! Point tracks and the [`Tracker`] interface every point tracker implements.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Tracks of `N` points over `T` frames: pixel positions and per-frame visibility.
///
/// `points[t][n]` is point `n` in frame `t` as (x, y) in pixels of the tracked frames;
/// `visible[t][n]` says whether the tracker believes it is visible there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracks {
    pub points: Vec<Vec<[f32; 2]>>,
    pub visible: Vec<Vec<bool>>,
}

impl Tracks {
    /// Number of frames `T`.
    pub fn num_frames(&self) -> usize {
        self.points.len()
    }

    /// Number of points `N`.
    pub fn num_points(&self) -> usize {
        self.points.first().map_or(0, Vec::len)
    }

    /// The trace of point `n`: its position in every frame.
    pub fn trace(&self, n: usize) -> Vec<[f32; 2]> {
        self.points.iter().map(|frame| frame[n]).collect()
    }

    /// Keeps only the points whose indices are listed, in that order.
    pub fn subset(&self, indices: &[usize]) -> Tracks {
        Tracks {
            points: self
                .points
                .iter()
                .map(|f| indices.iter().map(|&i| f[i]).collect())
                .collect(),
            visible: self
                .visible
                .iter()
                .map(|f| indices.iter().map(|&i| f[i]).collect())
                .collect(),
        }
    }
}

/// A point tracker: follows query points given on frame 0 through all frames.
///
/// The pyramidal Lucas–Kanade tracker ([`crate::lk::LucasKanade`]) is the default; a learned
/// CoTracker-class tracker can implement the same trait without touching the rest of the pipeline.
pub trait Tracker {
    /// Tracks `queries` (pixel positions on `frames[0]`) through `frames`, calling `progress(t)`
    /// after frame `t` is done. All frames have the same size; `frames` is not empty.
    fn track(
        &self,
        frames: &[RgbImage],
        queries: &[[f32; 2]],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Tracks>;
}

/// The `s`×`s` query grid CoTracker places on a `width`×`height` frame: `s` evenly spaced values from
/// a margin of width/64 to size − margin on each axis (the same margin on both axes), rows
/// (y) outermost. `s = 1` gives the centre.
///
/// ```
/// let grid = magma_traces::tracker::grid_points(3, 128, 64);
/// assert_eq!(grid.len(), 9);
/// assert_eq!(grid[0], [2.0, 2.0]);
/// assert_eq!(grid[1], [64.0, 2.0]);
/// assert_eq!(grid[8], [126.0, 62.0]);
/// ```
pub fn grid_points(size: usize, width: u32, height: u32) -> Vec<[f32; 2]> {
    let (w, h) = (width as f32, height as f32);
    if size == 1 {
        return vec![[w / 2.0, h / 2.0]];
    }
    // CoTracker's grid uses the same margin, width/64, on both axes.
    let margin = w / 64.0;
    let axis =
        |extent: f32, i: usize| margin + (extent - 2.0 * margin) * i as f32 / (size - 1) as f32;
    (0..size)
        .flat_map(|r| (0..size).map(move |c| [axis(w, c), axis(h, r)]))
        .collect()
}
