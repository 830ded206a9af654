//! The error type of the agents.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while driving a browser or an environment.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Starting, connecting to or talking to the browser failed.
    #[error("browser: {0}")]
    Browser(String),
    /// A DevTools method answered an error.
    #[error("CDP {method} failed: {message}")]
    Cdp { method: String, message: String },
    /// Something did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    /// A page load failed (`Page.navigate`'s `errorText`, e.g. `net::ERR_CONNECTION_REFUSED`).
    #[error("loading {url} failed: {reason}")]
    Navigation { url: String, reason: String },
    /// Navigation outside the allowed domains.
    #[error("navigation to {url} refused: not in the allowed domains ({allowed})")]
    Refused { url: String, allowed: String },
    /// The browser answered something this client cannot read.
    #[error("unexpected DevTools answer to {method}: {message}")]
    Protocol { method: String, message: String },
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    /// Invalid input given by the user (a flag, a file).
    #[error("{0}")]
    Invalid(String),
    /// The policy (model or endpoint) failed.
    #[error("policy: {0}")]
    Policy(String),
    /// An HTTP environment failed or answered something unreadable.
    #[error("environment {url}: {message}")]
    Env { url: String, message: String },
}

impl AgentError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }
}
