//! The video converter stage: a clip list with narration segments → shots → (CLIP scores) →
//! windows → Trace-of-Mark records, as a [`Stage`] the job runner shards and resumes.
//!
//! A work item is a JSON clip list next to (or naming) its video:
//! `{"video": "clip.mp4", "segments": [{"start": 1.5, "end": 4.0, "text": "C cuts the onion"}]}`
//! (times in seconds). The video is decoded once; shots come from PySceneDetect-equal detection
//! (a video without a cut is one shot, Magma's special case); each segment's frames are split
//! at shot boundaries (a window never crosses a cut, and no frame is dropped, unlike the
//! reference's re-encoded parts) into consecutive windows of `window` frames. Each window gets
//! the CLIP score of its caption (max over Magma's 4 frames, stored as `scores["clip"]`, not
//! thresholded here) when a scorer is set, then the ToM pipeline of `magma-traces` on its
//! frames. Empty captions and parts shorter than a window are reported to the sink, not
//! silently lost.

use std::path::{Path, PathBuf};

use image::RgbImage;
use magma_traces::frames::Resize;
use magma_traces::lk::LucasKanade;
use magma_traces::mp4::{FrameRate, Mp4Video};
use magma_traces::pipeline::TomConfig;
use serde::Deserialize;

use super::shots::{ShotConfig, ShotDetector};
use crate::error::{DataError, Result};
use crate::record::{Media, Provenance, Record, Sample, Trace, Turn};
use crate::stage::{Sink, Stage, WorkItem};

/// One narration segment of a clip list.
#[derive(Debug, Clone, Deserialize)]
pub struct Segment {
    /// Start time in seconds.
    pub start: f64,
    /// End time in seconds (exclusive).
    pub end: f64,
    /// The narration or caption (the ToM task and the CLIP text).
    pub text: String,
}

/// A work item's JSON.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipList {
    /// The MP4 file, relative to the clip list's folder unless absolute.
    pub video: PathBuf,
    pub segments: Vec<Segment>,
}

/// Settings of the video stage.
pub struct VideoTomStage {
    pub shots: ShotConfig,
    /// Frames per window (Magma: 16).
    pub window: usize,
    /// Frame size the tracker sees.
    pub resize: Resize,
    /// ToM settings; the task text is set per segment.
    pub tom: TomConfig,
    /// Scores windows when set.
    #[cfg(feature = "clip")]
    pub clip: Option<super::clip::ClipScorer>,
}

impl Default for VideoTomStage {
    fn default() -> Self {
        Self {
            shots: ShotConfig::default(),
            window: 16,
            resize: Resize::Height(256),
            tom: TomConfig::default(),
            #[cfg(feature = "clip")]
            clip: None,
        }
    }
}

/// Frame range `[a, b)` of a segment at `rate`, clamped to the video.
fn segment_frames(segment: &Segment, rate: FrameRate, frames: usize) -> (usize, usize) {
    let at =
        |t: f64| ((t.max(0.0) * rate.num as f64 / rate.den as f64).round() as usize).min(frames);
    (at(segment.start), at(segment.end))
}

impl VideoTomStage {
    fn video_path(item: &WorkItem, list: &ClipList) -> PathBuf {
        if list.video.is_absolute() {
            list.video.clone()
        } else {
            item.path
                .parent()
                .unwrap_or(Path::new("."))
                .join(&list.video)
        }
    }

    #[cfg(feature = "clip")]
    fn clip_score(&self, frames: &[RgbImage], start: usize, text: &str) -> Result<Option<f64>> {
        let Some(scorer) = &self.clip else {
            return Ok(None);
        };
        let picked: Vec<image::DynamicImage> = super::clip::score_frames(start, self.window)
            .into_iter()
            .map(|i| image::DynamicImage::ImageRgb8(frames[i].clone()))
            .collect();
        let scores = scorer.cosine(&picked, &[text])?;
        Ok(scores.iter().map(|row| f64::from(row[0])).reduce(f64::max))
    }

    #[cfg(not(feature = "clip"))]
    fn clip_score(&self, _frames: &[RgbImage], _start: usize, _text: &str) -> Result<Option<f64>> {
        Ok(None)
    }
}

impl Stage for VideoTomStage {
    fn name(&self) -> &str {
        "video-tom"
    }

    fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()> {
        if self.window < 2 {
            return Err(DataError::invalid(
                "window",
                "a ToM window needs at least 2 frames",
            ));
        }
        let text = std::fs::read_to_string(&item.path).map_err(|e| DataError::io(&item.path, e))?;
        let list: ClipList = serde_json::from_str(&text).map_err(|e| DataError::Json {
            path: item.path.clone(),
            message: e.to_string(),
        })?;
        let video_path = Self::video_path(item, &list);
        let traces_err = |e: magma_traces::TracesError| {
            DataError::invalid(video_path.display().to_string(), e.to_string())
        };
        let video = Mp4Video::open(&video_path).map_err(traces_err)?;
        let rate = video.frame_rate();
        let mut detector = ShotDetector::new(self.shots.clone(), video.width(), video.height())?;
        let mut frames = Vec::with_capacity(video.frame_count());
        for frame in video.frames().map_err(traces_err)? {
            let frame = frame.map_err(traces_err)?;
            detector.push(&frame)?;
            frames.push(frame);
        }
        let shots = detector.finish(Some(rate));
        let mut bounds = vec![0];
        bounds.extend(&shots.cuts);
        bounds.push(frames.len());
        let video_name = video_path.display().to_string();
        for (s, segment) in list.segments.iter().enumerate() {
            let locator = format!("segment {s}");
            if segment.text.trim().is_empty() {
                sink.skip(
                    &locator,
                    "empty_text",
                    "the segment has no narration".into(),
                );
                continue;
            }
            let (a, b) = segment_frames(segment, rate, frames.len());
            for shot in bounds.windows(2) {
                let (lo, hi) = (a.max(shot[0]), b.min(shot[1]));
                if hi <= lo {
                    continue;
                }
                if hi - lo < self.window {
                    sink.drop(
                        &format!("{locator} frames {lo}..{hi}"),
                        "part_shorter_than_window",
                    );
                    continue;
                }
                for start in (lo..=hi - self.window).step_by(self.window) {
                    let window_locator =
                        format!("{locator} frames {start}..{}", start + self.window);
                    let clip_score = self.clip_score(&frames, start, &segment.text)?;
                    let resized: Vec<RgbImage> = frames[start..start + self.window]
                        .iter()
                        .map(|f| self.resize.apply(f.clone()))
                        .collect();
                    let config = TomConfig {
                        task: segment.text.clone(),
                        ..self.tom.clone()
                    };
                    let result = match magma_traces::pipeline::run(
                        &resized,
                        &LucasKanade::default(),
                        &config,
                        &|_| {},
                    ) {
                        Ok(r) => r,
                        Err(e) => {
                            sink.skip(&window_locator, "tom_failed", e.to_string());
                            continue;
                        }
                    };
                    let mut record =
                        Record::new("video", &format!("{}#{window_locator}", item.key));
                    record.media.push(Media::VideoFrames {
                        video: video_name.clone(),
                        frames: (start as u64..(start + self.window) as u64).collect(),
                        fps_num: rate.num,
                        fps_den: rate.den,
                        width: video.width(),
                        height: video.height(),
                    });
                    record.conversations = vec![
                        Turn::human(result.question.clone()),
                        Turn::gpt(result.answer.clone()),
                    ];
                    // Traces on the 256 grid of the ToM answer, back in source-frame pixels.
                    let sx = video.width() as f32 / 256.0;
                    let sy = video.height() as f32 / 256.0;
                    for t in &result.traces {
                        let points: Vec<[f32; 2]> = std::iter::once(&t.trace.start)
                            .chain(&t.trace.future)
                            .map(|p| [p.x as f32 * sx, p.y as f32 * sy])
                            .collect();
                        record.traces.push(Trace {
                            mark: t.trace.id,
                            visible: vec![true; points.len()],
                            points,
                        });
                    }
                    if let Some(score) = clip_score {
                        record.scores.insert("clip".into(), score);
                    }
                    record.provenance = Provenance {
                        converter: format!("video-tom {}", env!("CARGO_PKG_VERSION")),
                        input: item.path.display().to_string(),
                        locator: window_locator,
                    };
                    sink.emit(Sample::new(record))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_map_to_frames_at_the_exact_rate() {
        let ntsc = FrameRate::new(30000, 1001).unwrap();
        let seg = Segment {
            start: 1.0,
            end: 100.0,
            text: "x".into(),
        };
        assert_eq!(segment_frames(&seg, ntsc, 160), (30, 160));
    }
}
