//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading a processor or preparing inputs.
///
/// Every variant names the file, field or input it is about and what was expected, so the message
/// alone tells the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A file could not be read or written.
    #[error("cannot access {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A JSON file is not valid JSON or does not have the expected structure.
    #[error("malformed JSON in {path}: {cause}")]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },

    /// A configuration field is missing or has an unusable value.
    #[error("invalid `{field}` in {path}: {reason}")]
    Config {
        path: PathBuf,
        field: String,
        reason: String,
    },

    /// `tokenizer.json` could not be loaded by the `tokenizers` crate.
    #[error("cannot load tokenizer {path}: {message}")]
    TokenizerLoad { path: PathBuf, message: String },

    /// The chat template failed to compile or to render.
    #[error("chat template from {path}: {message}")]
    Template { path: PathBuf, message: String },

    /// Encoding a prompt or decoding ids failed.
    #[error("tokenizer failed to {action}: {message}")]
    Tokenize {
        action: &'static str,
        message: String,
    },

    /// An image could not be decoded (unknown format, truncated or corrupt data).
    #[error("cannot decode image {what}: {message}")]
    ImageDecode { what: String, message: String },

    /// An image has a zero width or height.
    #[error("image {what} is empty ({width}x{height} pixels)")]
    EmptyImage {
        what: String,
        width: u32,
        height: u32,
    },

    /// An image has more pixels than the configured limit (checked from the header before decoding).
    #[error(
        "image {what} is {width}x{height} = {pixels} pixels, over the limit of {max_pixels} pixels"
    )]
    ImageTooLarge {
        what: String,
        width: u32,
        height: u32,
        pixels: u64,
        max_pixels: u64,
    },

    /// The number of `<image>` placeholders in the prompt differs from the number of images.
    #[error(
        "the prompt has {placeholders} `<image>` placeholder(s) but {images} image(s) were given"
    )]
    PlaceholderMismatch { placeholders: usize, images: usize },

    /// The messages contain no `user` message to attach images to.
    #[error("{images} image(s) given without `<image>` placeholders and no `user` message to put them in")]
    NoUserMessage { images: usize },

    /// A `.npy` file is malformed or holds an unsupported dtype or layout.
    #[error("bad .npy file {path}: {message}")]
    Npy { path: PathBuf, message: String },
}

impl ProcessorError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn config(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Config {
            path: path.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
