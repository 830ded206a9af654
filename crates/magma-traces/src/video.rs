//! Video decoding through FFmpeg (`ffmpeg-next`, feature `video`): MP4, WebM, AVI and whatever
//! else the system's libavformat reads.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use image::RgbImage;

use crate::error::{Result, TracesError};
use crate::frames::{Clip, FrameWindow, Resize};

fn video_error(path: &Path, message: impl std::fmt::Display) -> TracesError {
    TracesError::Video {
        path: path.into(),
        message: message.to_string(),
    }
}

/// Decodes the frames of `window` from the best video stream of `path`, converted to RGB and
/// resized; stops reading once the window is complete. A window running past the end of the
/// video is an error naming how many frames the video had.
pub fn load_window(
    path: &Path,
    window: &FrameWindow,
    resize: Resize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Clip> {
    // Validates stride and length up front (the frame count is only known after decoding).
    let wanted = match window.frames {
        Some(_) => Some(window.indices(&path.display().to_string(), None)?),
        None => {
            if window.stride == 0 {
                return Err(TracesError::invalid("stride", "must be at least 1"));
            }
            None
        }
    };
    ffmpeg::init().map_err(|e| video_error(path, e))?;
    let mut input = ffmpeg::format::input(path).map_err(|e| video_error(path, e))?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or_else(|| video_error(path, "no video stream"))?;
    let stream_index = stream.index();
    let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| video_error(path, e))?;
    let mut decoder = context
        .decoder()
        .video()
        .map_err(|e| video_error(path, e))?;
    let (width, height) = (decoder.width(), decoder.height());
    if width == 0 || height == 0 {
        return Err(video_error(path, "the video stream has no frame size"));
    }
    let mut scaler = ffmpeg::software::scaling::context::Context::get(
        decoder.format(),
        width,
        height,
        ffmpeg::format::Pixel::RGB24,
        width,
        height,
        ffmpeg::software::scaling::flag::Flags::BILINEAR,
    )
    .map_err(|e| video_error(path, e))?;

    let total = wanted.as_ref().map_or(0, Vec::len);
    let wants = |i: usize| match &wanted {
        Some(list) => list.binary_search(&i).is_ok(),
        None => i >= window.start && (i - window.start).is_multiple_of(window.stride),
    };
    let done = |clip: &Clip| {
        wanted
            .as_ref()
            .is_some_and(|w| clip.frames.len() == w.len())
    };
    let mut clip = Clip {
        frames: Vec::new(),
        source_indices: Vec::new(),
        original_size: (width, height),
    };
    let mut decoded_count = 0usize;
    let mut decoded = ffmpeg::util::frame::video::Video::empty();
    let mut rgb = ffmpeg::util::frame::video::Video::empty();
    let mut drain = |decoder: &mut ffmpeg::decoder::Video, clip: &mut Clip| -> Result<()> {
        while !done(clip) && decoder.receive_frame(&mut decoded).is_ok() {
            let index = decoded_count;
            decoded_count += 1;
            if !wants(index) {
                continue;
            }
            scaler
                .run(&decoded, &mut rgb)
                .map_err(|e| video_error(path, e))?;
            let frame = rgb_to_image(&rgb, width, height).ok_or_else(|| {
                video_error(path, format!("frame {index}: unexpected RGB layout"))
            })?;
            clip.frames.push(resize.apply(frame));
            clip.source_indices.push(index);
            progress(clip.frames.len(), total);
        }
        Ok(())
    };
    for (stream, packet) in input.packets() {
        if done(&clip) {
            break;
        }
        if stream.index() != stream_index {
            continue;
        }
        decoder
            .send_packet(&packet)
            .map_err(|e| video_error(path, format!("corrupt or truncated stream: {e}")))?;
        drain(&mut decoder, &mut clip)?;
    }
    if !done(&clip) {
        // Flush frames the decoder still holds; a decoder that is already closed is fine here.
        if decoder.send_eof().is_ok() {
            drain(&mut decoder, &mut clip)?;
        }
    }
    let decoded_total = decoded_count;
    let complete = match &wanted {
        Some(w) => clip.frames.len() == w.len(),
        None => !clip.frames.is_empty(),
    };
    if !complete {
        let frames = wanted.as_ref().map_or(0, Vec::len);
        return Err(TracesError::WindowOutOfRange {
            source_name: path.display().to_string(),
            start: window.start,
            frames,
            stride: window.stride,
            needed: window.start + frames.saturating_sub(1) * window.stride + 1,
            available: decoded_total,
        });
    }
    Ok(clip)
}

/// Copies a packed RGB24 frame (rows may be padded) into an image.
fn rgb_to_image(
    frame: &ffmpeg::util::frame::video::Video,
    width: u32,
    height: u32,
) -> Option<RgbImage> {
    let stride = frame.stride(0);
    let data = frame.data(0);
    let row_bytes = 3 * width as usize;
    let mut pixels = Vec::with_capacity(row_bytes * height as usize);
    for y in 0..height as usize {
        pixels.extend_from_slice(data.get(y * stride..y * stride + row_bytes)?);
    }
    RgbImage::from_raw(width, height, pixels)
}
