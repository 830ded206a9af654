//! Shared test fixtures: a loopback HTTP server for the test pages that records form posts, and a
//! headless Chromium.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use magma_agents::{Browser, LaunchOptions};

#[derive(Clone, Default)]
pub struct Recorded {
    pub posts: Arc<Mutex<Vec<String>>>,
    pub other_origin: Arc<Mutex<String>>,
}

/// A test server on 127.0.0.1 (loopback only) serving `tests/pages/*` under `/pages/`,
/// recording `POST /submit` bodies, with `/slow` answering after 30 s and `/v1/chat/completions`
/// failing with HTTP 500.
pub struct TestServer {
    pub addr: SocketAddr,
    pub recorded: Recorded,
    _runtime: tokio::runtime::Runtime,
}

impl TestServer {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let recorded = Recorded::default();
        let app = Router::new()
            .route("/pages/{name}", get(page))
            .route("/submit", post(submit))
            .route("/slow/v1/chat/completions", post(slow))
            .route("/broken/v1/chat/completions", post(broken))
            .with_state(recorded.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            recorded,
            _runtime: runtime,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn posts(&self) -> Vec<String> {
        self.recorded.posts.lock().unwrap().clone()
    }
}

async fn page(State(recorded): State<Recorded>, Path(name): Path<String>) -> Response {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pages");
    if name.contains('/') || name.contains("..") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match std::fs::read_to_string(dir.join(&name)) {
        Ok(text) => {
            let other = recorded.other_origin.lock().unwrap().clone();
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                text.replace("OTHER_ORIGIN", &other),
            )
                .into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn submit(State(recorded): State<Recorded>, body: Bytes) -> Response {
    recorded
        .posts
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><title>Thanks</title><h1>Thank you</h1>",
    )
        .into_response()
}

async fn slow() -> Response {
    tokio::time::sleep(Duration::from_secs(30)).await;
    StatusCode::OK.into_response()
}

async fn broken() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "model exploded").into_response()
}

pub fn browser() -> Browser {
    Browser::launch(&LaunchOptions {
        binary: None,
        headful: false,
    })
    .expect("headless Chromium must start (install the `chromium` package)")
}

/// `magma serve` with the tiny fixture model (random weights: its actions are noise).
pub fn magma_serve() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/magma-parity/models/magma-tiny-crop");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = magma_serve::Server::bind(
                magma_serve::ServeConfig::new(dir),
                "127.0.0.1:0".parse().unwrap(),
            )
            .await
            .unwrap();
            addr_tx.send(server.local_addr()).unwrap();
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    });
    (addr_rx.recv().unwrap(), stop, thread)
}
