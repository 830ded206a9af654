//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a Magma model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not valid or does not have the expected layout.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` lacks a section or field the model needs, or has an unsupported value.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// No weights file was found in a model folder.
    #[error("no model.safetensors or model.safetensors.index.json in {dir}")]
    NoWeights { dir: PathBuf },
    /// A safetensors file is shorter than its header says (interrupted download?).
    #[error(
        "{path} is truncated: header promises {expected} bytes, file has {found} (re-download it)"
    )]
    TruncatedSafetensors {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// A safetensors file has a malformed header.
    #[error("{path} is not a valid safetensors file: {reason}")]
    InvalidSafetensors { path: PathBuf, reason: String },
    /// A tensor the model needs is not in the checkpoint.
    #[error("tensor `{name}` is missing from the checkpoint")]
    MissingTensor { name: String },
    /// A tensor has another shape than the configuration implies.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The number of `<image>` tokens does not equal the number of images.
    #[error("the prompt has {tokens} <image> token(s) but {images} image(s) were given")]
    ImageCountMismatch { tokens: usize, images: usize },
    /// Pixel values or image grids are inconsistent with the model.
    #[error("invalid image input: {0}")]
    InvalidImages(String),
    /// The (merged) prompt does not fit the model's context.
    #[error(
        "prompt of {len} positions (text + image features) exceeds max_position_embeddings = {max}"
    )]
    PromptTooLong { len: usize, max: usize },
    /// A model given as a hub id is not in the local Hugging Face cache.
    #[error(
        "model `{spec}` not found: not a folder, and not in the Hugging Face cache at {searched}"
    )]
    ModelNotFound { spec: String, searched: PathBuf },
    /// Offline (`HF_HUB_OFFLINE=1` or `--offline`) and the cache lacks files of the model.
    #[error(
        "model `{spec}` is not complete in the Hugging Face cache at {cache} and offline mode \
         (HF_HUB_OFFLINE=1 or --offline) forbids downloading; missing: {}",
        missing.join(", ")
    )]
    HubOffline {
        spec: String,
        cache: PathBuf,
        missing: Vec<String>,
    },
    /// A file of a hub model could not be downloaded.
    #[error("cannot download `{file}` of model `{spec}` from {endpoint}: {reason}")]
    HubDownload {
        spec: String,
        endpoint: String,
        file: String,
        reason: String,
    },
    /// Generation parameters are out of range.
    #[error("invalid generation parameter: {0}")]
    InvalidParams(String),
    /// A `--device` spec is malformed, names a backend this build lacks, or cannot be opened.
    #[error("device `{spec}`: {reason}")]
    Device { spec: String, reason: String },
    /// The processor (tokenizer / image processing) failed.
    #[error(transparent)]
    Processor(#[from] magma_processor::ProcessorError),
    /// Quantized weights could not be written or read.
    #[error(transparent)]
    Quant(#[from] crate::quant::QuantError),
    /// An error from the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
