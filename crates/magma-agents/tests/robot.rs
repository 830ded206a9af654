//! The robot loop against a toy 2-D reach environment behind the HTTP protocol.
//!
//! Policies: an "oracle" `/act` test double that reads the dots off the image and moves towards
//! the target (it stands for a model that solves the task, to check success counting and resume),
//! a fixed-answer `/act` double for replay's numbers, and the real `magma serve` with the tiny
//! fixture model for seeded reproducibility.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use magma_agents::robot::{
    decode_image, encode_image, read_episodes, replay, run_episodes, EpisodeLog, ReplayConfig,
    RobotConfig, StepLog,
};
use serde_json::{json, Value};

const SIZE: u32 = 32;

/// The toy environment: a red dot (agent) must reach a green dot (target) in the unit square;
/// `action[0..2]` moves the agent, clamped to ±0.2 per step; reward 1 and done within 0.08.
#[derive(Default)]
struct Reach {
    agent: [f64; 2],
    target: [f64; 2],
}

fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 11) as f64) / ((1u64 << 53) as f64)
}

impl Reach {
    fn image(&self) -> image::RgbImage {
        let mut img = image::RgbImage::new(SIZE, SIZE);
        for (p, color) in [(self.target, [0, 255, 0]), (self.agent, [255, 0, 0])] {
            let cx = (p[0] * f64::from(SIZE - 1)).round() as i64;
            let cy = (p[1] * f64::from(SIZE - 1)).round() as i64;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (x, y) = (cx + dx, cy + dy);
                    if (0..i64::from(SIZE)).contains(&x) && (0..i64::from(SIZE)).contains(&y) {
                        img.put_pixel(x as u32, y as u32, image::Rgb(color));
                    }
                }
            }
        }
        img
    }
}

type Env = Arc<Mutex<Reach>>;

async fn reset(State(env): State<Env>, Json(body): Json<Value>) -> Json<Value> {
    let mut seed = body["seed"].as_u64().unwrap_or(0) ^ 0x5eed;
    let mut e = env.lock().unwrap();
    e.agent = [lcg(&mut seed), lcg(&mut seed)];
    e.target = [lcg(&mut seed), lcg(&mut seed)];
    Json(
        json!({"observation": {"image": encode_image(&e.image())}, "instruction": "reach the green dot"}),
    )
}

async fn step(State(env): State<Env>, Json(body): Json<Value>) -> Json<Value> {
    let mut e = env.lock().unwrap();
    for i in 0..2 {
        let d = body["action"][i].as_f64().unwrap_or(0.0).clamp(-0.2, 0.2);
        e.agent[i] = (e.agent[i] + d).clamp(0.0, 1.0);
    }
    let dist = ((e.agent[0] - e.target[0]).powi(2) + (e.agent[1] - e.target[1]).powi(2)).sqrt();
    let done = dist < 0.08;
    Json(json!({"observation": {"image": encode_image(&e.image())},
                "reward": if done { 1.0 } else { 0.0 }, "done": done}))
}

fn centroid(img: &image::RgbImage, color: [u8; 3]) -> Option<[f64; 2]> {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
    for (x, y, p) in img.enumerate_pixels() {
        if p.0 == color {
            sx += f64::from(x);
            sy += f64::from(y);
            n += 1.0;
        }
    }
    (n > 0.0).then(|| [sx / n / f64::from(SIZE - 1), sy / n / f64::from(SIZE - 1)])
}

async fn oracle(State(calls): State<Arc<AtomicUsize>>, Json(body): Json<Value>) -> Json<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    let img = decode_image(&body["image"], "image").unwrap();
    let agent = centroid(&img, [255, 0, 0]).unwrap_or([0.5, 0.5]);
    let target = centroid(&img, [0, 255, 0]).unwrap_or(agent);
    let action = vec![
        target[0] - agent[0],
        target[1] - agent[1],
        0.0,
        0.0,
        0.0,
        0.0,
        1.0,
    ];
    Json(json!({"action": action, "env_action": null, "action_ids": [1, 2, 3, 4, 5, 6, 7]}))
}

/// Answers every frame with the same action and ids (for replay's arithmetic).
async fn fixed(Json(_): Json<Value>) -> Json<Value> {
    Json(
        json!({"action": [0.5, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0], "action_ids": [10, 11, 12, 13, 14, 15, 16]}),
    )
}

struct Http {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn serve(app: Router) -> Http {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Http {
        addr,
        _runtime: runtime,
    }
}

fn reach_env() -> Http {
    serve(
        Router::new()
            .route("/reset", post(reset))
            .route("/step", post(step))
            .with_state(Env::default()),
    )
}

fn config(endpoint: SocketAddr, env: SocketAddr, out: &std::path::Path) -> RobotConfig {
    RobotConfig {
        endpoint: format!("http://{endpoint}"),
        env: format!("http://{env}"),
        task: None,
        episodes: 3,
        seed: 11,
        max_steps: 25,
        policy_setup: None,
        unnorm_key: None,
        temperature: 0.0,
        out_dir: out.to_path_buf(),
        timeout: std::time::Duration::from_secs(30),
    }
}

#[test]
fn an_oracle_policy_reaches_every_target_and_runs_resume() {
    let env = reach_env();
    let calls = Arc::new(AtomicUsize::new(0));
    let policy = serve(
        Router::new()
            .route("/act", post(oracle))
            .with_state(calls.clone()),
    );
    let out = tempfile::tempdir().unwrap();
    let cfg = config(policy.addr, env.addr, out.path());
    let summary = run_episodes(&cfg, |_| {}).unwrap();
    assert_eq!(
        (summary.episodes, summary.successes, summary.errors),
        (3, 3, 0),
        "{summary:?}"
    );
    assert_eq!((summary.success_rate, summary.success_std), (1.0, 0.0));
    let episodes = read_episodes(out.path()).unwrap();
    assert_eq!(episodes.len(), 3);
    for e in &episodes {
        assert_eq!(e.instruction, "reach the green dot");
        assert!(e.steps.last().unwrap().done && e.total_reward == 1.0);
        assert!(out.path().join(&e.steps[0].frame).is_file());
    }
    // a rerun reads the finished episodes instead of running them again
    let used = calls.load(Ordering::SeqCst);
    let again = run_episodes(&cfg, |_| {}).unwrap();
    assert_eq!(again, summary);
    assert_eq!(calls.load(Ordering::SeqCst), used);
}

#[test]
fn an_unreachable_environment_is_a_logged_episode_error() {
    let policy = serve(Router::new().route("/act", post(fixed)));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(policy.addr, closed, out.path());
    cfg.episodes = 2;
    let summary = run_episodes(&cfg, |_| {}).unwrap();
    assert_eq!(
        (summary.episodes, summary.errors, summary.successes),
        (2, 2, 0)
    );
    let e = &read_episodes(out.path()).unwrap()[0];
    assert!(e.error.as_ref().unwrap().contains("/reset"), "{e:?}");
}

#[test]
fn replay_computes_token_accuracy_and_l1_per_dimension() {
    let policy = serve(Router::new().route("/act", post(fixed)));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("episode-000")).unwrap();
    let frame = image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]));
    frame
        .save(dir.path().join("episode-000/frame-000.png"))
        .unwrap();
    frame
        .save(dir.path().join("episode-000/frame-001.png"))
        .unwrap();
    let step = |k: usize, action: Vec<f64>, ids: Vec<u32>| StepLog {
        frame: format!("episode-000/frame-{k:03}.png"),
        action,
        env_action: Vec::new(),
        action_ids: ids,
        reward: 0.0,
        done: false,
    };
    let episode = EpisodeLog {
        episode: 0,
        seed: 0,
        instruction: "x".into(),
        success: false,
        total_reward: 0.0,
        error: None,
        steps: vec![
            // the policy answers [0.5, 0, -1, 0, 0, 0, 1] with ids 10..=16
            step(
                0,
                vec![0.5, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
                vec![10, 11, 12, 13, 14, 15, 16],
            ),
            step(
                1,
                vec![0.0, 0.2, -1.0, 0.0, 0.0, 0.5, -1.0],
                vec![10, 99, 12, 99, 14, 99, 99],
            ),
        ],
    };
    std::fs::write(
        dir.path().join("episode-000.json"),
        serde_json::to_string(&episode).unwrap(),
    )
    .unwrap();
    let report = replay(&ReplayConfig {
        episodes_dir: dir.path().to_path_buf(),
        endpoint: format!("http://{}", policy.addr),
        unnorm_key: None,
        timeout: std::time::Duration::from_secs(10),
    })
    .unwrap();
    assert_eq!((report.episodes, report.steps), (1, 2));
    // 7 + 3 of 14 tokens right
    assert!((report.token_accuracy.unwrap() - 10.0 / 14.0).abs() < 1e-12);
    let expected = [0.25, 0.1, 0.0, 0.0, 0.0, 0.25, 1.0];
    for (got, want) in report.l1_per_dim.iter().zip(expected) {
        assert!((got - want).abs() < 1e-12, "{:?}", report.l1_per_dim);
    }
    assert!((report.l1_mean - 1.6 / 7.0).abs() < 1e-12);
}

#[test]
fn seeded_runs_through_magma_serve_are_identical() {
    let (addr, stop, thread) = common::magma_serve();
    let env = reach_env();
    let run = |seed: u64| {
        let out = tempfile::tempdir().unwrap();
        let mut cfg = config(addr, env.addr, out.path());
        cfg.episodes = 2;
        cfg.max_steps = 4;
        cfg.seed = seed;
        cfg.temperature = 0.7;
        cfg.policy_setup = Some("google_robot".into());
        let summary = run_episodes(&cfg, |_| {}).unwrap();
        let episodes = read_episodes(out.path()).unwrap();
        (summary, episodes)
    };
    let (s1, e1) = run(5);
    let (s2, e2) = run(5);
    assert_eq!(s1.errors, 0, "{e1:?}");
    assert_eq!(e1.iter().map(|e| e.steps.len()).sum::<usize>(), 8);
    let actions = |e: &[EpisodeLog]| -> Vec<(Vec<f64>, Vec<f64>, Vec<u32>)> {
        e.iter()
            .flat_map(|e| {
                e.steps
                    .iter()
                    .map(|s| (s.action.clone(), s.env_action.clone(), s.action_ids.clone()))
            })
            .collect()
    };
    assert_eq!(actions(&e1), actions(&e2));
    assert_eq!(s1, s2);
    drop(stop);
    thread.join().unwrap();
}
