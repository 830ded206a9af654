//! Remote `image_url`s: `http(s)://` images fetched by the server, off unless the operator allows
//! them (`magma serve --allow-remote-images`), with a byte limit and an overall time limit.
//!
//! Fetching blocks: it runs where chat requests are parsed, on tokio's blocking pool, never on the
//! async worker threads.

use crate::ApiError;
use std::io::Read;
use std::time::Duration;

/// The command-line flag that turns remote image URLs on; named in the error that refuses them.
pub const ALLOW_FLAG: &str = "--allow-remote-images";

/// Limits of one remote image fetch.
///
/// ```
/// let limits = magma_serve::remote::RemoteImageLimits::default();
/// assert_eq!(limits.max_bytes, 16 << 20);
/// assert_eq!(limits.timeout, std::time::Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteImageLimits {
    /// Most bytes read from the response body (counted while reading, whatever `Content-Length` says).
    pub max_bytes: u64,
    /// Time for the whole fetch: name lookup, connection, redirects and body.
    pub timeout: Duration,
}

impl Default for RemoteImageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 << 20,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Most redirects followed by one fetch.
const MAX_REDIRECTS: u32 = 5;

/// The scheme of a URL (`https` of `https://…`), lower-cased; `None` if `url` has none.
///
/// ```
/// use magma_serve::remote::scheme;
/// assert_eq!(scheme("HTTPS://example.com/a.png").as_deref(), Some("https"));
/// assert_eq!(scheme("data:image/png;base64,AAAA").as_deref(), Some("data"));
/// assert_eq!(scheme("just-a-name.png"), None);
/// ```
pub fn scheme(url: &str) -> Option<String> {
    let (name, _) = url.split_once(':')?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| name.to_ascii_lowercase())
}

/// Whether `url` is an `http://` or `https://` URL.
pub fn is_remote(url: &str) -> bool {
    matches!(scheme(url).as_deref(), Some("http" | "https"))
}

/// The body of `url` (http or https), read up to `limits.max_bytes` within `limits.timeout`.
///
/// Every failure is a 400 about `path` that names the URL: unreachable host, a non-2xx status,
/// a body over the limit, or the time limit passing.
///
/// ```
/// use magma_serve::remote::{fetch, RemoteImageLimits};
/// let err = fetch("ftp://example.com/a.png", "url", RemoteImageLimits::default()).unwrap_err();
/// assert!(err.to_string().contains("only http and https"), "{err}");
/// ```
pub fn fetch(url: &str, path: &str, limits: RemoteImageLimits) -> Result<Vec<u8>, ApiError> {
    if !is_remote(url) {
        return Err(ApiError::bad_request(
            path,
            format!("cannot fetch {url}: only http and https URLs are fetched"),
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(limits.timeout))
        .http_status_as_error(false)
        .max_redirects(MAX_REDIRECTS)
        .user_agent(concat!("magma-serve/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let timed_out = || {
        ApiError::bad_request(
            path,
            format!(
                "fetching {url} timed out after {} s (the server's remote image time limit)",
                limits.timeout.as_secs_f64()
            ),
        )
    };
    let response = agent
        .get(url)
        .header("Accept", "image/*")
        .call()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => timed_out(),
            other => ApiError::bad_request(path, format!("cannot fetch {url}: {other}")),
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(ApiError::bad_request(
            path,
            format!(
                "fetching {url} failed: the server answered HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_string(),
        ));
    }
    let too_large = || {
        ApiError::bad_request(
            path,
            format!(
                "the image at {url} is larger than the server's limit of {} bytes for remote images",
                limits.max_bytes
            ),
        )
    };
    let declared = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // one byte past the limit tells an over-long body from one exactly at the limit
    response
        .into_body()
        .into_reader()
        .take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        // ureq wraps its own errors (its timeouts among them) in io::Error; `from` unwraps them
        .map_err(|e| match ureq::Error::from(e) {
            ureq::Error::Timeout(_) => timed_out(),
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => timed_out(),
            other => ApiError::bad_request(path, format!("cannot read the body of {url}: {other}")),
        })?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}
