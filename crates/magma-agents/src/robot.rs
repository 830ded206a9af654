//! The robot policy loop over HTTP: an environment speaking a small protocol, a policy behind
//! Magma's `/act` (`magma serve`, sessions on), per-episode logs and success rates; plus offline
//! replay of recorded episodes.
//!
//! # Environment protocol
//!
//! JSON over HTTP POST; images are json-numpy arrays (`{"__numpy__": base64 of the raw C-order
//! bytes, "dtype": "|u1", "shape": [H, W, 3]}`, OpenVLA's wire format):
//!
//! * `POST {env}/reset` with `{"seed": u64, "task": str | null}` →
//!   `{"observation": {"image": <json-numpy>}, "instruction": str}`
//! * `POST {env}/step` with `{"action": [f64; 7]}` (the environment command after the policy's
//!   post-processing) → `{"observation": {"image": …}, "reward": f64, "done": bool,
//!   "success": bool?}`; `success` defaults to `done && reward > 0`.
//!
//! `scripts/robot_env_shim.py` serves SimplerEnv or LIBERO this way.
//!
//! # Episode files
//!
//! `episode-NNN.json`: `{"episode", "seed", "instruction", "success", "return", "error",
//! "steps": [{"frame": "episode-NNN/frame-MMM.png", "action", "env_action", "action_ids",
//! "reward", "done"}]}`, written atomically when the episode ends; a rerun skips the episodes
//! already written (resume after a kill). [`replay`] reads the same files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::AgentError;

/// Settings of [`run_episodes`].
#[derive(Debug, Clone)]
pub struct RobotConfig {
    /// `magma serve` root (`/act` is appended).
    pub endpoint: String,
    /// Environment root (`/reset`, `/step` are appended).
    pub env: String,
    /// Task text sent to `reset` (the environment may choose its own instruction).
    pub task: Option<String>,
    /// Number of episodes; episode `k` uses seed `seed + k`.
    pub episodes: usize,
    /// Base seed (environment reset and the policy's sampler).
    pub seed: u64,
    /// Step limit per episode.
    pub max_steps: usize,
    /// `google_robot`, `widowx_bridge`, `libero` or none (the raw 7-vector goes to the env).
    pub policy_setup: Option<String>,
    /// Statistics key (default: the policy setup's).
    pub unnorm_key: Option<String>,
    /// Sampling temperature (the reference samples at 0.7).
    pub temperature: f64,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Time limit of one HTTP request.
    pub timeout: Duration,
}

/// One step of an episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// The observation the action was chosen on (relative to the output folder).
    pub frame: String,
    /// Un-normalised 7-vector.
    pub action: Vec<f64>,
    /// What the environment received.
    #[serde(default)]
    pub env_action: Vec<f64>,
    /// The 7 action token ids.
    #[serde(default)]
    pub action_ids: Vec<u32>,
    /// Reward of the step.
    #[serde(default)]
    pub reward: f64,
    /// Whether the episode ended with it.
    #[serde(default)]
    pub done: bool,
}

/// One episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeLog {
    /// 0-based index.
    pub episode: usize,
    /// Seed of the reset and the sampler.
    pub seed: u64,
    /// The instruction the policy got.
    pub instruction: String,
    /// Whether the task was achieved.
    pub success: bool,
    /// Sum of rewards.
    #[serde(rename = "return")]
    pub total_reward: f64,
    /// Why the episode ended early, if it did.
    pub error: Option<String>,
    /// The steps.
    pub steps: Vec<StepLog>,
}

/// Result of [`run_episodes`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RobotSummary {
    /// Episodes run (or resumed).
    pub episodes: usize,
    /// Successful episodes.
    pub successes: usize,
    /// Mean success (0..1).
    pub success_rate: f64,
    /// Sample standard deviation of the per-episode success (0 with one episode).
    pub success_std: f64,
    /// Mean return.
    pub mean_return: f64,
    /// Mean steps per episode.
    pub mean_steps: f64,
    /// Episodes that ended with an error.
    pub errors: usize,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs JSON and reads a JSON answer; any HTTP or decoding problem names the URL.
fn post_json(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Value, AgentError> {
    let fail = |message: String| AgentError::Env {
        url: url.to_string(),
        message,
    };
    let response = agent
        .post(url)
        .content_type("application/json")
        .send(body.to_string())
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    let mut text = String::new();
    response
        .into_body()
        .into_reader()
        .take(256 << 20)
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("cannot read the answer: {e}")))?;
    if status != 200 {
        return Err(fail(format!(
            "HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    serde_json::from_str(&text).map_err(|e| fail(format!("the answer is not JSON: {e}")))
}

/// An RGB image as a json-numpy `uint8 [H, W, 3]` array.
pub fn encode_image(image: &RgbImage) -> Value {
    json!({
        "__numpy__": base64::engine::general_purpose::STANDARD.encode(image.as_raw()),
        "dtype": "|u1",
        "shape": [image.height(), image.width(), 3],
    })
}

/// A json-numpy `uint8 [H, W, 3]` array as an image; `what` names it in errors.
pub fn decode_image(value: &Value, what: &str) -> Result<RgbImage, AgentError> {
    let bad = |m: String| AgentError::Invalid(format!("{what}: {m}"));
    let data = value
        .get("__numpy__")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("not a json-numpy array (no `__numpy__`)".into()))?;
    let dtype = value.get("dtype").and_then(Value::as_str).unwrap_or("");
    if !matches!(dtype, "|u1" | "uint8" | "<u1") {
        return Err(bad(format!("dtype {dtype:?}, expected uint8 (|u1)")));
    }
    let shape: Vec<u64> = value
        .get("shape")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let [h, w, 3] = shape[..] else {
        return Err(bad(format!("shape {shape:?}, expected [H, W, 3]")));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| bad(format!("invalid base64: {e}")))?;
    let (w, h) = (
        u32::try_from(w).map_err(|_| bad("width too large".into()))?,
        u32::try_from(h).map_err(|_| bad("height too large".into()))?,
    );
    RgbImage::from_raw(w, h, bytes)
        .ok_or_else(|| bad(format!("{h}×{w}×3 does not match the data length")))
}

fn floats(value: &Value, what: &str) -> Result<Vec<f64>, AgentError> {
    value
        .as_array()
        .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| AgentError::Invalid(format!("{what} is not an array of numbers: {value}")))
}

/// The environment command of a session answer as a flat vector: SimplerEnv's
/// `world_vector ++ rot_axangle ++ [gripper]`, LIBERO's `action`, else the raw action.
fn env_vector(answer: &Value) -> Result<Vec<f64>, AgentError> {
    let command = &answer["env_action"];
    if command.is_null() {
        return floats(&answer["action"], "action");
    }
    if let Some(action) = command.get("action") {
        return floats(action, "env_action.action");
    }
    let mut v = floats(&command["world_vector"], "env_action.world_vector")?;
    v.extend(floats(&command["rot_axangle"], "env_action.rot_axangle")?);
    v.push(
        command["gripper"]
            .as_f64()
            .ok_or_else(|| AgentError::Invalid("env_action.gripper is not a number".into()))?,
    );
    Ok(v)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| AgentError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AgentError::io(path, e))
}

/// Runs `config.episodes` episodes (skipping those already in the output folder) and writes
/// `summary.json`. An episode that fails (environment or policy error) is logged with its error
/// and counts as a failure; the run goes on.
pub fn run_episodes(
    config: &RobotConfig,
    mut progress: impl FnMut(&EpisodeLog),
) -> Result<RobotSummary, AgentError> {
    std::fs::create_dir_all(&config.out_dir).map_err(|e| AgentError::io(&config.out_dir, e))?;
    let http = agent(config.timeout);
    let mut logs = Vec::new();
    for episode in 0..config.episodes {
        let path = config.out_dir.join(format!("episode-{episode:03}.json"));
        if let Some(done) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<EpisodeLog>(&t).ok())
        {
            progress(&done);
            logs.push(done);
            continue;
        }
        let seed = config.seed.wrapping_add(episode as u64);
        let mut log = EpisodeLog {
            episode,
            seed,
            instruction: config.task.clone().unwrap_or_default(),
            success: false,
            total_reward: 0.0,
            error: None,
            steps: Vec::new(),
        };
        if let Err(e) = run_one(config, &http, &mut log) {
            log.error = Some(e.to_string());
        }
        let text = serde_json::to_vec_pretty(&log).expect("episodes serialize");
        write_atomic(&path, &text)?;
        progress(&log);
        logs.push(log);
    }
    let summary = summarize(&logs);
    write_atomic(
        &config.out_dir.join("summary.json"),
        &serde_json::to_vec_pretty(&summary).expect("summary serializes"),
    )?;
    Ok(summary)
}

fn run_one(
    config: &RobotConfig,
    http: &ureq::Agent,
    log: &mut EpisodeLog,
) -> Result<(), AgentError> {
    let env = config.env.trim_end_matches('/');
    let act_url = format!("{}/act", config.endpoint.trim_end_matches('/'));
    let frames = config.out_dir.join(format!("episode-{:03}", log.episode));
    std::fs::create_dir_all(&frames).map_err(|e| AgentError::io(&frames, e))?;
    let reset = post_json(
        http,
        &format!("{env}/reset"),
        &json!({"seed": log.seed, "task": config.task}),
    )?;
    if let Some(instruction) = reset.get("instruction").and_then(Value::as_str) {
        log.instruction = instruction.to_string();
    }
    if log.instruction.is_empty() {
        return Err(AgentError::Env {
            url: format!("{env}/reset"),
            message: "no instruction (pass --task or answer `instruction`)".into(),
        });
    }
    let session = format!("episode-{}-seed-{}", log.episode, log.seed);
    let mut observation = reset["observation"]["image"].clone();
    for step in 0..config.max_steps {
        let image = decode_image(&observation, "observation.image")?;
        let frame = format!("episode-{:03}/frame-{step:03}.png", log.episode);
        let frame_path = config.out_dir.join(&frame);
        image
            .save_with_format(&frame_path, image::ImageFormat::Png)
            .map_err(|e| AgentError::io(&frame_path, e))?;
        let mut request = json!({
            "image": observation,
            "instruction": log.instruction,
            "session_id": session,
            "reset": step == 0,
            "seed": log.seed,
            "temperature": config.temperature,
        });
        if let Some(p) = &config.policy_setup {
            request["policy_setup"] = json!(p);
        }
        if let Some(k) = &config.unnorm_key {
            request["unnorm_key"] = json!(k);
        }
        let answer = post_json(http, &act_url, &request)?;
        let action = floats(&answer["action"], "action")?;
        let env_action = env_vector(&answer)?;
        let action_ids = answer["action_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64().map(|v| v as u32))
                    .collect()
            })
            .unwrap_or_default();
        let result = post_json(http, &format!("{env}/step"), &json!({"action": env_action}))?;
        let reward = result.get("reward").and_then(Value::as_f64).unwrap_or(0.0);
        let done = result.get("done").and_then(Value::as_bool).unwrap_or(false);
        log.total_reward += reward;
        log.steps.push(StepLog {
            frame,
            action,
            env_action,
            action_ids,
            reward,
            done,
        });
        if done {
            log.success = result
                .get("success")
                .and_then(Value::as_bool)
                .unwrap_or(reward > 0.0);
            return Ok(());
        }
        observation = result["observation"]["image"].clone();
    }
    Ok(())
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn summarize(logs: &[EpisodeLog]) -> RobotSummary {
    let success: Vec<f64> = logs
        .iter()
        .map(|l| f64::from(u8::from(l.success)))
        .collect();
    let (success_rate, success_std) = mean_std(&success);
    let returns: Vec<f64> = logs.iter().map(|l| l.total_reward).collect();
    let steps: Vec<f64> = logs.iter().map(|l| l.steps.len() as f64).collect();
    RobotSummary {
        episodes: logs.len(),
        successes: logs.iter().filter(|l| l.success).count(),
        success_rate,
        success_std,
        mean_return: mean_std(&returns).0,
        mean_steps: mean_std(&steps).0,
        errors: logs.iter().filter(|l| l.error.is_some()).count(),
    }
}

/// Offline scores of a policy on recorded episodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Episodes read.
    pub episodes: usize,
    /// Steps scored.
    pub steps: usize,
    /// Fraction of the 7 action tokens predicted exactly, over the steps with recorded ids.
    pub token_accuracy: Option<f64>,
    /// Mean |predicted − recorded| of the un-normalised action, per dimension.
    pub l1_per_dim: Vec<f64>,
    /// Mean of `l1_per_dim`.
    pub l1_mean: f64,
    /// Steps the policy failed on (skipped in the scores), with the reason.
    pub failures: Vec<String>,
}

/// Settings of [`replay`].
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Folder of `episode-*.json` files (as [`run_episodes`] writes them).
    pub episodes_dir: PathBuf,
    /// `magma serve` root.
    pub endpoint: String,
    /// Statistics key sent to `/act`.
    pub unnorm_key: Option<String>,
    /// Time limit of one request.
    pub timeout: Duration,
}

/// Reads every `episode-*.json` of a folder, in name order.
pub fn read_episodes(dir: &Path) -> Result<Vec<EpisodeLog>, AgentError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| AgentError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("episode-") && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(AgentError::Invalid(format!(
            "{} holds no episode-*.json files",
            dir.display()
        )));
    }
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| AgentError::io(p, e))?;
            serde_json::from_str(&text)
                .map_err(|e| AgentError::io(p, format!("not an episode: {e}")))
        })
        .collect()
}

/// Asks the policy for every recorded step (greedy, one stateless `/act` per frame) and compares
/// its answer with the recorded action.
pub fn replay(config: &ReplayConfig) -> Result<ReplayReport, AgentError> {
    let episodes = read_episodes(&config.episodes_dir)?;
    let http = agent(config.timeout);
    let act_url = format!("{}/act", config.endpoint.trim_end_matches('/'));
    let mut l1_sum: Vec<f64> = Vec::new();
    let mut scored = 0usize;
    let (mut tokens_right, mut tokens_total) = (0usize, 0usize);
    let mut failures = Vec::new();
    for episode in &episodes {
        for (k, step) in episode.steps.iter().enumerate() {
            let where_ = format!("episode {} step {k}", episode.episode);
            let path = config.episodes_dir.join(&step.frame);
            let image = match image::open(&path) {
                Ok(i) => i.to_rgb8(),
                Err(e) => {
                    failures.push(format!("{where_}: cannot read {}: {e}", path.display()));
                    continue;
                }
            };
            // a session of one step gets the answer as JSON with its ids; reset keeps it fresh
            let mut request = json!({
                "image": encode_image(&image),
                "instruction": episode.instruction,
                "session_id": format!("replay-{}-{k}", episode.episode),
                "reset": true,
            });
            if let Some(key) = &config.unnorm_key {
                request["unnorm_key"] = json!(key);
            }
            let answer = match post_json(&http, &act_url, &request) {
                Ok(a) => a,
                Err(e) => {
                    failures.push(format!("{where_}: {e}"));
                    continue;
                }
            };
            let predicted = match floats(&answer["action"], "action") {
                Ok(p) if p.len() == step.action.len() => p,
                Ok(p) => {
                    failures.push(format!(
                        "{where_}: {} predicted dimensions, {} recorded",
                        p.len(),
                        step.action.len()
                    ));
                    continue;
                }
                Err(e) => {
                    failures.push(format!("{where_}: {e}"));
                    continue;
                }
            };
            if l1_sum.is_empty() {
                l1_sum = vec![0.0; predicted.len()];
            }
            for (sum, (p, r)) in l1_sum.iter_mut().zip(predicted.iter().zip(&step.action)) {
                *sum += (p - r).abs();
            }
            scored += 1;
            if !step.action_ids.is_empty() {
                let ids: Vec<u64> = answer["action_ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                tokens_total += step.action_ids.len();
                tokens_right += step
                    .action_ids
                    .iter()
                    .zip(&ids)
                    .filter(|(r, p)| u64::from(**r) == **p)
                    .count();
            }
        }
    }
    let l1_per_dim: Vec<f64> = l1_sum.iter().map(|s| s / scored.max(1) as f64).collect();
    let l1_mean = if l1_per_dim.is_empty() {
        0.0
    } else {
        l1_per_dim.iter().sum::<f64>() / l1_per_dim.len() as f64
    };
    Ok(ReplayReport {
        episodes: episodes.len(),
        steps: scored,
        token_accuracy: (tokens_total > 0).then(|| tokens_right as f64 / tokens_total as f64),
        l1_per_dim,
        l1_mean,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_round_trip_through_json_numpy() {
        let image = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
        assert_eq!(decode_image(&encode_image(&image), "img").unwrap(), image);
        let mut bad = encode_image(&image);
        bad["shape"] = json!([3, 6, 3]);
        let e = decode_image(&bad, "observation.image")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("observation.image") && e.contains("data length"),
            "{e}"
        );
    }

    #[test]
    fn success_rate_is_mean_and_sample_std() {
        let log = |success| EpisodeLog {
            episode: 0,
            seed: 0,
            instruction: String::new(),
            success,
            total_reward: f64::from(u8::from(success)),
            error: None,
            steps: Vec::new(),
        };
        let s = summarize(&[log(true), log(false), log(true), log(true)]);
        assert_eq!(s.successes, 3);
        assert!((s.success_rate - 0.75).abs() < 1e-12);
        // sample std of [1, 0, 1, 1] = sqrt(0.75 / 3) = 0.5
        assert!((s.success_std - 0.5).abs() < 1e-12);
    }

    #[test]
    fn env_vectors_flatten_the_commands() {
        let simpler = json!({"action": vec![0.0; 7], "env_action": {"env": "simpler_env",
            "world_vector": [1.0, 2.0, 3.0], "rot_axangle": [4.0, 5.0, 6.0], "gripper": -1.0,
            "terminate_episode": 0.0}});
        assert_eq!(
            env_vector(&simpler).unwrap(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -1.0]
        );
        let raw = json!({"action": vec![0.5; 7], "env_action": null});
        assert_eq!(env_vector(&raw).unwrap(), [0.5; 7]);
    }
}
