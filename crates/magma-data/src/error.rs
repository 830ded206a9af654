//! The errors of magma-data: every one names the file (and offset, field or record) it is about.

use std::path::PathBuf;

/// Errors from readers, writers, converters and jobs.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document did not parse or did not have the expected shape.
    #[error("{path}: invalid JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// A TFRecord frame is truncated or fails its CRC.
    #[error("{path}: TFRecord at byte offset {offset}: {message}")]
    TfRecord {
        /// The TFRecord file.
        path: PathBuf,
        /// Offset of the frame's first byte.
        offset: u64,
        /// What was wrong.
        message: String,
    },
    /// A protobuf message (`tf.train.Example` / `SequenceExample`) is malformed.
    #[error("protobuf: {0}")]
    Proto(String),
    /// A value in the input is missing or does not fit the format.
    #[error("{context}: {message}")]
    Invalid {
        /// Where (file, record, field).
        context: String,
        /// What was wrong.
        message: String,
    },
    /// A pipeline description is wrong.
    #[error("pipeline {path}: {message}")]
    Pipeline {
        /// The pipeline file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    /// An invalid value at `context`.
    pub fn invalid(context: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Invalid {
            context: context.into(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
