//! Frame sources for curation: MP4/H.264 files (decoded in the default build by
//! [`magma_traces::mp4`]), folders of numbered frame images, and with magma-traces' `video`
//! feature any file FFmpeg reads.

use std::path::Path;

use image::RgbImage;
use magma_traces::mp4::{FrameRate, Mp4Video};

use super::shots::{ShotConfig, ShotDetector, Shots};
use crate::error::{DataError, Result};

fn traces_error(path: &Path, e: magma_traces::TracesError) -> DataError {
    DataError::invalid(path.display().to_string(), e.to_string())
}

/// Runs shot detection over every frame of `path`. The frame rate comes from the MP4 track
/// unless `frame_rate` overrides it (frame folders have none of their own).
/// `progress(done, total)` is called per frame.
///
/// ```no_run
/// use magma_data::curate::{shots::ShotConfig, video::detect_shots};
/// let shots = detect_shots("clip.mp4".as_ref(), &ShotConfig::default(), None, &mut |_, _| {})?;
/// for s in &shots.scenes {
///     println!("{}..{} ({:?})", s.start, s.end, s.start_timecode);
/// }
/// # Ok::<(), magma_data::DataError>(())
/// ```
pub fn detect_shots(
    path: &Path,
    config: &ShotConfig,
    frame_rate: Option<FrameRate>,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<Shots> {
    if path.is_file() && magma_traces::mp4::is_mp4_path(path) {
        let video = Mp4Video::open(path).map_err(|e| traces_error(path, e))?;
        let total = video.frame_count();
        let mut detector = ShotDetector::new(config.clone(), video.width(), video.height())?;
        // Decode on a second thread while this one scores: the two stages take similar time.
        let (tx, rx) = std::sync::mpsc::sync_channel::<magma_traces::Result<RgbImage>>(8);
        let rate = frame_rate.unwrap_or(video.frame_rate());
        let video = &video;
        std::thread::scope(|scope| -> Result<()> {
            // The sender moves into the decoding thread (the receiver's loop ends when it
            // finishes) and the receiver into this closure (an early error return drops it,
            // which stops the decoder at its next send).
            scope.spawn(move || {
                let frames = match video.frames() {
                    Ok(frames) => frames,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                for frame in frames {
                    if tx.send(frame).is_err() {
                        return;
                    }
                }
            });
            let rx = rx;
            for (i, frame) in rx.iter().enumerate() {
                let frame = frame.map_err(|e| traces_error(path, e))?;
                detector.push(&frame)?;
                progress(i + 1, Some(total));
            }
            Ok(())
        })?;
        if detector.frames_pushed() == 0 {
            return Err(DataError::invalid(
                path.display().to_string(),
                "the video has no frames",
            ));
        }
        return Ok(detector.finish(Some(rate)));
    }
    if path.is_dir() {
        let files = magma_traces::frames::frame_files(path).map_err(|e| traces_error(path, e))?;
        let mut detector: Option<ShotDetector> = None;
        for (i, file) in files.iter().enumerate() {
            let frame = image::open(file)
                .map_err(|e| DataError::invalid(file.display().to_string(), e.to_string()))?
                .to_rgb8();
            let det = match &mut detector {
                Some(d) => d,
                None => detector.insert(ShotDetector::new(
                    config.clone(),
                    frame.width(),
                    frame.height(),
                )?),
            };
            det.push(&frame)?;
            progress(i + 1, Some(files.len()));
        }
        let detector = detector.expect("frame_files returns at least one file");
        return Ok(detector.finish(frame_rate));
    }
    // Anything else goes through magma-traces' FFmpeg reader (feature `video`), which
    // loads the whole clip; without the feature this is a clear "needs `video`" error.
    let clip = magma_traces::frames::load_clip(
        path,
        &magma_traces::frames::FrameWindow::default(),
        magma_traces::frames::Resize::Original,
        &mut |_, _| {},
    )
    .map_err(|e| traces_error(path, e))?;
    let (w, h) = clip.original_size;
    let mut detector = ShotDetector::new(config.clone(), w, h)?;
    for (i, frame) in clip.frames.iter().enumerate() {
        detector.push(frame)?;
        progress(i + 1, Some(clip.frames.len()));
    }
    Ok(detector.finish(frame_rate))
}
