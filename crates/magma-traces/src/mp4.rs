//! MP4/H.264 decoding with no system libraries: `re_mp4` demuxes the ISO BMFF container and
//! OpenH264 (built from the source bundled in the `openh264` crate) decodes the H.264 stream.
//! This is what the default build reads; the `video` feature (FFmpeg) covers every other
//! container and codec.
//!
//! Frames come out in presentation order (OpenH264 reorders B-frames itself when it is not
//! forced to flush after every packet), converted to RGB with the
//! integer BT.601 limited-range formula, each chroma sample shared by its 2×2 block (the
//! formula is written out in [`yuv420_to_rgb`] so reference tools can reproduce it exactly).
//!
//! ```no_run
//! use magma_traces::mp4::Mp4Video;
//! let video = Mp4Video::open("clip.mp4".as_ref())?;
//! println!("{}x{} at {} fps, {} frames", video.width(), video.height(), video.frame_rate(), video.frame_count());
//! for frame in video.frames()? {
//!     let frame = frame?;
//!     assert_eq!(frame.width(), video.width());
//! }
//! # Ok::<(), magma_traces::TracesError>(())
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use image::RgbImage;
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TracesError};
use crate::frames::{Clip, FrameWindow, Resize};

/// A frame rate as an exact fraction (`30000/1001` for NTSC 29.97).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameRate {
    pub num: u32,
    pub den: u32,
}

impl FrameRate {
    /// `num/den` reduced; `None` when either is zero.
    ///
    /// ```
    /// use magma_traces::mp4::FrameRate;
    /// assert_eq!(FrameRate::new(12288, 512), Some(FrameRate { num: 24, den: 1 }));
    /// assert_eq!(FrameRate::new(30000, 1001).unwrap().to_string(), "30000/1001");
    /// ```
    pub fn new(num: u64, den: u64) -> Option<Self> {
        if num == 0 || den == 0 {
            return None;
        }
        let g = gcd(num, den);
        Some(Self {
            num: u32::try_from(num / g).ok()?,
            den: u32::try_from(den / g).ok()?,
        })
    }

    /// Frames per second as a float.
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Start time of frame `index` in seconds, exact up to the final division.
    pub fn seconds(self, index: u64) -> f64 {
        (index as f64 * self.den as f64) / self.num as f64
    }
}

impl std::fmt::Display for FrameRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn mp4_error(path: &Path, message: impl std::fmt::Display) -> TracesError {
    TracesError::Video {
        path: path.into(),
        message: message.to_string(),
    }
}

/// One sample (coded frame) of the video track.
#[derive(Debug, Clone, Copy)]
struct Sample {
    offset: usize,
    size: usize,
}

/// The H.264 video track of an MP4 file, held in memory and ready to decode.
#[derive(Debug)]
pub struct Mp4Video {
    path: PathBuf,
    bytes: Vec<u8>,
    samples: Vec<Sample>,
    /// SPS and PPS NAL units from the `avcC` box.
    parameter_sets: Vec<Vec<u8>>,
    /// Bytes of each NAL length prefix in the samples (1, 2 or 4).
    length_size: usize,
    width: u32,
    height: u32,
    frame_rate: FrameRate,
}

impl Mp4Video {
    /// Reads and demuxes an MP4 file; the first H.264 (`avc1`/`avc3`) video track is used.
    /// Errors name the file and what is missing (no video track, another codec, a sample
    /// outside the file).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TracesError::io(path, e))?;
        Self::from_bytes(path, bytes)
    }

    /// Demuxes MP4 bytes; `path` only names the source in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let mp4 = re_mp4::Mp4::read_bytes(&bytes)
            .map_err(|e| mp4_error(path, format!("not a readable MP4 file: {e}")))?;
        let track = mp4
            .tracks()
            .values()
            .find(|t| t.kind == Some(re_mp4::TrackKind::Video))
            .ok_or_else(|| mp4_error(path, "no video track"))?;
        let stsd = &track.trak(&mp4).mdia.minf.stbl.stsd;
        let avc = match &stsd.contents {
            re_mp4::StsdBoxContent::Avc1(avc) => avc,
            other => {
                return Err(mp4_error(
                    path,
                    format!(
                        "the video track is {}, not H.264; build with the `video` feature (FFmpeg) to read it",
                        codec_name(other)
                    ),
                ))
            }
        };
        let config = &avc.avcc.contents;
        let parameter_sets: Vec<Vec<u8>> = config
            .sequence_parameter_sets
            .iter()
            .chain(&config.picture_parameter_sets)
            .map(|nal| nal.bytes.clone())
            .collect();
        let length_size = usize::from(config.length_size_minus_one & 3) + 1;
        if length_size == 3 {
            return Err(mp4_error(
                path,
                "avcC: a 3-byte NAL length size is not valid",
            ));
        }
        let mut samples = Vec::with_capacity(track.samples.len());
        for s in &track.samples {
            let (offset, size) = (s.offset as usize, s.size as usize);
            if offset.checked_add(size).is_none_or(|end| end > bytes.len()) {
                return Err(mp4_error(
                    path,
                    format!(
                        "sample {} (bytes {offset}..{}) lies outside the {}-byte file: truncated?",
                        s.id,
                        offset + size,
                        bytes.len()
                    ),
                ));
            }
            samples.push(Sample { offset, size });
        }
        if samples.is_empty() {
            return Err(mp4_error(path, "the video track has no frames"));
        }
        let frame_rate = track_frame_rate(track)
            .ok_or_else(|| mp4_error(path, "the video track has no frame durations"))?;
        Ok(Self {
            path: path.into(),
            bytes,
            samples,
            parameter_sets,
            length_size,
            width: u32::from(track.width),
            height: u32::from(track.height),
            frame_rate,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Frame rate from the track's timescale and its most common frame duration.
    pub fn frame_rate(&self) -> FrameRate {
        self.frame_rate
    }

    /// Number of coded frames in the track.
    pub fn frame_count(&self) -> usize {
        self.samples.len()
    }

    /// Decodes every frame in presentation order.
    pub fn frames(&self) -> Result<Mp4Frames<'_>> {
        let api = OpenH264API::from_source();
        // Flushing after every packet would emit B-frame streams in decode order (and
        // OpenH264 then reports errors); without it the decoder holds and reorders pictures.
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder = Decoder::with_api_config(api, config)
            .map_err(|e| mp4_error(&self.path, format!("cannot start the H.264 decoder: {e}")))?;
        Ok(Mp4Frames {
            video: self,
            decoder,
            next_sample: 0,
            ready: VecDeque::new(),
            flushed: false,
            annex_b: Vec::new(),
        })
    }

    /// Converts one sample from length-prefixed NAL units to an Annex B byte stream (start
    /// codes), the first sample preceded by the SPS/PPS.
    fn annex_b(&self, index: usize, out: &mut Vec<u8>) -> Result<()> {
        const START: [u8; 4] = [0, 0, 0, 1];
        out.clear();
        if index == 0 {
            for nal in &self.parameter_sets {
                out.extend_from_slice(&START);
                out.extend_from_slice(nal);
            }
        }
        let sample = self.samples[index];
        let mut data = &self.bytes[sample.offset..sample.offset + sample.size];
        while !data.is_empty() {
            if data.len() < self.length_size {
                return Err(mp4_error(
                    &self.path,
                    format!("frame {index}: truncated NAL length prefix"),
                ));
            }
            let len = data[..self.length_size]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            data = &data[self.length_size..];
            if len > data.len() {
                return Err(mp4_error(
                    &self.path,
                    format!(
                        "frame {index}: NAL unit of {len} bytes overruns the {}-byte sample",
                        sample.size
                    ),
                ));
            }
            out.extend_from_slice(&START);
            out.extend_from_slice(&data[..len]);
            data = &data[len..];
        }
        Ok(())
    }
}

fn codec_name(content: &re_mp4::StsdBoxContent) -> &'static str {
    use re_mp4::StsdBoxContent as C;
    match content {
        C::Av01(_) => "AV1",
        C::Avc1(_) => "H.264",
        C::Hvc1(_) | C::Hev1(_) => "H.265",
        C::Vp08(_) => "VP8",
        C::Vp09(_) => "VP9",
        _ => "an unsupported codec",
    }
}

/// Timescale over the most common sample duration (FFmpeg's `r_frame_rate` idea: the rate the
/// regular frames run at, not an average skewed by one long last frame).
fn track_frame_rate(track: &re_mp4::Track) -> Option<FrameRate> {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for s in &track.samples {
        *counts.entry(s.duration).or_default() += 1;
    }
    let (&duration, _) = counts
        .iter()
        .filter(|(&d, _)| d > 0)
        .max_by_key(|(&d, &n)| (n, std::cmp::Reverse(d)))?;
    FrameRate::new(track.timescale, duration)
}

/// Iterator over the decoded frames of an [`Mp4Video`], in presentation order.
pub struct Mp4Frames<'a> {
    video: &'a Mp4Video,
    decoder: Decoder,
    next_sample: usize,
    /// Pictures the decoder has output, in presentation order.
    ready: VecDeque<RgbImage>,
    /// Whether the decoder's held pictures were drained after the last sample.
    flushed: bool,
    annex_b: Vec<u8>,
}

impl Mp4Frames<'_> {
    fn decode_next_sample(&mut self) -> Result<()> {
        let index = self.next_sample;
        self.next_sample += 1;
        let mut stream = std::mem::take(&mut self.annex_b);
        self.video.annex_b(index, &mut stream)?;
        let decoded = self.decoder.decode(&stream).map_err(|e| {
            mp4_error(
                &self.video.path,
                format!("frame {index}: undecodable H.264 data: {e}"),
            )
        })?;
        if let Some(yuv) = decoded {
            self.ready.push_back(yuv_frame(&yuv));
        }
        self.annex_b = stream;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.flushed = true;
        let held = self.decoder.flush_remaining().map_err(|e| {
            mp4_error(
                &self.video.path,
                format!("end of stream: undecodable H.264 data: {e}"),
            )
        })?;
        self.ready.extend(held.iter().map(yuv_frame));
        Ok(())
    }
}

fn yuv_frame(yuv: &openh264::decoder::DecodedYUV<'_>) -> RgbImage {
    let (w, h) = yuv.dimensions();
    let (ys, us, _) = yuv.strides();
    yuv420_to_rgb(yuv.y(), yuv.u(), yuv.v(), w, h, ys, us)
}

impl Iterator for Mp4Frames<'_> {
    type Item = Result<RgbImage>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Some(Ok(frame));
            }
            let step = if self.next_sample < self.video.samples.len() {
                self.decode_next_sample()
            } else if !self.flushed {
                self.flush()
            } else {
                return None;
            };
            if let Err(e) = step {
                // Stop after the first error: later frames depend on the lost one.
                self.next_sample = self.video.samples.len();
                self.flushed = true;
                self.ready.clear();
                return Some(Err(e));
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.video.samples.len() - self.next_sample + self.ready.len();
        (0, Some(left + 16))
    }
}

/// YUV 4:2:0 to packed RGB: BT.601 limited range in integers,
/// `c = 298·(Y−16) + 128`, `R = (c + 409·V′) >> 8`, `G = (c − 100·U′ − 208·V′) >> 8`,
/// `B = (c + 516·U′) >> 8` with `U′ = U−128`, `V′ = V−128`, clamped to 0..=255; each chroma
/// sample covers a 2×2 block (no chroma interpolation).
///
/// ```
/// use magma_traces::mp4::yuv420_to_rgb;
/// // 2x2 frame: white luma, neutral chroma.
/// let img = yuv420_to_rgb(&[235; 4], &[128], &[128], 2, 2, 2, 1);
/// assert_eq!(img.get_pixel(1, 1).0, [255, 255, 255]);
/// ```
pub fn yuv420_to_rgb(
    y: &[u8],
    u: &[u8],
    v: &[u8],
    width: usize,
    height: usize,
    y_stride: usize,
    uv_stride: usize,
) -> RgbImage {
    let mut out = vec![0u8; width * height * 3];
    // Row-wide planar passes over i32 arrays (which the compiler vectorises), then one
    // interleaving pass; chroma terms are upsampled by repetition first.
    let even = width.div_ceil(2) * 2;
    let (mut c, mut rv, mut guv, mut bu) = (
        vec![0i32; even],
        vec![0i32; even],
        vec![0i32; even],
        vec![0i32; even],
    );
    let mut planes = vec![0u8; 3 * even];
    for (row, line) in out.chunks_exact_mut(width * 3).enumerate() {
        let luma = &y[row * y_stride..row * y_stride + width];
        let chroma = (row / 2) * uv_stride;
        let half = even / 2;
        let (us, vs) = (&u[chroma..chroma + half], &v[chroma..chroma + half]);
        for (ci, &l) in c.iter_mut().zip(luma) {
            *ci = 298 * (i32::from(l) - 16) + 128;
        }
        for (((r2, g2), b2), (&cu, &cv)) in rv
            .chunks_exact_mut(2)
            .zip(guv.chunks_exact_mut(2))
            .zip(bu.chunks_exact_mut(2))
            .zip(us.iter().zip(vs))
        {
            let (cu, cv) = (i32::from(cu) - 128, i32::from(cv) - 128);
            r2.fill(409 * cv);
            g2.fill(-100 * cu - 208 * cv);
            b2.fill(516 * cu);
        }
        let (pr, rest) = planes.split_at_mut(even);
        let (pg, pb) = rest.split_at_mut(even);
        for ((o, &ci), &t) in pr.iter_mut().zip(&c).zip(&rv) {
            *o = ((ci + t) >> 8).clamp(0, 255) as u8;
        }
        for ((o, &ci), &t) in pg.iter_mut().zip(&c).zip(&guv) {
            *o = ((ci + t) >> 8).clamp(0, 255) as u8;
        }
        for ((o, &ci), &t) in pb.iter_mut().zip(&c).zip(&bu) {
            *o = ((ci + t) >> 8).clamp(0, 255) as u8;
        }
        for (px, ((&r, &g), &b)) in line
            .chunks_exact_mut(3)
            .zip(pr.iter().zip(pg.iter()).zip(pb.iter()))
        {
            px[0] = r;
            px[1] = g;
            px[2] = b;
        }
    }
    RgbImage::from_raw(width as u32, height as u32, out).expect("buffer sized width*height*3")
}

/// Whether a path names an MP4-family file (`.mp4`, `.m4v`, `.mov`), by extension.
pub fn is_mp4_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "mp4" | "m4v" | "mov"))
}

/// Loads a window of an MP4/H.264 file as a [`Clip`] (the default-build path of
/// [`crate::frames::load_clip`]): decodes up to the window's last frame, resizes the kept ones.
pub fn load_window(
    path: &Path,
    window: &FrameWindow,
    resize: Resize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Clip> {
    let video = Mp4Video::open(path)?;
    let indices = window.indices(&path.display().to_string(), Some(video.frame_count()))?;
    let last = *indices.last().expect("windows hold at least one frame");
    let mut clip = Clip {
        frames: Vec::with_capacity(indices.len()),
        source_indices: Vec::with_capacity(indices.len()),
        original_size: (video.width(), video.height()),
    };
    let mut wanted = indices.iter().peekable();
    for (index, frame) in video.frames()?.enumerate().take(last + 1) {
        let frame = frame?;
        if wanted.peek() == Some(&&index) {
            wanted.next();
            clip.frames.push(resize.apply(frame));
            clip.source_indices.push(index);
            progress(clip.frames.len(), indices.len());
        }
    }
    if wanted.peek().is_some() {
        return Err(mp4_error(
            path,
            format!(
                "decoded fewer frames than the {} the track lists",
                video.frame_count()
            ),
        ));
    }
    Ok(clip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_reduce_and_reject_zero() {
        assert_eq!(
            FrameRate::new(90000, 3003),
            Some(FrameRate {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(FrameRate::new(0, 1), None);
        assert_eq!(FrameRate::new(25, 1).unwrap().seconds(50), 2.0);
    }

    #[test]
    fn yuv_conversion_uses_bt601_limited_range() {
        // Black, white, and a saturated red (Y=81, U=90, V=240 in BT.601).
        let img = yuv420_to_rgb(&[16, 235, 81, 81], &[128], &[128], 2, 2, 2, 1);
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        let red = yuv420_to_rgb(&[81; 4], &[90], &[240], 2, 2, 2, 1);
        let p = red.get_pixel(0, 0).0;
        assert!(p[0] >= 250 && p[1] <= 2 && p[2] <= 2, "{p:?}");
    }

    #[test]
    fn mp4_windows_load_through_load_clip() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../magma-data/tests/fixtures/curate/hardcuts_24.mp4");
        let video = Mp4Video::open(&path).unwrap();
        assert_eq!(
            (video.width(), video.height(), video.frame_count()),
            (320, 180, 150)
        );
        assert_eq!(video.frame_rate(), FrameRate { num: 24, den: 1 });
        let window = FrameWindow {
            start: 10,
            frames: Some(3),
            stride: 5,
        };
        let clip =
            crate::frames::load_clip(&path, &window, Resize::Height(90), &mut |_, _| {}).unwrap();
        assert_eq!(clip.source_indices, vec![10, 15, 20]);
        assert_eq!(clip.frames[0].dimensions(), (160, 90));
        assert_eq!(clip.original_size, (320, 180));
        let past_end = FrameWindow {
            start: 140,
            frames: Some(20),
            stride: 1,
        };
        assert!(matches!(
            crate::frames::load_clip(&path, &past_end, Resize::Original, &mut |_, _| {}),
            Err(TracesError::WindowOutOfRange { .. })
        ));
    }

    #[test]
    fn b_frames_come_out_in_presentation_order() {
        // High profile with B-frames; per-frame RGB sums of FFmpeg's decode converted with the
        // same BT.601 formula (see magma-data's make_fixtures.py), in display order.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../magma-data/tests/fixtures/curate/bframes_high_25.mp4");
        let want: [u64; 30] = [
            1503231, 1504607, 1498200, 1498554, 1492204, 1498317, 1494876, 1494208, 1492915,
            1490995, 1499997, 1491667, 1492928, 1488658, 1488254, 1493549, 1490709, 1493808,
            1491829, 1487239, 1497200, 1494202, 1499979, 1486661, 1493648, 1486556, 1491494,
            1492656, 1498879, 1497812,
        ];
        let video = Mp4Video::open(&path).unwrap();
        let sums: Vec<u64> = video
            .frames()
            .unwrap()
            .map(|f| f.unwrap().as_raw().iter().map(|&v| u64::from(v)).sum())
            .collect();
        assert_eq!(sums, want);
    }

    #[test]
    fn non_mp4_bytes_are_a_clear_error() {
        let err = Mp4Video::from_bytes(Path::new("x.mp4"), b"not an mp4 at all".to_vec())
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.mp4"), "{err}");
    }
}
