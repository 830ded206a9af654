//! Remote `image_url`s: `http(s)://` images fetched by the server, off unless the operator allows
//! them (`magma serve --allow-remote-images`), with a byte limit, an overall time limit and a guard
//! against server-side request forgery.
//!
//! A server that fetches URLs for its clients must not become their way into its own network.
//! Every hop of a fetch (the URL, then each redirect, followed here rather than by the HTTP
//! client) resolves its host once, refuses it when any address it resolves to is loopback,
//! private, link-local, carrier-grade NAT, multicast, unspecified, broadcast, documentation or
//! otherwise reserved ([`blocked_range`]; IPv4 embedded in IPv6 is judged as the IPv4 address),
//! and then connects to exactly the addresses it checked: the HTTP client never looks the name
//! up again, so a name that rebinds between the check and the connection cannot reach a private
//! address. Hosts on a private network can be allowed by name or address
//! ([`RemoteImageLimits::allow_hosts`], `magma serve --allow-remote-hosts`). Proxies from the
//! environment (`HTTP_PROXY`, …) are ignored: a proxy would resolve names itself.
//!
//! Fetching blocks: it runs where chat requests are parsed, on tokio's blocking pool, never on the
//! async worker threads.

use crate::ApiError;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// The command-line flag that turns remote image URLs on; named in the error that refuses them.
pub const ALLOW_FLAG: &str = "--allow-remote-images";

/// The command-line flag that allows hosts on private networks; named when one is refused.
pub const ALLOW_HOSTS_FLAG: &str = "--allow-remote-hosts";

/// Limits and address policy of remote image fetches.
///
/// ```
/// let limits = magma_serve::remote::RemoteImageLimits::default();
/// assert_eq!(limits.max_bytes, 16 << 20);
/// assert_eq!(limits.timeout, std::time::Duration::from_secs(10));
/// assert!(limits.allow_hosts.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct RemoteImageLimits {
    /// Most bytes read from the response body (counted while reading, whatever `Content-Length` says).
    pub max_bytes: u64,
    /// Time for the whole fetch: name lookups, connections, redirects and body.
    pub timeout: Duration,
    /// Hosts fetched even when they resolve to addresses [`blocked_range`] refuses: host names
    /// (matched against the URL's host, case-insensitively) or IP addresses (allowed as the
    /// address a name resolves to, or as a URL's host).
    pub allow_hosts: Vec<String>,
    /// How host names are looked up ([`SystemResolver`] unless a test maps names itself).
    pub resolver: Arc<dyn HostResolver>,
}

impl Default for RemoteImageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 << 20,
            timeout: Duration::from_secs(10),
            allow_hosts: Vec::new(),
            resolver: Arc::new(SystemResolver),
        }
    }
}

/// Looks up the addresses of a host; the fetch checks them and connects to nothing else.
pub trait HostResolver: fmt::Debug + Send + Sync {
    /// The addresses of `host` (a name or an IP literal without brackets) with `port`, found
    /// within `timeout`.
    fn resolve(&self, host: &str, port: u16, timeout: Duration)
        -> std::io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo`), given up on after the fetch's time limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let name = (host.to_string(), port);
        // getaddrinfo cannot be cancelled: a lookup past the limit finishes on its own thread
        std::thread::spawn(move || {
            let _ = sender.send(name.to_socket_addrs().map(Iterator::collect));
        });
        receiver.recv_timeout(timeout).unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the name lookup timed out",
            ))
        })
    }
}

/// Why an address is not fetched from: the kind of network and its range.
///
/// ```
/// use magma_serve::remote::blocked_range;
/// let metadata = blocked_range("169.254.169.254".parse().unwrap()).unwrap();
/// assert_eq!(metadata.to_string(), "link-local range (169.254.0.0/16)");
/// let mapped = blocked_range("::ffff:10.0.0.1".parse().unwrap()).unwrap();
/// assert_eq!(
///     mapped.to_string(),
///     "private range (10.0.0.0/8), carried in an IPv4-mapped IPv6 address (::ffff:0:0/96)"
/// );
/// assert!(blocked_range("93.184.216.34".parse().unwrap()).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockedRange {
    /// The kind of network: "loopback", "private", "link-local", …
    pub kind: &'static str,
    /// The range in CIDR notation.
    pub range: &'static str,
    /// The IPv6 form the IPv4 address was embedded in (IPv4-mapped, NAT64, 6to4), if any.
    pub embedded_in: Option<&'static str>,
}

impl fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} range ({})", self.kind, self.range)?;
        if let Some(form) = self.embedded_in {
            write!(f, ", carried in {form}")?;
        }
        Ok(())
    }
}

const fn range(kind: &'static str, range: &'static str) -> Option<BlockedRange> {
    Some(BlockedRange {
        kind,
        range,
        embedded_in: None,
    })
}

/// The non-public range `ip` is in, or `None` for a public unicast address.
///
/// IPv4: this-network, private, carrier-grade NAT, loopback, link-local, IETF protocol
/// assignments, documentation, 6to4 relay, benchmarking, multicast, reserved and broadcast.
/// IPv6: everything outside global unicast `2000::/3` (loopback, unspecified, link-local,
/// unique-local, site-local, multicast, discard, IPv4-compatible) plus documentation, Teredo,
/// ORCHID and the local-use NAT64 prefix; IPv4-mapped, well-known NAT64 and 6to4 addresses are
/// judged by the IPv4 address they carry (that is where a connection to them ends up).
pub fn blocked_range(ip: IpAddr) -> Option<BlockedRange> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<BlockedRange> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, ..) => range("unspecified (this-network)", "0.0.0.0/8"),
        (10, ..) => range("private", "10.0.0.0/8"),
        (100, 64..=127, _) => range("carrier-grade NAT (shared)", "100.64.0.0/10"),
        (127, ..) => range("loopback", "127.0.0.0/8"),
        (169, 254, _) => range("link-local", "169.254.0.0/16"),
        (172, 16..=31, _) => range("private", "172.16.0.0/12"),
        (192, 0, 0) => range("IETF protocol assignment", "192.0.0.0/24"),
        (192, 0, 2) => range("documentation", "192.0.2.0/24"),
        (192, 88, 99) => range("6to4 relay anycast", "192.88.99.0/24"),
        (192, 168, _) => range("private", "192.168.0.0/16"),
        (198, 18..=19, _) => range("benchmarking", "198.18.0.0/15"),
        (198, 51, 100) => range("documentation", "198.51.100.0/24"),
        (203, 0, 113) => range("documentation", "203.0.113.0/24"),
        (224..=239, ..) => range("multicast", "224.0.0.0/4"),
        _ if ip.is_broadcast() => range("broadcast", "255.255.255.255/32"),
        (240..=255, ..) => range("reserved", "240.0.0.0/4"),
        _ => None,
    }
}

fn blocked_v6(ip: Ipv6Addr) -> Option<BlockedRange> {
    let s = ip.segments();
    let embedded = |v4: Ipv4Addr, form: &'static str| {
        blocked_v4(v4).map(|r| BlockedRange {
            embedded_in: Some(form),
            ..r
        })
    };
    let low_v4 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if ip.is_unspecified() {
        return range("unspecified", "::/128");
    }
    if ip.is_loopback() {
        return range("loopback", "::1/128");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedded(v4, "an IPv4-mapped IPv6 address (::ffff:0:0/96)");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return embedded(low_v4(), "a NAT64 IPv6 address (64:ff9b::/96)");
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return embedded(v4, "a 6to4 IPv6 address (2002::/16)");
    }
    match s {
        [0, 0, 0, 0, 0, 0, ..] => range("IPv4-compatible IPv6 (deprecated)", "::/96"),
        [0x64, 0xff9b, 1, ..] => range("local-use NAT64", "64:ff9b:1::/48"),
        [0x100, 0, 0, 0, ..] => range("discard-only", "100::/64"),
        [0x2001, 0xdb8, ..] => range("documentation", "2001:db8::/32"),
        [0x2001, 0, ..] => range("Teredo tunnel", "2001::/32"),
        [0x2001, 0x10..=0x2f, ..] => range("ORCHID", "2001:10::/28"),
        [0x2001, 0..=0x1ff, ..] => range("IETF protocol assignment", "2001::/23"),
        [0x3fff, 0..=0x0fff, ..] => range("documentation", "3fff::/20"),
        [first, ..] if first & 0xfe00 == 0xfc00 => range("unique-local", "fc00::/7"),
        [first, ..] if first & 0xffc0 == 0xfe80 => range("link-local", "fe80::/10"),
        [first, ..] if first & 0xffc0 == 0xfec0 => range("site-local (deprecated)", "fec0::/10"),
        [first, ..] if first >> 8 == 0xff => range("multicast", "ff00::/8"),
        [first, ..] if first & 0xe000 != 0x2000 => {
            range("reserved (outside global unicast)", "2000::/3")
        }
        _ => None,
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

/// The host of `url` as it is looked up (lower-case, no brackets, no trailing dot) and its port.
fn host_and_port(uri: &ureq::http::Uri) -> Option<(String, u16)> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let port = uri.port_u16().or(match uri.scheme_str()? {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    (!host.is_empty()).then_some((host, port))
}

/// `location` (a redirect's `Location`) resolved against the URL that answered it.
fn join_location(base: &ureq::http::Uri, location: &str) -> String {
    let base_scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    if scheme(location).is_some() {
        location.to_string()
    } else if location.starts_with("//") {
        format!("{base_scheme}:{location}")
    } else if location.starts_with('/') {
        format!("{base_scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        if location.starts_with('?') {
            format!("{base_scheme}://{authority}{path}{location}")
        } else {
            format!("{base_scheme}://{authority}{dir}{location}")
        }
    }
}

/// The ureq resolver of one hop: the addresses already checked, never a new lookup.
#[derive(Debug)]
struct PinnedResolver(Vec<SocketAddr>);

impl Resolver for PinnedResolver {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut addrs = self.empty();
        // ureq keeps at most 16 addresses; a longer answer is cut like ureq's own resolver does
        for addr in &self.0 {
            if addrs.try_push(*addr).is_err() {
                break;
            }
        }
        Ok(addrs)
    }
}

/// What one fetch needs to say in its errors.
struct Fetch<'a> {
    url: &'a str,
    path: &'a str,
    limits: &'a RemoteImageLimits,
    deadline: Instant,
}

impl Fetch<'_> {
    fn error(&self, message: impl fmt::Display) -> ApiError {
        ApiError::bad_request(self.path, format!("cannot fetch {}: {message}", self.url))
    }

    fn timed_out(&self) -> ApiError {
        ApiError::bad_request(
            self.path,
            format!(
                "fetching {} timed out after {} s (the server's remote image time limit)",
                self.url,
                self.limits.timeout.as_secs_f64()
            ),
        )
    }

    fn remaining(&self) -> Result<Duration, ApiError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.timed_out())
        } else {
            Ok(left)
        }
    }

    fn allowed(&self, host: &str, ip: Option<IpAddr>) -> bool {
        self.limits.allow_hosts.iter().any(|entry| {
            let entry = entry.trim().trim_matches(['[', ']']).trim_end_matches('.');
            entry.eq_ignore_ascii_case(host)
                || ip.is_some_and(|ip| entry.parse::<IpAddr>().is_ok_and(|e| e == ip))
        })
    }

    /// The checked addresses of one hop's host; `hop` names the redirected URL in errors.
    fn resolve_checked(
        &self,
        host: &str,
        port: u16,
        hop: Option<&str>,
    ) -> Result<Vec<SocketAddr>, ApiError> {
        let via = hop
            .map(|u| format!("it redirects to {u}, and "))
            .unwrap_or_default();
        let addrs = self
            .limits
            .resolver
            .resolve(host, port, self.remaining()?)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    self.timed_out()
                } else {
                    self.error(format!("{via}cannot resolve {host}: {e}"))
                }
            })?;
        if addrs.is_empty() {
            return Err(self.error(format!("{via}{host} has no addresses")));
        }
        if self.allowed(host, None) {
            return Ok(addrs);
        }
        for addr in &addrs {
            let ip = addr.ip();
            if self.allowed(host, Some(ip)) {
                continue;
            }
            if let Some(blocked) = blocked_range(ip) {
                return Err(self.error(format!(
                    "{via}{host} resolves to {ip}, in the {blocked}: remote images are not fetched from \
                     loopback, private or reserved networks (the server's operator can allow a \
                     host with `magma serve {ALLOW_HOSTS_FLAG} {host}`)"
                )));
            }
        }
        Ok(addrs)
    }
}

/// The body of `url` (http or https), read up to `limits.max_bytes` within `limits.timeout`,
/// from public addresses only unless [`RemoteImageLimits::allow_hosts`] names the host.
///
/// Every failure is a 400 about `path` that names the URL: an address in a blocked range (named,
/// as [`blocked_range`] does), also after a redirect, an unreachable host, a non-2xx status, a
/// body over the limit, or the time limit passing.
///
/// ```
/// use magma_serve::remote::{fetch, RemoteImageLimits};
/// let limits = RemoteImageLimits::default();
/// let err = fetch("ftp://example.com/a.png", "url", &limits).unwrap_err();
/// assert!(err.to_string().contains("only http and https"), "{err}");
/// let err = fetch("http://169.254.169.254/latest/meta-data", "url", &limits).unwrap_err();
/// assert!(err.to_string().contains("link-local range (169.254.0.0/16)"), "{err}");
/// ```
pub fn fetch(url: &str, path: &str, limits: &RemoteImageLimits) -> Result<Vec<u8>, ApiError> {
    let fetch = Fetch {
        url,
        path,
        limits,
        deadline: Instant::now() + limits.timeout,
    };
    let mut current = url.to_string();
    let mut redirects = 0;
    let response = loop {
        let hop = (redirects > 0).then_some(current.as_str());
        if !is_remote(&current) {
            return Err(fetch.error(match hop {
                Some(hop) => format!("it redirects to {hop}: only http and https URLs are fetched"),
                None => "only http and https URLs are fetched".to_string(),
            }));
        }
        let uri: ureq::http::Uri = current
            .parse()
            .map_err(|e| fetch.error(format!("invalid URL {current}: {e}")))?;
        let (host, port) =
            host_and_port(&uri).ok_or_else(|| fetch.error(format!("{current} has no host")))?;
        let addrs = fetch.resolve_checked(&host, port, hop)?;
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(fetch.remaining()?))
            .http_status_as_error(false)
            // redirects are followed below, each hop's host checked like the first
            .max_redirects(0)
            // a proxy would look the name up itself, past the check
            .proxy(None)
            .user_agent(concat!("magma-serve/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::with_parts(config, DefaultConnector::new(), PinnedResolver(addrs));
        let response = agent
            .get(&current)
            .header("Accept", "image/*")
            .call()
            .map_err(|e| match e {
                ureq::Error::Timeout(_) => fetch.timed_out(),
                other => fetch.error(other),
            })?;
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok());
        match location {
            Some(location) if response.status().is_redirection() => {
                if redirects == MAX_REDIRECTS {
                    return Err(fetch.error(format!("more than {MAX_REDIRECTS} redirects")));
                }
                redirects += 1;
                current = join_location(&uri, location);
            }
            _ => break response,
        }
    };
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
            ureq::Error::Timeout(_) => fetch.timed_out(),
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => fetch.timed_out(),
            other => ApiError::bad_request(path, format!("cannot read the body of {url}: {other}")),
        })?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(ip: &str) -> Option<String> {
        blocked_range(ip.parse().unwrap()).map(|r| r.to_string())
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.0.1",
            "169.253.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(blocked(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_non_public_range_is_named() {
        for (ip, expected) in [
            ("0.1.2.3", "unspecified (this-network) range (0.0.0.0/8)"),
            ("10.255.0.1", "private range (10.0.0.0/8)"),
            (
                "100.64.0.1",
                "carrier-grade NAT (shared) range (100.64.0.0/10)",
            ),
            ("100.127.255.254", "(100.64.0.0/10)"),
            ("127.0.0.1", "loopback range (127.0.0.0/8)"),
            ("127.255.255.254", "loopback range (127.0.0.0/8)"),
            ("169.254.169.254", "link-local range (169.254.0.0/16)"),
            ("172.16.0.1", "private range (172.16.0.0/12)"),
            ("172.31.255.255", "private range (172.16.0.0/12)"),
            ("192.0.0.170", "(192.0.0.0/24)"),
            ("192.0.2.1", "documentation range (192.0.2.0/24)"),
            ("192.88.99.1", "(192.88.99.0/24)"),
            ("192.168.1.1", "private range (192.168.0.0/16)"),
            ("198.19.0.1", "benchmarking range (198.18.0.0/15)"),
            ("198.51.100.7", "documentation range (198.51.100.0/24)"),
            ("203.0.113.9", "documentation range (203.0.113.0/24)"),
            ("224.0.0.251", "multicast range (224.0.0.0/4)"),
            ("239.255.255.250", "multicast range (224.0.0.0/4)"),
            ("240.0.0.1", "reserved range (240.0.0.0/4)"),
            ("255.255.255.255", "broadcast range (255.255.255.255/32)"),
            ("::", "unspecified range (::/128)"),
            ("::1", "loopback range (::1/128)"),
            (
                "::ffff:127.0.0.1",
                "loopback range (127.0.0.0/8), carried in an IPv4-mapped",
            ),
            (
                "::ffff:169.254.169.254",
                "link-local range (169.254.0.0/16), carried in an IPv4-mapped",
            ),
            (
                "::127.0.0.1",
                "IPv4-compatible IPv6 (deprecated) range (::/96)",
            ),
            (
                "64:ff9b::a9fe:a9fe",
                "link-local range (169.254.0.0/16), carried in a NAT64",
            ),
            ("64:ff9b:1::1", "local-use NAT64 range (64:ff9b:1::/48)"),
            (
                "2002:7f00:1::",
                "loopback range (127.0.0.0/8), carried in a 6to4",
            ),
            ("100::1", "discard-only range (100::/64)"),
            ("2001:db8::1", "documentation range (2001:db8::/32)"),
            ("2001:0:4136:e378::1", "Teredo tunnel range (2001::/32)"),
            ("3fff::1", "documentation range (3fff::/20)"),
            ("fd12:3456::1", "unique-local range (fc00::/7)"),
            ("fc00::1", "unique-local range (fc00::/7)"),
            ("fe80::1", "link-local range (fe80::/10)"),
            ("fec0::1", "site-local (deprecated) range (fec0::/10)"),
            ("ff02::1", "multicast range (ff00::/8)"),
            (
                "4000::1",
                "reserved (outside global unicast) range (2000::/3)",
            ),
        ] {
            let got = blocked(ip).unwrap_or_else(|| panic!("{ip} passed"));
            assert!(got.contains(expected), "{ip}: {got:?} lacks {expected:?}");
        }
    }

    #[test]
    fn redirect_locations_resolve_against_the_url() {
        let base: ureq::http::Uri = "http://h.test:81/a/b.png?x=1".parse().unwrap();
        for (location, expected) in [
            ("https://o.test/c.png", "https://o.test/c.png"),
            ("//o.test/c.png", "http://o.test/c.png"),
            ("/c.png", "http://h.test:81/c.png"),
            ("c.png", "http://h.test:81/a/c.png"),
            ("?y=2", "http://h.test:81/a/b.png?y=2"),
        ] {
            assert_eq!(join_location(&base, location), expected, "{location}");
        }
    }

    #[test]
    fn hosts_are_looked_up_as_written_without_brackets_or_trailing_dots() {
        for (url, host, port) in [
            ("http://Example.COM./a", "example.com", 80),
            ("https://[::1]:8443/a", "::1", 8443),
            ("https://10.0.0.1/", "10.0.0.1", 443),
        ] {
            let uri: ureq::http::Uri = url.parse().unwrap();
            assert_eq!(host_and_port(&uri), Some((host.to_string(), port)), "{url}");
        }
    }

    #[test]
    fn the_system_resolver_refuses_localhost_names_without_a_connection() {
        let limits = RemoteImageLimits::default();
        // resolved from /etc/hosts or as literals: no DNS query and no connection is made
        for url in [
            "http://localhost:9/a.png",
            "http://127.0.0.1:9/a.png",
            "http://[::1]:9/a.png",
            "http://0.0.0.0:9/a.png",
            "http://[::ffff:7f00:1]:9/a.png",
        ] {
            let err = fetch(url, "url", &limits).unwrap_err().to_string();
            assert!(
                err.contains("loopback") || err.contains("unspecified"),
                "{url}: {err}"
            );
            assert!(err.contains(ALLOW_HOSTS_FLAG), "{err}");
        }
    }
}
