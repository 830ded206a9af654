//! Seeded fuzzing: thousands of byte-level and structural mutations of valid requests. Every
//! answer must be a 2xx or 4xx with a well-formed body, and afterwards the server must still give
//! the exact answer it gave before.

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const MUTATIONS: usize = 2500;

fn random_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-3i64..40)),
        3 => json!(rng.random::<f64>() * 4.0 - 1.0),
        4 => json!(
            [
                "user",
                "system",
                "assistant",
                "robot",
                "",
                "<image>",
                "data:image/png;base64,AAAA"
            ][rng.random_range(0..7)]
        ),
        5 => json!([]),
        6 => json!({}),
        7 => json!(i64::MAX),
        _ => json!("x".repeat(rng.random_range(0..50))),
    }
}

/// Replaces, removes or retypes one random node of the JSON tree.
fn mutate_tree(value: &mut Value, rng: &mut StdRng) {
    let go_deeper = rng.random_bool(0.7);
    match value {
        Value::Object(map) if !map.is_empty() && go_deeper => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.random_range(0..keys.len())];
            if rng.random_bool(0.15) {
                map.remove(key);
            } else if let Some(child) = map.get_mut(key) {
                mutate_tree(child, rng);
            }
        }
        Value::Array(items) if !items.is_empty() && go_deeper => {
            let i = rng.random_range(0..items.len());
            match rng.random_range(0..6) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.push(copy);
                }
                _ => mutate_tree(&mut items[i], rng),
            }
        }
        _ => *value = random_value(rng),
    }
}

/// Flips, deletes, duplicates or truncates bytes of the serialised body.
fn mutate_bytes(body: &mut Vec<u8>, rng: &mut StdRng) {
    if body.is_empty() {
        return;
    }
    for _ in 0..rng.random_range(1..4) {
        let i = rng.random_range(0..body.len());
        match rng.random_range(0..5) {
            0 => body[i] = rng.random(),
            1 => body[i] = b"{}[]\",:0-e.\\"[rng.random_range(0..12)],
            2 => {
                let end = (i + rng.random_range(1..16)).min(body.len());
                body.drain(i..end);
            }
            3 => body.truncate(i),
            _ => {
                let end = (i + rng.random_range(1..16)).min(body.len());
                let copy = body[i..end].to_vec();
                body.splice(i..i, copy);
            }
        }
        if body.is_empty() {
            return;
        }
    }
}

#[test]
fn thousands_of_mutated_requests_never_break_the_server() {
    let server = TestServer::with_config(|c| {
        c.limits.default_max_tokens = 4;
        c.limits.act_max_tokens = 10;
        c.limits.request_timeout = std::time::Duration::from_secs(20);
    });
    let small = image::RgbImage::from_fn(12, 10, |x, y| {
        image::Rgb([(x * 20) as u8, (y * 25) as u8, 90])
    });
    let seeds: Vec<(&str, Value)> = vec![
        ("/v1/chat/completions", text_chat("Say something.", 3)),
        ("/v1/chat/completions", image_chat(&small, "Describe.", 3)),
        (
            "/act",
            json!({"image": numpy_image(&small, "|u1"), "instruction": "push the block",
            "unnorm_key": "bridge_orig", "max_tokens": 9}),
        ),
        (
            "/v1/som",
            json!({"image": png_data_url(&small), "boxes": [[1, 1, 6, 6]], "format": "pixels"}),
        ),
    ];
    let before = server.post_json(seeds[1].0, &seeds[1].1).json();
    assert_eq!(before["object"], "chat.completion");

    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut statuses = std::collections::BTreeMap::new();
    for n in 0..MUTATIONS {
        let (path, seed) = &seeds[rng.random_range(0..seeds.len())];
        let body = if rng.random_bool(0.5) {
            let mut tree = seed.clone();
            for _ in 0..rng.random_range(1..4) {
                mutate_tree(&mut tree, &mut rng);
            }
            tree.to_string().into_bytes()
        } else {
            let mut bytes = seed.to_string().into_bytes();
            mutate_bytes(&mut bytes, &mut rng);
            bytes
        };
        let response = server.post(path, &body, &[]);
        *statuses.entry(response.status).or_insert(0) += 1;
        assert!(
            (200..300).contains(&response.status) || (400..500).contains(&response.status),
            "mutation {n} to {path} got {}: {}\nbody: {}",
            response.status,
            response.text(),
            String::from_utf8_lossy(&body)
        );
        let streamed = response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if !streamed {
            let parsed: Result<Value, _> = serde_json::from_slice(&response.body);
            assert!(
                parsed.is_ok(),
                "mutation {n}: body is not JSON: {}",
                response.text()
            );
            if response.status >= 400 {
                assert!(
                    response.json()["error"]["message"].is_string(),
                    "mutation {n}: {}",
                    response.text()
                );
            }
        }
    }
    eprintln!("fuzz statuses: {statuses:?}");
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 50,
        "some mutations stay valid: {statuses:?}"
    );
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 500,
        "most are rejected: {statuses:?}"
    );

    let after = server.post_json(seeds[1].0, &seeds[1].1).json();
    assert_eq!(after["choices"], before["choices"]);
    assert_eq!(after["usage"], before["usage"]);
    assert_eq!(server.get("/health").status, 200);
}
