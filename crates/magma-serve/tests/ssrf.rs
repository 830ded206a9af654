//! Remote images cannot reach private networks: every blocked range is refused with a 400 that
//! names it, also after a redirect, and a name that rebinds between lookups cannot move a
//! connection to an address that was not checked.
//!
//! All traffic stays on loopback: names resolve through [`MapResolver`] (a test double of DNS that
//! maps `*.test` names to fixed addresses and never asks the system), blocked addresses are refused
//! before any connection, and the only listening server is an image host on 127.0.0.1.

mod common;

use axum::http::header::CONTENT_TYPE;
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use common::*;
use magma_serve::remote::HostResolver;
use magma_serve::RemoteImageLimits;
use serde_json::json;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Names to addresses, like DNS would answer; `flip*.test` names answer 127.0.0.1 on their first
/// lookup and 127.0.0.2 (loopback, where nothing listens) on every later one, as a rebinding
/// attacker's name server would. IP literals resolve to themselves; other names do not resolve.
#[derive(Debug, Default)]
struct MapResolver {
    names: HashMap<String, Vec<IpAddr>>,
    lookups: Mutex<HashMap<String, usize>>,
}

impl MapResolver {
    fn new(names: &[(&str, &[&str])]) -> Self {
        let names = names
            .iter()
            .map(|(name, ips)| {
                let ips = ips
                    .iter()
                    .map(|ip| ip.parse().expect("test address"))
                    .collect();
                (name.to_string(), ips)
            })
            .collect();
        Self {
            names,
            lookups: Mutex::default(),
        }
    }

    fn lookups(&self, name: &str) -> usize {
        self.lookups.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl HostResolver for MapResolver {
    fn resolve(&self, host: &str, port: u16, _timeout: Duration) -> io::Result<Vec<SocketAddr>> {
        let count = {
            let mut lookups = self.lookups.lock().unwrap();
            let count = lookups.entry(host.to_string()).or_default();
            *count += 1;
            *count
        };
        let ips: Vec<IpAddr> = if let Ok(ip) = host.parse() {
            vec![ip]
        } else if host.starts_with("flip") && host.ends_with(".test") {
            let last = if count == 1 { 1 } else { 2 };
            vec![IpAddr::from([127, 0, 0, last])]
        } else {
            self.names.get(host).cloned().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("unknown test name {host}"))
            })?
        };
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

/// A loopback image host: `/coffee.png`, and `/to?url=…` redirecting to `url` (302).
struct ImageHost {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl ImageHost {
    fn start(png: Vec<u8>) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        // the server thread ends with the test process
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let app = Router::new()
                    .route(
                        "/coffee.png",
                        get(move || async move { ([(CONTENT_TYPE, "image/png")], png) }),
                    )
                    .route(
                        "/to",
                        get(
                            |axum::extract::RawQuery(query): axum::extract::RawQuery| async move {
                                let target = query.unwrap_or_default();
                                Redirect::to(target.strip_prefix("url=").unwrap_or(&target))
                            },
                        ),
                    )
                    .layer(axum::middleware::from_fn(
                        move |request: axum::extract::Request, next: axum::middleware::Next| {
                            counter.fetch_add(1, Ordering::SeqCst);
                            next.run(request)
                        },
                    ));
                axum::serve(listener, app).await.expect("image host runs");
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("image host port");
        Self { port, hits }
    }
}

fn url_chat(url: &str) -> serde_json::Value {
    json!({
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "What is in this image?"},
        ]}],
        "max_tokens": 8,
        "temperature": 0,
    })
}

fn server_with(resolver: Arc<MapResolver>, allow_hosts: &[&str]) -> TestServer {
    let allow_hosts = allow_hosts.iter().map(|h| h.to_string()).collect();
    TestServer::with_config(move |c| {
        c.limits.remote_images = Some(RemoteImageLimits {
            timeout: Duration::from_secs(5),
            allow_hosts,
            resolver,
            ..Default::default()
        })
    })
}

/// A 400 about the image URL that names `url` and contains every needle.
fn assert_refused(server: &TestServer, url: &str, needles: &[&str]) {
    let response = server.post_json("/v1/chat/completions", &url_chat(url));
    assert_eq!(response.status, 400, "{url}: {}", response.text());
    let body = response.json();
    assert_eq!(
        body["error"]["param"],
        "messages[0].content[0].image_url.url"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(url), "{message:?} does not name {url}");
    for needle in needles {
        assert!(
            message.contains(needle),
            "{url}: {message:?} lacks {needle:?}"
        );
    }
}

#[test]
fn every_blocked_range_is_refused_with_a_400_naming_it() {
    let host = ImageHost::start(png_bytes(&fixture_image("coffee")));
    let port = host.port;
    let ranges: &[(&str, &str, &[&str])] = &[
        ("loopback.test", "127.0.0.1", &["loopback", "127.0.0.0/8"]),
        ("ten.test", "10.1.2.3", &["private", "10.0.0.0/8"]),
        ("172.test", "172.20.0.5", &["private", "172.16.0.0/12"]),
        ("home.test", "192.168.1.1", &["private", "192.168.0.0/16"]),
        (
            "metadata.test",
            "169.254.169.254",
            &["link-local", "169.254.0.0/16"],
        ),
        (
            "cgnat.test",
            "100.64.0.1",
            &["carrier-grade NAT", "100.64.0.0/10"],
        ),
        ("mcast.test", "224.0.0.251", &["multicast", "224.0.0.0/4"]),
        ("zero.test", "0.0.0.0", &["unspecified", "0.0.0.0/8"]),
        (
            "bcast.test",
            "255.255.255.255",
            &["broadcast", "255.255.255.255/32"],
        ),
        ("reserved.test", "240.0.0.1", &["reserved", "240.0.0.0/4"]),
        (
            "docs.test",
            "192.0.2.10",
            &["documentation", "192.0.2.0/24"],
        ),
        (
            "bench.test",
            "198.18.0.1",
            &["benchmarking", "198.18.0.0/15"],
        ),
        ("v6-loopback.test", "::1", &["loopback", "::1/128"]),
        ("v6-zero.test", "::", &["unspecified", "::/128"]),
        ("v6-link.test", "fe80::1", &["link-local", "fe80::/10"]),
        ("ula.test", "fd00::1", &["unique-local", "fc00::/7"]),
        ("v6-mcast.test", "ff02::1", &["multicast", "ff00::/8"]),
        (
            "mapped.test",
            "::ffff:127.0.0.1",
            &["loopback", "127.0.0.0/8", "IPv4-mapped"],
        ),
        (
            "mapped-meta.test",
            "::ffff:169.254.169.254",
            &["169.254.0.0/16", "IPv4-mapped"],
        ),
        ("compat.test", "::7f00:1", &["IPv4-compatible", "::/96"]),
        (
            "nat64.test",
            "64:ff9b::a9fe:a9fe",
            &["169.254.0.0/16", "NAT64"],
        ),
        ("6to4.test", "2002:a00:1::", &["10.0.0.0/8", "6to4"]),
        (
            "v6-docs.test",
            "2001:db8::1",
            &["documentation", "2001:db8::/32"],
        ),
        ("site.test", "fec0::1", &["site-local", "fec0::/10"]),
    ];
    let names: Vec<(&str, &[&str])> = ranges
        .iter()
        .map(|(name, ip, _)| (*name, std::slice::from_ref(ip)))
        .collect();
    let resolver = Arc::new(MapResolver::new(&names));
    let server = server_with(resolver.clone(), &[]);

    for (name, ip, needles) in ranges {
        let url = format!("http://{name}:{port}/coffee.png");
        let mut needles = needles.to_vec();
        needles.push(ip);
        needles.push("--allow-remote-hosts");
        assert_refused(&server, &url, &needles);
    }
    // addresses written into the URL are judged the same way
    for (url, needle) in [
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "169.254.0.0/16",
        ),
        (format!("http://127.0.0.1:{port}/coffee.png"), "127.0.0.0/8"),
        (
            format!("http://[::ffff:7f00:1]:{port}/coffee.png"),
            "IPv4-mapped",
        ),
        ("https://[fd12::1]/a.png".to_string(), "fc00::/7"),
        ("http://10.0.0.1./a.png".to_string(), "10.0.0.0/8"),
    ] {
        assert_refused(&server, &url, &[needle]);
    }
    // a name with one private address among others is refused as a whole
    let mixed = Arc::new(MapResolver::new(&[(
        "mixed.test",
        &["127.0.0.1", "192.168.7.7"],
    )]));
    let mixed_server = server_with(mixed, &["127.0.0.1"]);
    assert_refused(
        &mixed_server,
        &format!("http://mixed.test:{port}/coffee.png"),
        &["192.168.7.7", "192.168.0.0/16"],
    );
    assert_eq!(
        host.hits.load(Ordering::SeqCst),
        0,
        "a blocked address was connected to"
    );
    assert!(resolver.lookups("metadata.test") == 1);
}

#[test]
fn redirects_are_checked_and_allowed_hosts_fetched() {
    let coffee = fixture_image("coffee");
    let host = ImageHost::start(png_bytes(&coffee));
    let port = host.port;
    let resolver = Arc::new(MapResolver::new(&[
        ("images.test", &["127.0.0.1"]),
        ("metadata.test", &["169.254.169.254"]),
        ("db.test", &["10.0.0.5"]),
    ]));
    // images.test by name, and loopback's 127.0.0.1 (only) by address
    let server = server_with(resolver.clone(), &["images.test", "127.0.0.1"]);
    let inline = server.post_json(
        "/v1/chat/completions",
        &image_chat(&coffee, "What is in this image?", 8),
    );
    assert_eq!(inline.status, 200, "{}", inline.text());
    let expected = inline.json()["choices"][0]["message"]["content"].clone();
    let answer = |url: &str| {
        let response = server.post_json("/v1/chat/completions", &url_chat(url));
        assert_eq!(response.status, 200, "{url}: {}", response.text());
        response.json()["choices"][0]["message"]["content"].clone()
    };

    // allowed hosts are fetched, directly and through an allowed redirect
    assert_eq!(
        answer(&format!("http://images.test:{port}/coffee.png")),
        expected
    );
    assert_eq!(
        answer(&format!("http://127.0.0.1:{port}/to?url=/coffee.png")),
        expected
    );
    let hits = host.hits.load(Ordering::SeqCst);

    // a redirect into a private range is refused at the redirect, naming it
    for (target, needle) in [
        ("http://metadata.test/latest/meta-data/", "169.254.0.0/16"),
        ("http://db.test:5432/", "10.0.0.0/8"),
        ("http://[fd00::1]/a.png", "fc00::/7"),
        // 127.0.0.2 is loopback too, and the allow-list names only 127.0.0.1
        (
            &format!("http://127.0.0.2:{port}/coffee.png") as &str,
            "127.0.0.0/8",
        ),
    ] {
        let url = format!("http://images.test:{port}/to?url={target}");
        assert_refused(&server, &url, &["redirects to", target, needle]);
    }
    assert_refused(
        &server,
        &format!("http://images.test:{port}/to?url=file:///etc/passwd"),
        &["redirects to file:///etc/passwd", "only http and https"],
    );
    // each refused redirect was one request to the image host, nothing after it
    assert_eq!(host.hits.load(Ordering::SeqCst), hits + 5);
}

#[test]
fn a_rebinding_name_cannot_move_the_connection() {
    let coffee = fixture_image("coffee");
    let host = ImageHost::start(png_bytes(&coffee));
    let port = host.port;
    let resolver = Arc::new(MapResolver::default());
    // 127.0.0.1 is allowed as an address; a flip name's later answer 127.0.0.2 is not
    let server = server_with(resolver.clone(), &["127.0.0.1"]);
    let inline = server.post_json(
        "/v1/chat/completions",
        &image_chat(&coffee, "What is in this image?", 8),
    );
    let expected = inline.json()["choices"][0]["message"]["content"].clone();

    // looked up once, checked, and connected to the checked address: a second lookup (by the
    // HTTP client, at connection time) would have answered 127.0.0.2, where nothing listens
    let response = server.post_json(
        "/v1/chat/completions",
        &url_chat(&format!("http://flip.test:{port}/coffee.png")),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json()["choices"][0]["message"]["content"],
        expected
    );
    assert_eq!(resolver.lookups("flip.test"), 1);

    // the next hop looks the name up again, and its new answer is refused
    let url = format!("http://flip2.test:{port}/to?url=/coffee.png");
    assert_refused(
        &server,
        &url,
        &[
            "redirects to",
            "flip2.test resolves to 127.0.0.2",
            "loopback",
        ],
    );
    assert_eq!(resolver.lookups("flip2.test"), 2);
}
