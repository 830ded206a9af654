//! The error type shared by every codec in this crate.

use std::path::PathBuf;

/// Everything that can go wrong while turning model text/tokens into actions and back.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The generated sequence is too short to hold the action tokens plus the stop token.
    #[error(
        "generated sequence has {got} tokens; robot decoding needs at least {needed} \
         ({action_dim} action tokens followed by the stop token)"
    )]
    TooFewActionTokens {
        got: usize,
        needed: usize,
        action_dim: usize,
    },
    /// A token id lies outside the 256 action ids `[vocab - 256, vocab - 1]`.
    #[error(
        "token id {id} at position {position} is not an action token (expected {low}..={high})"
    )]
    NotAnActionToken {
        id: u32,
        position: usize,
        low: u32,
        high: u32,
    },
    /// A value that must be finite (action dimension, coordinate) is NaN or infinite.
    #[error("{what} is not a finite number ({value})")]
    NonFinite { what: String, value: f64 },
    /// The base vocabulary is too small to hold 256 action bins.
    #[error("base vocabulary size {0} is smaller than the 256 action bins")]
    VocabTooSmall(u32),
    /// The number of action dimensions does not match the statistics.
    #[error("{what}: expected {expected} action dimensions, got {got}")]
    DimensionMismatch {
        what: String,
        expected: usize,
        got: usize,
    },
    /// The requested statistics key does not exist; lists the keys that do (as OpenVLA does).
    #[error("unknown unnorm_key `{key}`; available keys: {}", available.join(", "))]
    UnknownUnnormKey { key: String, available: Vec<String> },
    /// No key was given but the statistics hold several datasets.
    #[error("statistics hold {} datasets, pass an unnorm_key; available keys: {}", available.len(), available.join(", "))]
    AmbiguousUnnormKey { available: Vec<String> },
    /// A statistics file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A statistics file is not valid JSON or misses/mistypes a field.
    #[error("{origin}: {message}")]
    MalformedStatistics { origin: String, message: String },
    /// The model's text holds no action of the requested kind.
    #[error("no {kind} found in model output {text:?}")]
    NoActionFound { kind: &'static str, text: String },
    /// The model's text looks like the requested format but a part of it is broken.
    #[error("malformed {kind}: {message} (in {text:?})")]
    Malformed {
        kind: &'static str,
        message: String,
        text: String,
    },
    /// A mark id that the answer refers to has no box on the screenshot.
    #[error("mark {mark} has no box on this screenshot ({available} boxes known)")]
    UnknownMark { mark: u32, available: usize },
    /// An image size of zero.
    #[error("image size {width}x{height} must be positive")]
    EmptyImage { width: u32, height: u32 },
    /// A trace without any point cannot be padded or drawn.
    #[error("trace of mark {mark} has no points")]
    EmptyTrace { mark: u32 },
}

/// Shorthand for results in this crate.
pub type Result<T, E = ActionError> = std::result::Result<T, E>;
