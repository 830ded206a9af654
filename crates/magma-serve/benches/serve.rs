//! Serving benchmark: concurrent clients against a server on 127.0.0.1, batched decoding
//! (`max_batch` 16) against serial decoding (`max_batch` 1). Prints p50/p99 latency and throughput.
//!
//! `cargo bench -p magma-serve --bench serve` (tiny fixture model). Environment knobs:
//! `MAGMA_BENCH_CLIENTS` (default 16), `MAGMA_BENCH_REQUESTS` per client (4),
//! `MAGMA_BENCH_MAX_TOKENS` (32), `MAGMA_BENCH_IMAGE=1` to send the fixture photo with each request.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    latencies: Vec<Duration>,
    wall: Duration,
    tokens: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn run(max_batch: usize, clients: usize, requests: usize, body: &serde_json::Value) -> Run {
    let server = TestServer::with_config(|c| {
        c.engine.max_batch = max_batch;
        c.engine.queue_capacity = clients * 2;
    });
    let addr = server.addr;
    let body = body.to_string();
    // warm-up
    request(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || {
                (0..requests)
                    .map(|_| {
                        let t = Instant::now();
                        let r = request(
                            addr,
                            "POST",
                            "/v1/chat/completions",
                            &[("Content-Type", "application/json")],
                            body.as_bytes(),
                        );
                        assert_eq!(r.status, 200, "{}", r.text());
                        let tokens = r.json()["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                        (t.elapsed(), tokens)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut tokens = 0;
    for t in threads {
        for (latency, n) in t.join().expect("client") {
            latencies.push(latency);
            tokens += n;
        }
    }
    let wall = start.elapsed();
    latencies.sort();
    Run {
        latencies,
        wall,
        tokens,
    }
}

fn main() {
    let clients = env_usize("MAGMA_BENCH_CLIENTS", 16);
    let requests = env_usize("MAGMA_BENCH_REQUESTS", 4);
    let max_tokens = env_usize("MAGMA_BENCH_MAX_TOKENS", 32);
    let body = if std::env::var("MAGMA_BENCH_IMAGE").is_ok_and(|v| v == "1") {
        image_chat(
            &fixture_image("coffee"),
            "What is in this image?",
            max_tokens,
        )
    } else {
        text_chat("Write a long story about robots.", max_tokens)
    };
    println!("magma-serve bench: {clients} clients x {requests} requests, max_tokens {max_tokens}, tiny model, CPU");
    println!("| mode | p50 ms | p99 ms | requests/s | tokens/s |");
    println!("|---|---|---|---|---|");
    for (mode, max_batch) in [("serial (max_batch 1)", 1), ("batched (max_batch 16)", 16)] {
        let r = run(max_batch, clients, requests, &body);
        let secs = r.wall.as_secs_f64();
        println!(
            "| {mode} | {:.1} | {:.1} | {:.1} | {:.0} |",
            percentile(&r.latencies, 0.5),
            percentile(&r.latencies, 0.99),
            r.latencies.len() as f64 / secs,
            r.tokens as f64 / secs
        );
    }
}
