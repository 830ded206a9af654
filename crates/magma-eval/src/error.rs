//! Errors of the evaluation crate: every one names the file, line and field at fault.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

/// What went wrong reading or scoring a benchmark file.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line is not valid JSON or lacks a field of the benchmark's format.
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        message: String,
    },
    /// A line belongs to another benchmark's format than the one being scored.
    #[error(
        "{}:{line}: this looks like a `{found}` record, but the benchmark is `{expected}` (mixed benchmark files?)",
        path.display()
    )]
    MixedBenchmarks {
        path: PathBuf,
        line: usize,
        expected: &'static str,
        found: &'static str,
    },
    /// Two reference lines share one key.
    #[error("{}:{line}: duplicate key {key} (first on line {first})", path.display())]
    DuplicateKey {
        path: PathBuf,
        line: usize,
        first: usize,
        key: String,
    },
    /// The benchmark name is not one this crate scores.
    #[error("unknown benchmark `{0}` (known: {known})", known = crate::Benchmark::NAMES.join(", "))]
    UnknownBenchmark(String),
    /// The input holds nothing to score.
    #[error("{0}")]
    Empty(String),
    /// Anything else about the input that makes scoring impossible.
    #[error("{0}")]
    Invalid(String),
}
