//! `magma eval`: score benchmark predictions exactly as the official code does, and compare runs.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use magma_client::{ChatPolicy, ChatRequest, Endpoint, LocalModel};
use magma_eval::report::{self, Run};
use magma_eval::run::{Answerer, Progress, Request, RunOptions};
use magma_eval::{score_files, Benchmark};

use crate::embedded::ModelSource;

/// Evaluate Magma on its benchmarks: score prediction files with the official rules, compare runs.
///
/// Benchmarks: aitw, mind2web, screenspot, vqav2, textvqa, chartqa, pope, tapvid, simplerenv,
/// libero. File formats: docs/eval.md.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: EvalCommand,
}

#[derive(clap::Subcommand, Debug)]
enum EvalCommand {
    Score(ScoreArgs),
    Run(RunArgs),
    Report(ReportArgs),
}

/// Score a predictions file against a references file (JSON Lines, official field names).
///
/// Predictions are joined to references by each benchmark's key (not by line order). A missing
/// prediction counts as wrong and is reported; a prediction for an unknown id is reported and
/// ignored; a malformed line is an error naming its line.
///
/// The robot benchmarks (simplerenv, libero) score per-episode results given as --predictions;
/// simplerenv takes real-robot success rates as optional --references (Pearson r, MMRV).
///
/// Examples:
///   magma eval score --benchmark aitw --references aitw_test.jsonl --predictions preds.jsonl
///   magma eval score --benchmark pope --references pope.jsonl --predictions answers.jsonl --json
///   magma eval score --benchmark libero --predictions episodes.jsonl
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
struct ScoreArgs {
    /// Benchmark name (aitw, mind2web, screenspot, vqav2, textvqa, chartqa, pope, tapvid, simplerenv, libero).
    #[arg(long)]
    benchmark: Benchmark,
    /// Reference JSONL (not needed for libero; real-robot results for simplerenv).
    #[arg(long)]
    references: Option<PathBuf>,
    /// Predictions JSONL (episodes JSONL for simplerenv / libero).
    #[arg(long)]
    predictions: PathBuf,
    /// Print every metric as one JSON object (key paths: split, then metric) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Run a model over a benchmark file, write its predictions, then score them.
///
/// Builds Magma's prompt for each record (the wording of the code behind each benchmark's
/// published number; Set-of-Mark where the benchmark uses it: AITW's UI annotations, ScreenSpot's
/// `som_boxes`), asks the local runtime (--model, default: the embedded tiny test model) or an
/// OpenAI-compatible endpoint (--endpoint), parses the answers with magma-actions and appends
/// one line per record to OUT/predictions.jsonl. A rerun with the same OUT skips the records
/// already answered (a killed run resumes where it stopped). Then OUT/scores.json is written
/// and the scores are printed.
///
/// --data is a references file of `magma eval score` (docs/eval.md); images are looked up
/// under --images (default: the data file's folder).
///
/// Examples:
///   magma eval run --benchmark pope --data crates/magma-eval/samples/pope/data.jsonl --out runs/pope-tiny
///   magma eval run --benchmark screenspot --data ss.jsonl --images ss_imgs --endpoint http://127.0.0.1:8000 --out runs/ss
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
struct RunArgs {
    /// Benchmark name (aitw, mind2web, screenspot, vqav2, textvqa, chartqa, pope).
    #[arg(long)]
    benchmark: Benchmark,
    /// Benchmark records (JSONL, the references format of `magma eval score`).
    #[arg(long)]
    data: PathBuf,
    /// Folder of the images the records name (default: the data file's folder).
    #[arg(long)]
    images: Option<PathBuf>,
    #[command(flatten)]
    source: ModelSource,
    /// Device of the local runtime: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Ask an OpenAI-compatible server instead of the local runtime (base URL, e.g. http://127.0.0.1:8000).
    #[arg(long, conflicts_with = "model")]
    endpoint: Option<String>,
    /// Bearer token for --endpoint.
    #[arg(long, env = "MAGMA_API_KEY", requires = "endpoint")]
    api_key: Option<String>,
    /// `model` field sent to --endpoint.
    #[arg(long, requires = "endpoint")]
    model_name: Option<String>,
    /// Output folder: predictions.jsonl, scores.json, run.json.
    #[arg(long)]
    out: PathBuf,
    /// Only the first N records.
    #[arg(long)]
    limit: Option<usize>,
    /// Sampling seed (used with --temperature > 0).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sampling temperature; 0 = greedy (the benchmarks' setting).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Override each benchmark's token budget.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Print the scores as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A magma-client policy as the runner's [`Answerer`].
struct PolicyAnswerer {
    policy: Box<dyn ChatPolicy>,
    temperature: f64,
    seed: u64,
}

impl Answerer for PolicyAnswerer {
    fn answer(&mut self, request: &Request) -> Result<String, String> {
        let mut chat = ChatRequest::new(request.text.clone())
            .max_new_tokens(request.max_new_tokens)
            .sampling(self.temperature, self.seed);
        for image in &request.images {
            chat = chat.image(image.clone());
        }
        self.policy
            .answer(&chat)
            .map(|a| a.text)
            .map_err(|e| e.to_string())
    }
}

/// Compare runs side by side: a Markdown table per benchmark on stdout and an HTML page with a
/// bar chart per metric, with the paper's Magma-8B numbers as an anchor row.
///
/// Each argument is a run folder holding scores.json (as `magma eval run` writes it) or a JSON
/// file written by `magma eval score --json`.
///
/// Examples:
///   magma eval report runs/aitw-q4k runs/aitw-f32 --html report.html
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
struct ReportArgs {
    /// Run folders or score JSON files.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Write the HTML page here.
    #[arg(long)]
    html: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        EvalCommand::Score(a) => score(a),
        EvalCommand::Run(a) => run_benchmark(a),
        EvalCommand::Report(a) => report_runs(a),
    }
}

fn run_benchmark(args: RunArgs) -> anyhow::Result<()> {
    let (policy, described): (Box<dyn ChatPolicy>, String) = match &args.endpoint {
        Some(url) => {
            let mut endpoint = Endpoint::new(url.clone());
            if let Some(key) = &args.api_key {
                endpoint = endpoint.api_key(key.clone());
            }
            if let Some(name) = &args.model_name {
                endpoint = endpoint.model_name(name.clone());
            }
            let d = endpoint.describe();
            (Box::new(endpoint), d)
        }
        None => {
            let dir = args.source.dir()?;
            let device = magma_model::device::parse_device(&args.device)?;
            let dtype = magma_model::device::default_dtype(&device);
            let model = LocalModel::load_on(&dir, dtype, &device)
                .with_context(|| format!("loading {}", dir.display()))?;
            let d = model.describe();
            (Box::new(model), d)
        }
    };
    let mut answerer = PolicyAnswerer {
        policy,
        temperature: args.temperature,
        seed: args.seed,
    };
    let images = args
        .images
        .clone()
        .unwrap_or_else(|| magma_eval::run::default_images_dir(&args.data));
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} records, {elapsed} elapsed, ETA {eta}",
        )
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    bar.set_message(args.benchmark.to_string());
    let options = RunOptions {
        limit: args.limit,
        max_new_tokens: args.max_new_tokens,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let run_info = serde_json::json!({
        "benchmark": args.benchmark.name(),
        "data": args.data,
        "images": images,
        "model": described,
        "limit": args.limit,
        "seed": args.seed,
        "temperature": args.temperature,
        "max_new_tokens": args.max_new_tokens,
    });
    magma_eval::run::write_atomic(
        &args.out.join("run.json"),
        format!("{run_info:#}\n").as_bytes(),
    )?;
    let summary = magma_eval::run::run(
        args.benchmark,
        &args.data,
        &images,
        &args.out,
        &mut answerer,
        &options,
        &mut |p: Progress| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
        },
    )?;
    bar.finish_and_clear();
    eprintln!(
        "{}: {} records, {} answered now, {} resumed from {}, {} model errors",
        described,
        summary.total,
        summary.answered,
        summary.resumed,
        args.out.join("predictions.jsonl").display(),
        summary.failed
    );
    for warning in summary.evaluation.warnings() {
        eprintln!("warning: {warning}");
    }
    if args.json {
        print_stdout(&format!("{}\n", summary.evaluation.to_json()))
    } else {
        print_stdout(&format!("{}\n", summary.evaluation.scores.to_markdown()))
    }
}

fn score(args: ScoreArgs) -> anyhow::Result<()> {
    let eval = score_files(
        args.benchmark,
        args.references.as_deref(),
        &args.predictions,
    )?;
    for warning in eval.warnings() {
        eprintln!("warning: {warning}");
    }
    if args.json {
        print_stdout(&format!("{}\n", eval.to_json()))
    } else {
        print_stdout(&format!(
            "{} — {} references, {} predictions\n\n{}\n",
            eval.benchmark,
            eval.references,
            eval.predictions,
            eval.scores.to_markdown()
        ))
    }
}

fn report_runs(args: ReportArgs) -> anyhow::Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|p| Run::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    print_stdout(&report::markdown(&runs))?;
    if let Some(path) = args.html {
        std::fs::write(&path, report::html(&runs))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
