//! `magma`: one binary over every magma-rs library crate.
//!
//! Each subcommand lives in its own module under `cmd/` with an `Args` struct (clap derive) and a
//! `run(args) -> anyhow::Result<()>` function; this file only wires them together.

mod cmd;
mod embedded;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "magma",
    version,
    about = "Magma (vision-language-action foundation model) in Rust: prompts, inference, marks, traces, actions",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set-of-Mark: draw numbered marks on a screenshot from element boxes (OmniParser, pixels, ratios, yxhw).
    Som(cmd::som::Args),
    /// Robot action tokens <-> 7-DoF actions; parse UI, Set-of-Mark and Trace-of-Mark answers.
    Action(cmd::action::Args),
    /// Show what the model receives for a prompt: chat template, token ids, crop grids, image tokens.
    Prompt(cmd::prompt::Args),
    /// Run the image processor on one image and save the pixel values as .npy.
    Preprocess(cmd::preprocess::Args),
    /// Quantize a model (q4k, q8_0, ...) into a reusable folder with a GGUF file, tensor by tensor.
    Quantize(cmd::quantize::Args),
    /// Fixture-model parity with the Python reference on a device and dtype (CPU or CUDA).
    Parity(cmd::parity::Args),
    /// Generate text from a prompt and images with a Magma model (streamed, or --json).
    Generate(cmd::generate::Args),
    /// Timing benchmarks (`bench model`: vision, prefill and decode speed on random weights).
    Bench(cmd::bench::Args),
    /// Trace-of-Mark: track a point grid through a video or frame folder, remove camera motion, pick marks, write traces.
    Tom(cmd::tom::Args),
    /// Score the Trace-of-Mark pipeline on synthetic scenes with known motion (camera, objects).
    TomEval(cmd::tom_eval::Args),
    /// Serve a Magma model over HTTP (OpenAI chat completions, OpenVLA /act, Set-of-Mark).
    Serve(cmd::serve::Args),
    /// Training data: convert public datasets to Magma records, run sharded resumable jobs, inspect shards.
    Data(cmd::data::Args),
    /// Agents that act: a web agent on a real Chromium, a robot episode loop, offline replay.
    Agent(cmd::agent::Args),
    /// Benchmarks: score predictions as the official code does, run a model over a benchmark file, compare runs.
    Eval(cmd::eval::Args),
    /// Fine-tune Magma (projector, LoRA, QLoRA, full) from a train.toml: metrics, checkpoints, resume, PEFT export.
    Train(cmd::train::Args),
}

/// Errors are printed as one line with their causes (`error: … : …`) and exit status 1; a
/// backtrace is not shown even when `RUST_BACKTRACE` is set, since these are user-facing messages.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Som(a) => cmd::som::run(a),
        Command::Action(a) => cmd::action::run(a),
        Command::Prompt(a) => cmd::prompt::run(a),
        Command::Preprocess(a) => cmd::preprocess::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Parity(a) => cmd::parity::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Tom(a) => cmd::tom::run(a),
        Command::TomEval(a) => cmd::tom_eval::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Data(a) => cmd::data::run(a),
        Command::Agent(a) => cmd::agent::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Train(a) => cmd::train::run(a),
    }
}
