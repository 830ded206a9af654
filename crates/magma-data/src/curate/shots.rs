//! Shot detection equal to PySceneDetect's `ContentDetector` and `AdaptiveDetector`
//! (`scenedetect` 0.7.x; 0.6.x downscaling and filtering as options).
//!
//! Per frame, after PySceneDetect's automatic downscale: HSV planes (OpenCV 8-bit), the mean
//! absolute difference of each plane to the previous frame's, optionally of dilated Canny edge
//! maps of V, and the weighted mean of those (`content_val`). `ContentDetector` cuts where the
//! score reaches `threshold`, through the flash filter that enforces `min_scene_len`;
//! `AdaptiveDetector` cuts where a frame's score is `adaptive_threshold` times the mean of its
//! `window_width` neighbours on both sides. Shots are frame ranges `[start, end)`; a video
//! with no cut has no shots, as PySceneDetect's `detect()` returns.
//!
//! ```
//! use image::RgbImage;
//! use magma_data::curate::shots::{ShotConfig, ShotDetector};
//!
//! // 40 grey frames, then 40 white ones: one cut at frame 40.
//! let mut detector = ShotDetector::new(ShotConfig::default(), 64, 48)?;
//! for i in 0..80 {
//!     let v = if i < 40 { 60 } else { 250 };
//!     detector.push(&RgbImage::from_pixel(64, 48, image::Rgb([v, v, v])))?;
//! }
//! let shots = detector.finish(None);
//! assert_eq!(shots.cuts, vec![40]);
//! assert_eq!((shots.scenes[1].start, shots.scenes[1].end), (40, 80));
//! # Ok::<(), magma_data::DataError>(())
//! ```

use image::RgbImage;
use magma_traces::mp4::FrameRate;
use serde::{Deserialize, Serialize};

use super::cvops::{self, Plane};
use crate::error::{DataError, Result};

/// Which PySceneDetect detector to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorKind {
    /// `ContentDetector`: a fixed threshold on the frame score.
    Content,
    /// `AdaptiveDetector`: the score relative to a rolling window of neighbours.
    Adaptive,
}

/// How `ContentDetector` enforces `min_scene_len` (`FlashFilter.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterMode {
    /// 0.6.4+ default: cuts closer than `min_scene_len` to the last above-threshold frame are
    /// merged into one, emitted up to `min_scene_len` frames late.
    Merge,
    /// Cuts within `min_scene_len` of the last cut are dropped (0.6.0–0.6.3 behaviour).
    Suppress,
}

/// Which release's automatic downscale rule to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Downscale {
    /// 0.7.x: factor `max(w, h) / 256` (a float) once the larger side reaches 256.
    Auto07,
    /// 0.6.x: factor `w // 256` (an integer) once the width reaches 256.
    Auto06,
    /// A fixed integer factor (`SceneManager.downscale`, auto off); 1 keeps the size.
    Factor(u32),
}

/// Weights of the score components (`ContentDetector.Components`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub delta_hue: f64,
    pub delta_sat: f64,
    pub delta_lum: f64,
    pub delta_edges: f64,
}

impl Weights {
    /// Hue, saturation and value equally, no edges (PySceneDetect's default).
    pub const DEFAULT: Weights = Weights {
        delta_hue: 1.0,
        delta_sat: 1.0,
        delta_lum: 1.0,
        delta_edges: 0.0,
    };
    /// `luma_only=True`.
    pub const LUMA_ONLY: Weights = Weights {
        delta_hue: 0.0,
        delta_sat: 0.0,
        delta_lum: 1.0,
        delta_edges: 0.0,
    };
}

impl Default for Weights {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Detector options with PySceneDetect's names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShotConfig {
    pub detector: DetectorKind,
    /// `ContentDetector` threshold on `content_val` (27.0).
    pub threshold: f64,
    /// Minimum shot length in frames (15).
    pub min_scene_len: usize,
    pub weights: Weights,
    /// Edge dilation kernel (odd, ≥ 3); `None` picks `4 + round(√(w·h)/192)`, made odd.
    pub kernel_size: Option<usize>,
    pub filter_mode: FilterMode,
    /// `AdaptiveDetector`: ratio to the window mean that makes a cut (3.0).
    pub adaptive_threshold: f64,
    /// `AdaptiveDetector`: frames on each side of the candidate (2).
    pub window_width: usize,
    /// `AdaptiveDetector`: minimum `content_val` of a cut (15.0).
    pub min_content_val: f64,
    pub downscale: Downscale,
    /// Compute every stats column (edges included) as PySceneDetect does with a stats file.
    pub record_stats: bool,
}

impl Default for ShotConfig {
    fn default() -> Self {
        Self {
            detector: DetectorKind::Content,
            threshold: 27.0,
            min_scene_len: 15,
            weights: Weights::DEFAULT,
            kernel_size: None,
            filter_mode: FilterMode::Merge,
            adaptive_threshold: 3.0,
            window_width: 2,
            min_content_val: 15.0,
            downscale: Downscale::Auto07,
            record_stats: false,
        }
    }
}

impl ShotConfig {
    fn validate(&self) -> Result<()> {
        let bad = |name: &str, why: &str| Err(DataError::invalid(name, why));
        if let Some(k) = self.kernel_size {
            if k < 3 || k % 2 == 0 {
                return bad("kernel_size", "must be an odd integer >= 3");
            }
        }
        if self.window_width == 0 {
            return bad("window_width", "must be at least 1");
        }
        let w = self.weights;
        if w.delta_hue.abs() + w.delta_sat.abs() + w.delta_lum.abs() + w.delta_edges.abs() == 0.0 {
            return bad("weights", "at least one component weight must be non-zero");
        }
        if matches!(self.downscale, Downscale::Factor(0)) {
            return bad("downscale", "the factor must be at least 1");
        }
        Ok(())
    }
}

/// Per-frame scores, the columns of PySceneDetect's stats file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameStats {
    pub frame: usize,
    pub content_val: f64,
    pub delta_hue: f64,
    pub delta_sat: f64,
    pub delta_lum: f64,
    /// Only when edges were computed (edge weight > 0 or `record_stats`).
    pub delta_edges: Option<f64>,
    /// `AdaptiveDetector` only; the last `window_width` frames have none.
    pub adaptive_ratio: Option<f64>,
}

/// One shot: frames `[start, end)` and their times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shot {
    pub start: usize,
    pub end: usize,
    /// `HH:MM:SS.mmm` of the start and end frame boundaries (with a frame rate).
    pub start_timecode: Option<String>,
    pub end_timecode: Option<String>,
    pub start_seconds: Option<f64>,
    pub end_seconds: Option<f64>,
}

/// Detection result for one video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shots {
    pub frames: usize,
    pub frame_rate: Option<FrameRate>,
    /// Size the scores were computed at, after downscaling.
    pub processed_size: (u32, u32),
    /// First frame of every shot but the first.
    pub cuts: Vec<usize>,
    /// Empty when there is no cut (PySceneDetect's `start_in_scene=False`).
    pub scenes: Vec<Shot>,
    /// Frames 1.. (frame 0 has no predecessor to score against); empty unless recorded.
    pub stats: Vec<FrameStats>,
    /// `window_width` of an `AdaptiveDetector` run (names its stats column).
    pub adaptive_window: Option<usize>,
}

/// `HH:MM:SS.mmm` of frame `index`, rounded to the millisecond like PySceneDetect.
pub fn timecode(rate: FrameRate, index: u64) -> String {
    let ms = (rate.seconds(index) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

impl Shots {
    /// The shots as `(start, end)` frame pairs.
    pub fn ranges(&self) -> Vec<(usize, usize)> {
        self.scenes.iter().map(|s| (s.start, s.end)).collect()
    }

    /// PySceneDetect's stats CSV: `Frame Number` (1-based), `Timecode`, then the metric
    /// columns in sorted order.
    pub fn stats_csv(&self) -> String {
        let adaptive_key = |w: usize| format!("adaptive_ratio (w={w})");
        let has_edges = self.stats.iter().any(|s| s.delta_edges.is_some());
        let has_ratio = self.stats.iter().any(|s| s.adaptive_ratio.is_some());
        let mut header = vec!["Frame Number".to_string(), "Timecode".to_string()];
        let mut keys: Vec<String> = Vec::new();
        if let (true, Some(w)) = (has_ratio, self.adaptive_window) {
            keys.push(adaptive_key(w));
        }
        keys.push("content_val".into());
        if has_edges {
            keys.push("delta_edges".into());
        }
        keys.extend(["delta_hue", "delta_lum", "delta_sat"].map(String::from));
        header.extend(keys.iter().cloned());
        let mut out = header.join(",") + "\n";
        for s in &self.stats {
            let tc = self
                .frame_rate
                .map(|r| timecode(r, s.frame as u64))
                .unwrap_or_default();
            let mut row = vec![(s.frame + 1).to_string(), tc];
            if has_ratio {
                row.push(
                    s.adaptive_ratio
                        .map(py_float)
                        .unwrap_or_else(|| "None".into()),
                );
            }
            row.push(py_float(s.content_val));
            if has_edges {
                row.push(s.delta_edges.map(py_float).unwrap_or_else(|| "None".into()));
            }
            row.extend([s.delta_hue, s.delta_lum, s.delta_sat].map(py_float));
            out += &(row.join(",") + "\n");
        }
        out
    }
}

/// A float written as Python's `str(float)` writes most values (`27.0`, `3.141`).
fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// HSV (+ edges) planes of the previous frame.
struct FramePlanes {
    hsv: [Plane; 3],
    edges: Option<Plane>,
}

/// `FlashFilter` of PySceneDetect 0.7 with a length in frames.
#[derive(Debug, Clone)]
struct FlashFilter {
    mode: FilterMode,
    length: usize,
    last_above: Option<usize>,
    merge_enabled: bool,
    merge_triggered: bool,
    merge_start: usize,
}

impl FlashFilter {
    fn new(mode: FilterMode, length: usize) -> Self {
        Self {
            mode,
            length,
            last_above: None,
            merge_enabled: false,
            merge_triggered: false,
            merge_start: 0,
        }
    }

    /// Cuts emitted at `frame` (possibly an earlier frame, in merge mode).
    fn filter(&mut self, frame: usize, above: bool) -> Option<usize> {
        if self.length == 0 {
            return above.then_some(frame);
        }
        let last_above = *self.last_above.get_or_insert(frame);
        let met = frame - last_above >= self.length;
        match self.mode {
            FilterMode::Suppress => {
                if above && met {
                    self.last_above = Some(frame);
                    return Some(frame);
                }
                None
            }
            FilterMode::Merge => {
                if above {
                    self.last_above = Some(frame);
                }
                let last_above = self.last_above.expect("set above");
                if self.merge_triggered {
                    // Quirk kept from PySceneDetect: the merged cut is the last above-threshold
                    // frame, released once the scores have stayed low for `length` frames.
                    if met && !above && last_above - self.merge_start >= self.length {
                        self.merge_triggered = false;
                        return Some(last_above);
                    }
                    return None;
                }
                if !above {
                    return None;
                }
                if met {
                    self.merge_enabled = true;
                    return Some(frame);
                }
                if self.merge_enabled {
                    self.merge_triggered = true;
                    self.merge_start = frame;
                }
                None
            }
        }
    }
}

/// Streaming detector: push frames in order, then [`ShotDetector::finish`].
pub struct ShotDetector {
    config: ShotConfig,
    input_size: (u32, u32),
    processed_size: (u32, u32),
    compute_edges: bool,
    kernel: usize,
    previous: Option<FramePlanes>,
    filter: FlashFilter,
    /// Adaptive: (frame, score) of the last `2w+1` frames.
    window: std::collections::VecDeque<(usize, f64)>,
    last_cut: Option<usize>,
    frames: usize,
    cuts: Vec<usize>,
    stats: Vec<FrameStats>,
}

impl ShotDetector {
    /// A detector for frames of `width`×`height` (the decoded size, before downscaling).
    pub fn new(config: ShotConfig, width: u32, height: u32) -> Result<Self> {
        config.validate()?;
        if width == 0 || height == 0 {
            return Err(DataError::invalid(
                "frame size",
                "the video has no frame size",
            ));
        }
        let processed_size = processed_size(config.downscale, width, height);
        let compute_edges = config.weights.delta_edges > 0.0 || config.record_stats;
        let (pw, ph) = processed_size;
        let kernel = config.kernel_size.unwrap_or_else(|| {
            let k = 4 + ((pw as f64 * ph as f64).sqrt() / 192.0).round_ties_even() as usize;
            if k.is_multiple_of(2) {
                k + 1
            } else {
                k
            }
        });
        // AdaptiveDetector runs ContentDetector with threshold 255 and no flash filter.
        let filter_len = match config.detector {
            DetectorKind::Content => config.min_scene_len,
            DetectorKind::Adaptive => 0,
        };
        Ok(Self {
            filter: FlashFilter::new(config.filter_mode, filter_len),
            config,
            input_size: (width, height),
            processed_size,
            compute_edges,
            kernel,
            previous: None,
            window: Default::default(),
            last_cut: None,
            frames: 0,
            cuts: Vec::new(),
            stats: Vec::new(),
        })
    }

    /// Number of frames pushed so far.
    pub fn frames_pushed(&self) -> usize {
        self.frames
    }

    /// Size frames are scored at.
    pub fn processed_size(&self) -> (u32, u32) {
        self.processed_size
    }

    /// Scores the next frame and records any cut it settles.
    pub fn push(&mut self, frame: &RgbImage) -> Result<()> {
        if frame.dimensions() != self.input_size {
            return Err(DataError::invalid(
                "frame",
                format!(
                    "frame {} is {}x{}, the video is {}x{}",
                    self.frames,
                    frame.width(),
                    frame.height(),
                    self.input_size.0,
                    self.input_size.1
                ),
            ));
        }
        let index = self.frames;
        self.frames += 1;
        let (pw, ph) = self.processed_size;
        let small;
        let frame = if (pw, ph) != self.input_size {
            small = cvops::resize_linear(frame, pw, ph);
            &small
        } else {
            frame
        };
        let hsv = cvops::hsv_planes(frame);
        let edges = self.compute_edges.then(|| self.edges(&hsv[2]));
        let score = match self.previous.replace(FramePlanes { hsv, edges }) {
            None => 0.0,
            Some(prev) => {
                let cur = self.previous.as_ref().expect("just set");
                let d = |a: &Plane, b: &Plane| mean_abs_diff(a, b);
                let (dh, ds, dl) = (
                    d(&cur.hsv[0], &prev.hsv[0]),
                    d(&cur.hsv[1], &prev.hsv[1]),
                    d(&cur.hsv[2], &prev.hsv[2]),
                );
                let de = match (&cur.edges, &prev.edges) {
                    (Some(a), Some(b)) => Some(d(a, b)),
                    _ => None,
                };
                let w = self.config.weights;
                // Same order of operations as PySceneDetect's `sum(c * w) / sum(|w|)`.
                let score = (dh * w.delta_hue
                    + ds * w.delta_sat
                    + dl * w.delta_lum
                    + de.unwrap_or(0.0) * w.delta_edges)
                    / (w.delta_hue.abs()
                        + w.delta_sat.abs()
                        + w.delta_lum.abs()
                        + w.delta_edges.abs());
                if self.config.record_stats {
                    self.stats.push(FrameStats {
                        frame: index,
                        content_val: score,
                        delta_hue: dh,
                        delta_sat: ds,
                        delta_lum: dl,
                        delta_edges: de,
                        adaptive_ratio: None,
                    });
                }
                score
            }
        };
        match self.config.detector {
            DetectorKind::Content => {
                let above = score >= self.config.threshold;
                if let Some(cut) = self.filter.filter(index, above) {
                    self.cuts.push(cut);
                }
            }
            DetectorKind::Adaptive => self.adaptive(index, score),
        }
        Ok(())
    }

    fn edges(&self, lum: &Plane) -> Plane {
        let sigma = 1.0 / 3.0;
        let median = cvops::median(lum);
        let low = ((1.0 - sigma) * median).max(0.0) as i32;
        let high = ((1.0 + sigma) * median).min(255.0) as i32;
        cvops::dilate(&cvops::canny(lum, low, high), self.kernel)
    }

    fn adaptive(&mut self, index: usize, score: f64) {
        let w = self.config.window_width;
        let last_cut = *self.last_cut.get_or_insert(index);
        self.window.push_back((index, score));
        if self.window.len() < 2 * w + 1 {
            return;
        }
        if self.window.len() > 2 * w + 1 {
            self.window.pop_front();
        }
        let (target, target_score) = self.window[w];
        let others: f64 = self
            .window
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != w)
            .map(|(_, &(_, s))| s)
            .sum::<f64>()
            / (2.0 * w as f64);
        let ratio = if others.abs() >= 1e-5 {
            (target_score / others).min(255.0)
        } else if target_score >= self.config.min_content_val {
            255.0
        } else {
            0.0
        };
        if self.config.record_stats {
            // Stats start at frame 1; the target is always past it once the window is full.
            if let Some(s) = self.stats.iter_mut().rev().find(|s| s.frame == target) {
                s.adaptive_ratio = Some(ratio);
            }
        }
        let threshold_met =
            ratio >= self.config.adaptive_threshold && target_score >= self.config.min_content_val;
        if threshold_met && target - last_cut >= self.config.min_scene_len {
            self.last_cut = Some(target);
            self.cuts.push(target);
        }
    }

    /// Ends the video: shots from the cuts, with timecodes when the frame rate is known.
    pub fn finish(self, frame_rate: Option<FrameRate>) -> Shots {
        let mut cuts = self.cuts;
        cuts.sort_unstable();
        cuts.dedup();
        let mut scenes = Vec::new();
        if !cuts.is_empty() {
            let bounds: Vec<usize> = std::iter::once(0)
                .chain(cuts.iter().copied())
                .chain(std::iter::once(self.frames))
                .collect();
            for pair in bounds.windows(2) {
                let (start, end) = (pair[0], pair[1]);
                scenes.push(Shot {
                    start,
                    end,
                    start_timecode: frame_rate.map(|r| timecode(r, start as u64)),
                    end_timecode: frame_rate.map(|r| timecode(r, end as u64)),
                    start_seconds: frame_rate.map(|r| r.seconds(start as u64)),
                    end_seconds: frame_rate.map(|r| r.seconds(end as u64)),
                });
            }
        }
        Shots {
            frames: self.frames,
            frame_rate,
            processed_size: self.processed_size,
            cuts,
            scenes,
            stats: self.stats,
            adaptive_window: (self.config.detector == DetectorKind::Adaptive)
                .then_some(self.config.window_width),
        }
    }
}

/// The size PySceneDetect's `SceneManager` scores frames at.
///
/// ```
/// use magma_data::curate::shots::{processed_size, Downscale};
/// assert_eq!(processed_size(Downscale::Auto07, 640, 360), (256, 144));
/// assert_eq!(processed_size(Downscale::Auto06, 640, 360), (320, 180));
/// assert_eq!(processed_size(Downscale::Auto07, 200, 100), (200, 100));
/// ```
pub fn processed_size(rule: Downscale, width: u32, height: u32) -> (u32, u32) {
    let factor = match rule {
        Downscale::Auto07 => {
            let larger = width.max(height);
            if larger < 256 {
                1.0
            } else {
                larger as f64 / 256.0
            }
        }
        Downscale::Auto06 => (width / 256).max(1) as f64,
        Downscale::Factor(f) => f as f64,
    };
    if factor <= 1.0 {
        return (width, height);
    }
    // Python's round(): half to even.
    let side = |s: u32| ((s as f64 / factor).round_ties_even() as u32).max(1);
    (side(width), side(height))
}

/// `sum(|a − b|) / (w·h)` over two planes of one size.
fn mean_abs_diff(a: &Plane, b: &Plane) -> f64 {
    let sum: u64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / (a.width * a.height) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_filter(mode: FilterMode, length: usize, above: &[usize], frames: usize) -> Vec<usize> {
        let mut f = FlashFilter::new(mode, length);
        (0..frames)
            .filter_map(|i| f.filter(i, above.contains(&i)))
            .collect()
    }

    #[test]
    fn merge_filter_joins_close_cuts_and_emits_late() {
        // A cut at 30 and a flash at 34-35 right after it: the flash is absorbed.
        assert_eq!(
            run_filter(FilterMode::Merge, 15, &[30, 34, 35], 100),
            vec![30]
        );
        // The first cut must itself be 15 frames from the start.
        assert_eq!(run_filter(FilterMode::Merge, 15, &[5, 40], 100), vec![40]);
        // After one cut, a second within 15 frames triggers merging, released late.
        assert_eq!(
            run_filter(FilterMode::Merge, 15, &[20, 28, 45], 100),
            vec![20, 45]
        );
    }

    #[test]
    fn suppress_filter_drops_cuts_within_the_length() {
        assert_eq!(
            run_filter(FilterMode::Suppress, 15, &[20, 28, 36], 100),
            vec![20, 36]
        );
        assert_eq!(run_filter(FilterMode::Suppress, 0, &[1, 2], 5), vec![1, 2]);
    }

    #[test]
    fn bad_options_are_named() {
        let config = ShotConfig {
            kernel_size: Some(4),
            ..Default::default()
        };
        let err = ShotDetector::new(config, 64, 48).err().unwrap().to_string();
        assert!(err.contains("kernel_size"), "{err}");
        let err = ShotDetector::new(ShotConfig::default(), 0, 48)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("frame size"), "{err}");
    }

    #[test]
    fn timecodes_use_the_exact_rate() {
        let ntsc = FrameRate::new(30000, 1001).unwrap();
        assert_eq!(timecode(ntsc, 17982), "00:09:59.999");
        assert_eq!(
            timecode(FrameRate::new(25, 1).unwrap(), 90_000),
            "01:00:00.000"
        );
    }
}
