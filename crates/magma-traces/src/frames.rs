//! Frame input: a window (start, length, stride) of a folder of numbered frame images, an
//! MP4/H.264 file (default build, [`crate::mp4`]) or, with the `video` feature, any video file
//! FFmpeg reads, resized as the reference does.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TracesError};

/// Which frames of the input to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameWindow {
    /// Index of the first frame.
    pub start: usize,
    /// Number of frames; `None` takes every remaining frame.
    pub frames: Option<usize>,
    /// Step between used frames (1 = every frame).
    pub stride: usize,
}

impl Default for FrameWindow {
    fn default() -> Self {
        Self {
            start: 0,
            frames: None,
            stride: 1,
        }
    }
}

impl FrameWindow {
    /// Source indices of the window's frames for an input of `available` frames (`None` when
    /// the count is not known yet: then a fixed-length window is required or all frames are
    /// taken as they come).
    ///
    /// ```
    /// use magma_traces::frames::FrameWindow;
    /// let w = FrameWindow { start: 2, frames: Some(3), stride: 4 };
    /// assert_eq!(w.indices("clip", Some(20)).unwrap(), vec![2, 6, 10]);
    /// assert!(w.indices("clip", Some(10)).is_err());
    /// ```
    pub fn indices(&self, source: &str, available: Option<usize>) -> Result<Vec<usize>> {
        self.validate()?;
        let count = match (self.frames, available) {
            (Some(n), _) => n,
            (None, Some(avail)) => avail.saturating_sub(self.start).div_ceil(self.stride),
            (None, None) => {
                return Err(TracesError::invalid(
                    "frames",
                    "the frame count of the input is unknown: give the window length",
                ))
            }
        };
        let needed = self.start + count.saturating_sub(1) * self.stride + 1;
        if let Some(avail) = available {
            if count == 0 || needed > avail {
                return Err(TracesError::WindowOutOfRange {
                    source_name: source.to_string(),
                    start: self.start,
                    frames: count,
                    stride: self.stride,
                    needed,
                    available: avail,
                });
            }
        }
        Ok((0..count).map(|i| self.start + i * self.stride).collect())
    }

    fn validate(&self) -> Result<()> {
        if self.stride == 0 {
            return Err(TracesError::invalid("stride", "must be at least 1"));
        }
        if self.frames == Some(0) {
            return Err(TracesError::invalid(
                "frames",
                "a zero-frame window has nothing to track",
            ));
        }
        Ok(())
    }
}

/// How frames are resized before tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resize {
    /// Keep the decoded size.
    Original,
    /// Height `h`, width `int(w · h / height)` (the Alg. 2 demo: 512).
    Height(u32),
    /// An exact size (the training records' annotation size).
    Exact(u32, u32),
}

impl Resize {
    /// The output size for an input of `width`×`height`.
    ///
    /// ```
    /// use magma_traces::frames::Resize;
    /// assert_eq!(Resize::Height(512).size(1280, 720), (910, 512));
    /// ```
    pub fn size(self, width: u32, height: u32) -> (u32, u32) {
        match self {
            Resize::Original => (width, height),
            // PIL demo: img.resize((int(img.width * 512 / img.height), 512)).
            Resize::Height(h) => (
                ((width as f64 * h as f64 / height.max(1) as f64) as u32).max(1),
                h,
            ),
            Resize::Exact(w, h) => (w, h),
        }
    }

    /// Resizes one frame (bicubic, PIL's default for `resize`).
    pub fn apply(self, frame: RgbImage) -> RgbImage {
        let (w, h) = self.size(frame.width(), frame.height());
        if (w, h) == frame.dimensions() {
            frame
        } else {
            image::imageops::resize(&frame, w, h, FilterType::CatmullRom)
        }
    }
}

/// The frames of a window, resized, with where they came from.
#[derive(Debug, Clone)]
pub struct Clip {
    pub frames: Vec<RgbImage>,
    /// Source frame index of each frame.
    pub source_indices: Vec<usize>,
    /// Size of the decoded frames before resizing.
    pub original_size: (u32, u32),
}

/// Frame images of a folder, ordered by the last number in their names (then by name):
/// `frame_2.png` before `frame_10.png`.
pub fn frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| TracesError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| TracesError::io(dir, e))?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"));
        if is_image && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(TracesError::NoFrames { path: dir.into() });
    }
    files.sort_by_cached_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (last_number(&name), name)
    });
    Ok(files)
}

/// The last run of ASCII digits in a name, if any.
fn last_number(name: &str) -> Option<u64> {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let digits: String = stem
        .chars()
        .rev()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

fn read_image(path: &Path) -> Result<RgbImage> {
    let img = image::open(path).map_err(|e| TracesError::Image {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(img.to_rgb8())
}

/// Loads a window of a frame folder or (with the `video` feature) a video file, calling
/// `progress(done, total)` per frame read.
pub fn load_clip(
    path: &Path,
    window: &FrameWindow,
    resize: Resize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Clip> {
    if path.is_dir() {
        return load_folder(path, window, resize, progress);
    }
    if !path.exists() {
        return Err(TracesError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    }
    load_video(path, window, resize, progress)
}

fn load_folder(
    dir: &Path,
    window: &FrameWindow,
    resize: Resize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Clip> {
    let files = frame_files(dir)?;
    let indices = window.indices(&dir.display().to_string(), Some(files.len()))?;
    let mut frames = Vec::with_capacity(indices.len());
    let mut original_size = (0, 0);
    for (k, &i) in indices.iter().enumerate() {
        let frame = read_image(&files[i])?;
        if k == 0 {
            original_size = frame.dimensions();
        } else if frame.dimensions() != original_size {
            return Err(TracesError::FrameSizeMismatch {
                index: i,
                got_w: frame.width(),
                got_h: frame.height(),
                want_w: original_size.0,
                want_h: original_size.1,
            });
        }
        frames.push(resize.apply(frame));
        progress(k + 1, indices.len());
    }
    Ok(Clip {
        frames,
        source_indices: indices,
        original_size,
    })
}

#[cfg(feature = "video")]
fn load_video(
    path: &Path,
    window: &FrameWindow,
    resize: Resize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Clip> {
    crate::video::load_window(path, window, resize, progress)
}

/// The default build reads MP4/H.264 itself ([`crate::mp4`]); other containers need FFmpeg.
#[cfg(not(feature = "video"))]
fn load_video(
    path: &Path,
    window: &FrameWindow,
    resize: Resize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Clip> {
    if crate::mp4::is_mp4_path(path) {
        return crate::mp4::load_window(path, window, resize, progress);
    }
    Err(TracesError::VideoSupportMissing { path: path.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_validate_their_bounds() {
        let w = FrameWindow {
            start: 0,
            frames: Some(0),
            stride: 1,
        };
        assert!(matches!(
            w.indices("x", Some(5)),
            Err(TracesError::InvalidParameter { name: "frames", .. })
        ));
        let w = FrameWindow {
            stride: 0,
            ..Default::default()
        };
        assert!(w.indices("x", Some(5)).is_err());
        let all = FrameWindow {
            start: 1,
            frames: None,
            stride: 2,
        };
        assert_eq!(all.indices("x", Some(6)).unwrap(), vec![1, 3, 5]);
        let past_end = FrameWindow {
            start: 6,
            frames: None,
            stride: 1,
        };
        let err = past_end.indices("clip.mp4", Some(6)).unwrap_err();
        assert!(err.to_string().contains("clip.mp4 has 6"), "{err}");
    }

    #[test]
    fn frame_folders_sort_numerically_and_load_windows() {
        let dir = std::env::temp_dir().join(format!("magma-traces-frames-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for i in [1u8, 2, 10] {
            RgbImage::from_pixel(8, 4, image::Rgb([i, 0, 0]))
                .save(dir.join(format!("frame_{i}.png")))
                .unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "not a frame").unwrap();
        let files = frame_files(&dir).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["frame_1.png", "frame_2.png", "frame_10.png"]);
        let window = FrameWindow {
            start: 1,
            frames: Some(2),
            stride: 1,
        };
        let clip = load_clip(&dir, &window, Resize::Height(8), &mut |_, _| {}).unwrap();
        assert_eq!(clip.source_indices, vec![1, 2]);
        assert_eq!(clip.frames[0].dimensions(), (16, 8));
        assert_eq!(clip.frames[1].get_pixel(3, 3).0, [10, 0, 0]);
        let too_long = FrameWindow {
            start: 0,
            frames: Some(4),
            stride: 1,
        };
        assert!(matches!(
            load_clip(&dir, &too_long, Resize::Original, &mut |_, _| {}),
            Err(TracesError::WindowOutOfRange { available: 3, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_inputs_are_clear_errors() {
        let missing = Path::new("/nonexistent/clip.mp4");
        let err = load_clip(
            missing,
            &FrameWindow::default(),
            Resize::Original,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/clip.mp4"));
        let empty = std::env::temp_dir().join(format!("magma-traces-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let err = load_clip(
            &empty,
            &FrameWindow::default(),
            Resize::Original,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(err, TracesError::NoFrames { .. }));
        std::fs::remove_dir_all(&empty).unwrap();
    }
}
