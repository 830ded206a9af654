//! `magma agent`: agents that act. `web` drives a real Chromium; `robot` runs episodes against an
//! HTTP environment; `replay` scores a policy offline on recorded episodes.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use magma_agents::{
    run_web_agent, AllowList, Browser, LaunchOptions, PromptStyle, ScriptedPolicy, Viewport,
    WebAgentConfig,
};
use magma_client::{ChatPolicy, Endpoint, LocalModel};

use crate::embedded::ModelSource;

/// Agents that act: a web agent on Chromium, a robot policy loop, offline replay.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AgentCommand {
    /// Drive a headless Chromium: screenshot + elements → Set-of-Mark → model → real input
    /// events, until the model stops or --max-steps; writes a trajectory and an HTML report.
    Web(WebArgs),
    /// Run robot episodes: an HTTP environment (reset/step, see docs/agents.md) and a Magma
    /// `/act` endpoint with sessions; per-episode JSON and the success rate (mean ± std).
    Robot(RobotArgs),
    /// Score recorded robot episodes offline against an `/act` endpoint: action token accuracy
    /// and L1 per action dimension.
    Replay(ReplayArgs),
}

#[derive(clap::Args, Debug)]
pub struct RobotArgs {
    /// `magma serve` (or any server with Magma's `/act` sessions).
    #[arg(long)]
    pub endpoint: String,
    /// The environment server (`POST /reset`, `POST /step`).
    #[arg(long)]
    pub env: String,
    /// Task sent to the environment's reset (it may answer its own instruction).
    #[arg(long)]
    pub task: Option<String>,
    /// Episodes; episode k uses seed S + k.
    #[arg(long, default_value_t = 1)]
    pub episodes: usize,
    /// Base seed of the resets and the policy's sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Step limit per episode.
    #[arg(long, default_value_t = 100)]
    pub max_steps: usize,
    /// Post-processing: google_robot (sticky gripper), widowx_bridge, libero; none = raw action.
    #[arg(long)]
    pub policy_setup: Option<String>,
    /// Action statistics key (default: the policy setup's).
    #[arg(long)]
    pub unnorm_key: Option<String>,
    /// Sampling temperature (the reference samples at 0.7; 0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Time limit of one HTTP request, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Output folder (episode-NNN.json, frames, summary.json); a rerun resumes.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Folder of episode-*.json files (as `magma agent robot` writes them).
    #[arg(long)]
    pub episodes: PathBuf,
    /// The `/act` endpoint to score.
    #[arg(long)]
    pub endpoint: String,
    /// Action statistics key sent to `/act`.
    #[arg(long)]
    pub unnorm_key: Option<String>,
    /// Time limit of one request, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which policy answers: a model folder, an endpoint, or a script of answers.
#[derive(clap::Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// An OpenAI-compatible server (`magma serve`, vLLM, a hosted model) instead of a local model.
    #[arg(long, conflicts_with = "model")]
    pub endpoint: Option<String>,
    /// API key for --endpoint (also $MAGMA_API_KEY).
    #[arg(long, env = "MAGMA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The `model` field sent to --endpoint.
    #[arg(long, default_value = "magma")]
    pub model_name: String,
    /// Time limit of one endpoint request, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Answers from a file, one per line, instead of a model (demos, tests); `STOP` after the last.
    #[arg(long, conflicts_with_all = ["model", "endpoint"])]
    pub script: Option<PathBuf>,
}

impl PolicyArgs {
    fn policy(&self) -> anyhow::Result<Box<dyn ChatPolicy>> {
        if let Some(script) = &self.script {
            let text = std::fs::read_to_string(script)
                .with_context(|| format!("reading the answer script {}", script.display()))?;
            return Ok(Box::new(ScriptedPolicy::from_lines(&text)));
        }
        if let Some(url) = &self.endpoint {
            if !(self.timeout.is_finite() && self.timeout > 0.0) {
                anyhow::bail!("--timeout must be a positive number of seconds");
            }
            let mut endpoint = Endpoint::new(url.clone())
                .model_name(self.model_name.clone())
                .timeout(Duration::from_secs_f64(self.timeout));
            if let Some(key) = &self.api_key {
                endpoint = endpoint.api_key(key.clone());
            }
            return Ok(Box::new(endpoint));
        }
        let dir = self.source.dir()?;
        Ok(Box::new(
            LocalModel::load(&dir).with_context(|| format!("loading {}", dir.display()))?,
        ))
    }
}

#[derive(clap::Args, Debug)]
pub struct WebArgs {
    /// Start page.
    #[arg(long)]
    pub url: String,
    /// The task, in words.
    #[arg(long)]
    pub task: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Stop after this many steps.
    #[arg(long, default_value_t = 10)]
    pub max_steps: usize,
    /// Viewport in CSS pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x800")]
    pub viewport: String,
    /// Device pixel ratio (screenshots are viewport × this).
    #[arg(long, default_value_t = 1.0)]
    pub device_scale_factor: f64,
    /// Origin (`https://host:port`) or host name navigation may go to; repeat for several.
    /// Default: the start URL's origin.
    #[arg(long = "allow-domain", value_name = "DOMAIN")]
    pub allow_domains: Vec<String>,
    /// Ask on the terminal before each action.
    #[arg(long)]
    pub confirm: bool,
    /// Allow typing into password fields (refused by default).
    #[arg(long)]
    pub allow_passwords: bool,
    /// Prompt: `history` (Magma's multi-step format with the previous actions) or `grounding`
    /// (the reference UI agent's one-shot click prompt).
    #[arg(long, value_enum, default_value_t = PromptArg::History)]
    pub prompt: PromptArg,
    /// New tokens per answer.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Give up waiting for a page to settle after this many seconds (the step goes on).
    #[arg(long, default_value_t = 10.0)]
    pub settle_timeout: f64,
    /// Show the browser window (needs a display).
    #[arg(long)]
    pub headful: bool,
    /// Chromium binary (default: $MAGMA_CHROMIUM, then chromium / google-chrome on PATH).
    #[arg(long)]
    pub chromium: Option<PathBuf>,
    /// Folder for trajectory.jsonl, the screenshots, summary.json and report.html.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PromptArg {
    History,
    Grounding,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        AgentCommand::Web(a) => web(a),
        AgentCommand::Robot(a) => robot(a),
        AgentCommand::Replay(a) => replay(a),
    }
}

fn web(args: WebArgs) -> anyhow::Result<()> {
    let mut config = WebAgentConfig::new(&args.url, &args.task)?;
    config.max_steps = args.max_steps;
    config.viewport = Viewport::parse(&args.viewport, args.device_scale_factor)?;
    if !args.allow_domains.is_empty() {
        config.allow = AllowList::new(&args.allow_domains)?;
    }
    config.allow_passwords = args.allow_passwords;
    config.prompt = match args.prompt {
        PromptArg::History => PromptStyle::History,
        PromptArg::Grounding => PromptStyle::Grounding,
    };
    config.max_new_tokens = args.max_new_tokens;
    if !(args.settle_timeout.is_finite() && args.settle_timeout > 0.0) {
        anyhow::bail!("--settle-timeout must be a positive number of seconds");
    }
    config.settle.timeout = Duration::from_secs_f64(args.settle_timeout);
    config.out_dir = args.out.clone();
    let mut policy = args.policy.policy()?;
    let browser = Browser::launch(&LaunchOptions {
        binary: args.chromium.clone(),
        headful: args.headful,
    })?;
    if !args.json {
        eprintln!("{} · policy {}", browser.version, policy.describe());
    }
    let mut ask = |command: &magma_actions::ui::WebCommand,
                   preview: Option<&magma_agents::Executed>| {
        let at = preview
            .and_then(|p| p.point)
            .map(|[x, y]| format!(" at ({x:.0}, {y:.0})"))
            .unwrap_or_default();
        eprint!(
            "next action: {}{at} — run it? [y/N] ",
            serde_json::to_string(command).unwrap_or_default()
        );
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).is_ok()
            && matches!(line.trim(), "y" | "Y" | "yes")
    };
    let confirm: Option<&mut magma_agents::Confirm<'_>> =
        if args.confirm { Some(&mut ask) } else { None };
    let summary = run_web_agent(&browser.client, policy.as_mut(), &config, confirm)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for (i, o) in summary.outcomes.iter().enumerate() {
            println!("step {i}: {}", serde_json::to_string(o)?.trim_matches('"'));
        }
        println!(
            "{} step(s), {} · final URL {}",
            summary.steps, summary.stop_reason, summary.final_url
        );
        if let Some(answer) = &summary.answer {
            println!("answer: {answer}");
        }
        if let Some(out) = &summary.out_dir {
            println!("report: {}", out.join("report.html").display());
        }
    }
    Ok(())
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        anyhow::bail!("{flag} must be a positive number of seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

fn robot(args: RobotArgs) -> anyhow::Result<()> {
    let config = magma_agents::robot::RobotConfig {
        endpoint: args.endpoint,
        env: args.env,
        task: args.task,
        episodes: args.episodes,
        seed: args.seed,
        max_steps: args.max_steps,
        policy_setup: args.policy_setup,
        unnorm_key: args.unnorm_key,
        temperature: args.temperature,
        out_dir: args.out,
        timeout: seconds(args.timeout, "--timeout")?,
    };
    let bar = indicatif::ProgressBar::new(config.episodes as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} episodes, ETA {eta} {msg}")
            .expect("valid template"),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let summary = magma_agents::robot::run_episodes(&config, |episode| {
        bar.inc(1);
        bar.set_message(format!(
            "last: {} in {} steps{}",
            if episode.success {
                "success"
            } else {
                "failure"
            },
            episode.steps.len(),
            episode
                .error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} episode(s): success rate {:.3} ± {:.3} ({} successes), mean return {:.3}, mean steps {:.1}, {} with errors",
            summary.episodes,
            summary.success_rate,
            summary.success_std,
            summary.successes,
            summary.mean_return,
            summary.mean_steps,
            summary.errors
        );
        println!("episodes and summary.json in {}", config.out_dir.display());
    }
    Ok(())
}

fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let report = magma_agents::robot::replay(&magma_agents::robot::ReplayConfig {
        episodes_dir: args.episodes,
        endpoint: args.endpoint,
        unnorm_key: args.unnorm_key,
        timeout: seconds(args.timeout, "--timeout")?,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} episode(s), {} step(s) scored",
        report.episodes, report.steps
    );
    match report.token_accuracy {
        Some(a) => println!("action token accuracy: {a:.4}"),
        None => println!("action token accuracy: n/a (no recorded action ids)"),
    }
    let dims: Vec<String> = report
        .l1_per_dim
        .iter()
        .map(|v| format!("{v:.4}"))
        .collect();
    println!(
        "action L1 per dimension: [{}], mean {:.4}",
        dims.join(", "),
        report.l1_mean
    );
    for failure in &report.failures {
        println!("skipped: {failure}");
    }
    Ok(())
}
