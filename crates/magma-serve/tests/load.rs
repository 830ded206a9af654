//! Bounded load on loopback: 32 concurrent clients x 8 requests, every answer identical to the one
//! the same prompt gets alone (batched decoding must not change greedy outputs); a full queue
//! answers 429; shutdown finishes in-flight requests.

mod common;

use common::*;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const CLIENTS: usize = 32;
const REQUESTS: usize = 8;

fn prompt(client: usize) -> String {
    format!("Client {client} asks: {}", "why? ".repeat(client % 5))
}

#[test]
fn thirty_two_concurrent_clients_all_get_their_unbatched_answer() {
    let server = TestServer::start();
    let alone: Vec<String> = (0..CLIENTS)
        .map(|c| {
            let body = server
                .post_json("/v1/chat/completions", &text_chat(&prompt(c), 6))
                .json();
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let addr = server.addr;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..REQUESTS)
                    .map(|_| {
                        let r = post_chat(addr, &text_chat(&prompt(c), 6));
                        assert_eq!(r.status, 200, "client {c}: {}", r.text());
                        r.json()["choices"][0]["message"]["content"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (c, thread) in threads.into_iter().enumerate() {
        let answers = thread.join().expect("client thread");
        assert_eq!(answers.len(), REQUESTS);
        assert!(
            answers.iter().all(|a| *a == alone[c]),
            "client {c}: {answers:?} vs {:?}",
            alone[c]
        );
    }
    let metrics = server.get("/metrics").text();
    let steps: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("magma_engine_steps_total "))
        .unwrap()
        .parse()
        .unwrap();
    let tokens: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("magma_generated_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    // each request decodes 5 tokens after its first; alone that would be one step per token
    assert!(
        steps < tokens,
        "steps {steps} vs tokens {tokens}: decoding was never batched"
    );
}

#[test]
fn a_full_queue_answers_429_and_shutdown_finishes_in_flight_work() {
    let server = TestServer::with_config(|c| {
        c.engine.queue_capacity = 1;
        c.engine.max_batch = 1;
    });
    let addr = server.addr;
    let long = std::thread::spawn(move || post_chat(addr, &text_chat("Tell me everything.", 1500)));
    // wait until the long request is decoding, then fill the one queue slot
    let mut busy = false;
    for _ in 0..200 {
        let m = server.get("/metrics").text();
        if m.contains("magma_active_sequences 1") {
            busy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(busy, "the long request never started");
    let queued = std::thread::spawn(move || post_chat(addr, &text_chat("Short.", 2)));
    let mut full = false;
    for _ in 0..200 {
        if server
            .get("/metrics")
            .text()
            .contains("magma_queue_depth 1")
        {
            full = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(full, "the second request never queued");
    server
        .post_json("/v1/chat/completions", &text_chat("One more.", 2))
        .assert_error(429, "busy");
    drop(server); // graceful: waits for both in-flight requests
    let long = long.join().unwrap();
    assert_eq!(long.status, 200);
    assert!(long.json()["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(queued.join().unwrap().status, 200);
}
