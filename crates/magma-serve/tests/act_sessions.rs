//! `/act` sessions: seeded per-episode sampling, the Google robot's sticky gripper, reset.

mod common;

use common::*;
use serde_json::{json, Value};

fn frame(k: u32) -> image::RgbImage {
    image::RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([
            (x * 7 + k * 40) as u8,
            (y * 9 + k * 13) as u8,
            ((x + y + k) * 3) as u8,
        ])
    })
}

fn step(server: &TestServer, session: &str, k: u32, extra: Value) -> Value {
    let mut body = json!({
        "image": numpy_image(&frame(k), "|u1"),
        "instruction": "pick up the can",
        "session_id": session,
        "max_tokens": 12,
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let response = server.post_json("/act", &body);
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

fn episode(server: &TestServer, session: &str, seed: u64, steps: u32) -> Vec<Value> {
    (0..steps)
        .map(|k| {
            let extra = json!({"seed": seed, "temperature": 0.7, "reset": k == 0,
                               "policy_setup": "google_robot"});
            step(server, session, k, extra)
        })
        .collect()
}

#[test]
fn seeded_sessions_replay_exactly() {
    let server = TestServer::start();
    let a = episode(&server, "a", 7, 6);
    let b = episode(&server, "b", 7, 6);
    let strip = |v: &[Value]| -> Vec<(Value, Value, Value)> {
        v.iter()
            .map(|s| {
                (
                    s["action_ids"].clone(),
                    s["action"].clone(),
                    s["env_action"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    // the episode's steps are numbered and sample with their own seeds
    let steps: Vec<u64> = a.iter().map(|s| s["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 1, 2, 3, 4, 5]);
    let seeds: std::collections::HashSet<u64> =
        a.iter().map(|s| s["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds.len(), 6);
    // the same episode again after a reset is the same episode
    let again = episode(&server, "a", 7, 6);
    assert_eq!(strip(&a), strip(&again));
}

/// The Google-robot rule of Magma's SimplerEnv wrapper, written out independently: the command is
/// `previous − current` open-ness (0 on the first step); a change above 0.5 while no sticky action
/// runs is latched and repeated for 10 steps in all.
fn reference_sticky(raw_gripper: &[f64]) -> Vec<f64> {
    let (mut on, mut repeat, mut latched, mut previous) = (false, 0, 0.0, None::<f64>);
    raw_gripper
        .iter()
        .map(|&current| {
            let mut relative = previous.map_or(0.0, |p| p - current);
            previous = Some(current);
            if relative.abs() > 0.5 && !on {
                on = true;
                latched = relative;
            }
            if on {
                repeat += 1;
                relative = latched;
            }
            if repeat == 10 {
                on = false;
                repeat = 0;
                latched = 0.0;
            }
            relative
        })
        .collect()
}

#[test]
fn google_robot_sessions_apply_the_sticky_gripper() {
    let server = TestServer::start();
    let mut latched_somewhere = false;
    for seed in 0..4 {
        let steps = episode(&server, &format!("g{seed}"), seed, 14);
        let raw: Vec<f64> = steps
            .iter()
            .map(|s| s["action"][6].as_f64().unwrap())
            .collect();
        let gripper: Vec<f64> = steps
            .iter()
            .map(|s| s["env_action"]["gripper"].as_f64().unwrap())
            .collect();
        let expected = reference_sticky(&raw);
        assert_eq!(gripper, expected, "raw gripper {raw:?}");
        latched_somewhere |= expected.iter().any(|g| g.abs() > 0.5);
        assert_eq!(steps[0]["env_action"]["env"], "simpler_env");
    }
    assert!(
        latched_somewhere,
        "no episode exercised the latch; pick other seeds"
    );
}

#[test]
fn reset_ends_the_episode_and_reports_its_actions() {
    let server = TestServer::start();
    let steps = episode(&server, "r", 3, 3);
    let response = server.post_json("/act", &json!({"session_id": "r", "reset": true}));
    assert_eq!(response.status, 200, "{}", response.text());
    let ended = response.json();
    assert_eq!(ended["reset"], true);
    let actions: Vec<Value> = steps.iter().map(|s| s["action"].clone()).collect();
    assert_eq!(ended["actions"].as_array().unwrap(), &actions);
    // the next request starts at step 0 again
    let next = step(
        &server,
        "r",
        0,
        json!({"seed": 3, "temperature": 0.7, "policy_setup": "google_robot"}),
    );
    assert_eq!(next["step"], 0);
    assert_eq!(next["action_ids"], steps[0]["action_ids"]);
}

#[test]
fn session_fields_are_checked() {
    let server = TestServer::start();
    let body = json!({"image": numpy_image(&frame(0), "|u1"), "instruction": "x",
                      "policy_setup": "google_robot"});
    let r = server.post_json("/act", &body);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("session_id"), "{}", r.text());
    let body = json!({"image": numpy_image(&frame(0), "|u1"), "instruction": "x",
                      "session_id": "s", "policy_setup": "humanoid"});
    let r = server.post_json("/act", &body);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("humanoid"), "{}", r.text());
    // a session keeps its settings until reset
    step(&server, "t", 0, json!({"policy_setup": "widowx_bridge"}));
    let body = json!({"image": numpy_image(&frame(1), "|u1"), "instruction": "x",
                      "session_id": "t", "policy_setup": "google_robot", "max_tokens": 12});
    let r = server.post_json("/act", &body);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("reset"), "{}", r.text());
}
