//! Errors of the Trace-of-Mark pipeline.

use std::path::PathBuf;

/// Everything that can go wrong between a video file and a ToM record.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image could not be decoded or encoded.
    #[error("{path}: {message}")]
    Image { path: PathBuf, message: String },
    /// A video container or stream could not be opened or decoded.
    #[error("{path}: cannot decode video: {message}")]
    Video { path: PathBuf, message: String },
    /// The input is a video file but the crate was built without the `video` feature.
    #[error("{path}: the default build reads MP4/H.264 (.mp4, .m4v, .mov) and frame folders; other video files need the `video` feature (FFmpeg)")]
    VideoSupportMissing { path: PathBuf },
    /// A folder holds no frame images.
    #[error("{path}: no frame images (.png, .jpg, .jpeg) found")]
    NoFrames { path: PathBuf },
    /// The frame window asks for frames the input does not have.
    #[error("frame window start {start}, {frames} frames, stride {stride} needs {needed} frames but {source_name} has {available}")]
    WindowOutOfRange {
        source_name: String,
        start: usize,
        frames: usize,
        stride: usize,
        needed: usize,
        available: usize,
    },
    /// A parameter is outside its allowed range.
    #[error("invalid {name}: {message}")]
    InvalidParameter { name: &'static str, message: String },
    /// Frames of one window differ in size.
    #[error("frame {index} is {got_w}x{got_h}, expected {want_w}x{want_h} like frame 0")]
    FrameSizeMismatch {
        index: usize,
        got_w: u32,
        got_h: u32,
        want_w: u32,
        want_h: u32,
    },
    /// A font or other bundled asset could not be loaded.
    #[error("asset {name}: {message}")]
    Asset { name: String, message: String },
    /// JSON serialisation failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl TracesError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidParameter {
            name,
            message: message.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = TracesError> = std::result::Result<T, E>;
