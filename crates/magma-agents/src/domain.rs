//! Which URLs the web agent may load.

/// Allowed origins or host names. An entry with a scheme (`http://127.0.0.1:8080`) allows exactly
/// that origin; a bare host (`example.com`) allows it and its subdomains on any scheme and port.
/// `about:`, `data:` and `blob:` documents are always allowed (they load nothing from a network).
///
/// ```
/// use magma_agents::AllowList;
///
/// let allow = AllowList::new(["http://127.0.0.1:8080", "example.com"])?;
/// assert!(allow.allows("http://127.0.0.1:8080/form?x=1"));
/// assert!(!allow.allows("http://127.0.0.1:9090/"));
/// assert!(allow.allows("https://www.example.com/a"));
/// assert!(!allow.allows("https://notexample.com/"));
/// # Ok::<(), magma_agents::AgentError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Origin(String),
    Host(String),
}

impl AllowList {
    /// Builds the list; an entry that is neither an origin nor a host name is an error.
    pub fn new<I, S>(entries: I) -> Result<Self, crate::AgentError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let entries = entries
            .into_iter()
            .map(|e| {
                let e = e.as_ref().trim();
                if e.contains("://") {
                    origin_of(e).map(Entry::Origin).ok_or_else(|| {
                        crate::AgentError::Invalid(format!("--allow-domain {e:?} is not a URL origin"))
                    })
                } else if !e.is_empty() && !e.contains('/') {
                    Ok(Entry::Host(e.to_ascii_lowercase()))
                } else {
                    Err(crate::AgentError::Invalid(format!(
                        "--allow-domain {e:?} is neither an origin (scheme://host[:port]) nor a host name"
                    )))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// The list for a start URL: its origin only.
    pub fn for_start_url(url: &str) -> Result<Self, crate::AgentError> {
        let origin = origin_of(url)
            .ok_or_else(|| crate::AgentError::Invalid(format!("{url:?} is not an http(s) URL")))?;
        Self::new([origin])
    }

    /// Whether `url` may be loaded.
    pub fn allows(&self, url: &str) -> bool {
        let lower = url.to_ascii_lowercase();
        if ["about:", "data:", "blob:"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            return true;
        }
        let Some(origin) = origin_of(url) else {
            return false;
        };
        let host = host_of(&origin);
        self.entries.iter().any(|e| match e {
            Entry::Origin(o) => *o == origin,
            Entry::Host(h) => host == *h || host.ends_with(&format!(".{h}")),
        })
    }

    /// The entries, for messages.
    pub fn describe(&self) -> String {
        self.entries
            .iter()
            .map(|e| match e {
                Entry::Origin(o) | Entry::Host(o) => o.as_str(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `scheme://host[:port]`, lower-cased, without a default port; `None` for non-http(s) URLs.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?.to_ascii_lowercase();
    if authority.is_empty() {
        return None;
    }
    let default_port = if scheme == "http" { ":80" } else { ":443" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

fn host_of(origin: &str) -> String {
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("").to_string();
    }
    authority.split(':').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_ignore_default_ports_and_case() {
        let allow = AllowList::for_start_url("HTTP://Example.com:80/start").unwrap();
        assert!(allow.allows("http://example.com/other"));
        assert!(!allow.allows("https://example.com/"));
        assert!(!allow.allows("http://example.com.evil.test/"));
        assert!(allow.allows("about:blank"));
        assert!(!allow.allows("file:///etc/passwd"));
    }

    #[test]
    fn bad_entries_are_named() {
        let e = AllowList::new(["http://"]).unwrap_err().to_string();
        assert!(e.contains("http://"), "{e}");
        assert!(AllowList::new(["a/b"]).is_err());
    }
}
