//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while configuring or running a training job.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model (loading or forward) failed.
    #[error(transparent)]
    Model(#[from] magma_model::ModelError),
    /// A tensor operation failed.
    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON, TOML, npy or safetensors file is malformed.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// The training configuration is invalid (names the key).
    #[error("config: {0}")]
    Config(String),
    /// A trainable tensor received no gradient from the forward pass.
    #[error("trainable tensor `{0}` received no gradient: the forward does not reach it (frozen path or an op without backward)")]
    MissingGradient(String),
    /// A LoRA target pattern matched no linear layer.
    #[error("LoRA target `{pattern}` matches no linear layer (known leaf names: {known})")]
    UnknownLoraTarget { pattern: String, known: String },
    /// A checkpoint cannot be resumed from.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// A training sample or batch is unusable.
    #[error("data: {0}")]
    Data(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
