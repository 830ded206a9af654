//! `http(s)://` image URLs over real loopback HTTP: refused by default (naming the flag), and when
//! allowed fetched within the byte and time limits, answering like the same image sent inline.

mod common;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use common::*;
use magma_serve::RemoteImageLimits;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A loopback web server with the images the tests fetch.
struct ImageHost {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl ImageHost {
    /// `/coffee.png`, `/redirect.png` (→ coffee), `/big-declared.png` and `/big-streamed.png`
    /// (`big` bytes, with and without `Content-Length`), `/slow.png` (answers after a minute),
    /// `/text.png` (not an image), `/bomb.png` (a decompression bomb); anything else is a 404.
    fn start(png: Vec<u8>, big: usize) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
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
                addr_tx
                    .send(listener.local_addr().expect("address"))
                    .unwrap();
                let chunk = vec![0x42u8; 4096];
                let app = Router::new()
                    .route(
                        "/coffee.png",
                        get(move || async move { ([(CONTENT_TYPE, "image/png")], png) }),
                    )
                    .route(
                        "/redirect.png",
                        get(|| async { Redirect::temporary("/coffee.png") }),
                    )
                    .route(
                        "/big-declared.png",
                        get(move || async move { vec![0x42u8; big] }),
                    )
                    .route(
                        "/big-streamed.png",
                        get(move || async move {
                            let chunks = (0..big.div_ceil(chunk.len()))
                                .map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                            Body::from_stream(futures_util::stream::iter(chunks))
                        }),
                    )
                    .route(
                        "/slow.png",
                        get(|| async {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            "too late"
                        }),
                    )
                    .route("/text.png", get(|| async { "just some text" }))
                    .route("/bomb.png", get(|| async { bomb_png(20_000) }))
                    .layer(middleware::from_fn(move |request: Request, next: Next| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        next.run(request)
                    }));
                axum::serve(listener, app).await.expect("image host runs");
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("image host address");
        Self { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
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

/// The error message of a 400 that names `url` and contains `needle`.
fn assert_refused(server: &TestServer, url: &str, needle: &str) {
    let response = server.post_json("/v1/chat/completions", &url_chat(url));
    response.assert_error(400, needle);
    let body = response.json();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(url), "{message:?} does not name {url}");
    assert_eq!(
        body["error"]["param"], "messages[0].content[0].image_url.url",
        "{body}"
    );
}

#[test]
fn remote_urls_are_refused_by_default_with_the_flag_named() {
    let coffee = fixture_image("coffee");
    let host = ImageHost::start(png_bytes(&coffee), 16);
    let server = TestServer::start();
    server
        .post_json("/v1/chat/completions", &url_chat(&host.url("/coffee.png")))
        .assert_error(400, "--allow-remote-images");
    assert_eq!(
        host.hits.load(Ordering::SeqCst),
        0,
        "a disabled server fetched"
    );
}

#[test]
fn allowed_remote_urls_are_fetched_within_the_limits() {
    let coffee = fixture_image("coffee");
    let png = png_bytes(&coffee);
    let limit = 2 * png.len() as u64;
    let host = ImageHost::start(png.clone(), 3 * png.len());
    let server = TestServer::with_config(|c| {
        c.limits.remote_images = Some(RemoteImageLimits {
            max_bytes: limit,
            timeout: Duration::from_secs(1),
            // the image host listens on loopback, which is refused unless allowed
            allow_hosts: vec!["127.0.0.1".into()],
            ..Default::default()
        })
    });

    let inline = server.post_json(
        "/v1/chat/completions",
        &image_chat(&coffee, "What is in this image?", 8),
    );
    assert_eq!(inline.status, 200, "{}", inline.text());
    let expected = inline.json()["choices"][0]["message"]["content"].clone();
    assert!(
        expected.as_str().is_some_and(|t| !t.is_empty()),
        "{expected}"
    );
    for path in ["/coffee.png", "/redirect.png"] {
        let response = server.post_json("/v1/chat/completions", &url_chat(&host.url(path)));
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(
            response.json()["choices"][0]["message"]["content"],
            expected,
            "{path}"
        );
    }

    assert_refused(
        &server,
        &host.url("/big-declared.png"),
        &format!("limit of {limit} bytes"),
    );
    assert_refused(
        &server,
        &host.url("/big-streamed.png"),
        &format!("limit of {limit} bytes"),
    );
    assert_refused(&server, &host.url("/missing.png"), "HTTP 404 Not Found");
    assert_refused(&server, &host.url("/text.png"), "cannot decode image");
    assert_refused(&server, &host.url("/bomb.png"), "20000x20000");
    let start = Instant::now();
    assert_refused(&server, &host.url("/slow.png"), "timed out after 1 s");
    // the fetch gave up at its limit instead of waiting for the slow answer
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    assert_refused(
        &server,
        &format!("http://{closed}/gone.png"),
        "cannot fetch",
    );

    // other schemes stay refused when remote URLs are allowed
    server
        .post_json("/v1/chat/completions", &url_chat("file:///etc/passwd"))
        .assert_error(400, "expected a data:image/");
    // and the server still answers after all that
    let again = server.post_json("/v1/chat/completions", &url_chat(&host.url("/coffee.png")));
    assert_eq!(again.json()["choices"][0]["message"]["content"], expected);
}
