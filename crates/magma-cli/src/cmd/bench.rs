//! `magma bench`: timing benchmarks, one sub-mode each (`model` now; more can be added).

use super::bench_preset::{self, Preset};
use super::generate::{spinner, DtypeArg};
use anyhow::Context;
use candle_core::Tensor;
use magma_model::{GenerationParams, MagmaConfig, MagmaModel, TrunkGeometry, Weights};
use magma_processor::Processor;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Measure how fast things run (timings only, no accuracy checks).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub mode: Mode,
}

/// What to benchmark.
#[derive(clap::Subcommand, Debug)]
pub enum Mode {
    /// The full model path on a config with random weights built in memory: preprocessing,
    /// vision tower + projector, prefill of the whole prompt, and greedy decoding.
    Model(ModelArgs),
}

/// Options of `magma bench model`.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Folder with config.json, tokenizer/preprocessor files, bench_notes.json (ConvNeXt geometry
    /// and prompt) and bench_image_1280x720.png.
    #[arg(long, default_value = "tests/fixtures/bench-small")]
    pub config_dir: PathBuf,
    /// Timed rounds after one warm-up round; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Tokens to decode per round (decode speed counts all but the first).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// Weight and activation dtype (default: f32 on CPU, bf16 on a GPU).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Device: `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Quantize the linear layers while building (q4k, q5k, q6k, q8_0; f32 activations).
    #[arg(long, value_parser = bench_preset::parse_format)]
    pub quantize: Option<magma_model::quant::QuantFormat>,
    /// Build a full-size architecture instead of --config-dir's (whose tokenizer, processor and
    /// prompt are still used; the image is cut to one crop). Needs --random-weights.
    #[arg(long, value_enum, requires = "random_weights")]
    pub preset: Option<Preset>,
    /// Random weights, generated and quantized one tensor at a time (this bench never loads a
    /// checkpoint; the flag makes that explicit for --preset).
    #[arg(long)]
    pub random_weights: bool,
    /// Untimed rounds before the timed ones.
    #[arg(long, default_value_t = 1)]
    pub warmup_rounds: usize,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Median timings of `magma bench model`.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    pub preprocess_ms: f64,
    pub vision_ms: f64,
    pub prefill_ms: f64,
    pub decode_tok_s: f64,
    pub merged_tokens: usize,
    pub rounds: usize,
    pub dtype: String,
    pub threads: usize,
    /// Quantization of the linear layers, if any.
    pub quantize: Option<String>,
    /// Full-size preset, if any.
    pub preset: Option<String>,
    /// Time to build (and quantize) the random-weight model.
    pub build_ms: f64,
    /// Peak resident memory of the process (VmHWM).
    pub peak_rss_mb: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.mode {
        Mode::Model(a) => run_model(a),
    }
}

struct BenchNotes {
    geometry: TrunkGeometry,
    system: String,
    user: String,
}

fn read_notes(dir: &Path) -> anyhow::Result<BenchNotes> {
    let path = dir.join("bench_notes.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let notes: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let list = |key: &str| -> anyhow::Result<Vec<usize>> {
        notes["trunk_geometry"][key]
            .as_array()
            .with_context(|| format!("{}: trunk_geometry.{key} missing", path.display()))?
            .iter()
            .map(|v| v.as_u64().map(|v| v as usize).context("not an integer"))
            .collect()
    };
    let text_of = |key: &str| -> anyhow::Result<String> {
        Ok(notes["prompt"][key]
            .as_str()
            .with_context(|| format!("{}: prompt.{key} missing", path.display()))?
            .to_string())
    };
    Ok(BenchNotes {
        geometry: TrunkGeometry {
            depths: list("depths")?,
            dims: list("dims")?,
        },
        system: text_of("system")?,
        user: text_of("user")?,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn run_model(args: ModelArgs) -> anyhow::Result<()> {
    let dir = &args.config_dir;
    let notes = read_notes(dir)?;
    let config = MagmaConfig::from_file(&dir.join("config.json"))?;
    let (config, geometry) = match args.preset {
        Some(preset) => preset.apply(config),
        None => (config, notes.geometry),
    };
    let processor = Processor::from_dir(dir)
        .with_context(|| format!("processor files in {}", dir.display()))?;
    let mut image = processor.load_image(&dir.join("bench_image_1280x720.png"))?;
    if args.preset.is_some() {
        let size = config.vision.img_size.unwrap_or(512) as u32;
        image = bench_preset::one_crop(&image, size);
    }
    let device = magma_model::device::parse_device(&args.device)?;
    let dtype = DtypeArg::or_device_default(args.dtype, &device);
    if args.quantize.is_some() && dtype != candle_core::DType::F32 {
        anyhow::bail!("--quantize runs with f32 activations: drop --dtype or pass --dtype f32");
    }
    let building = spinner("building a random-weight model");
    let built = Instant::now();
    let weights = Weights::random(dtype, &device).with_quantization(args.quantize);
    let model = MagmaModel::from_weights(config, &weights, geometry)?;
    let build_ms = built.elapsed().as_secs_f64() * 1e3;
    building.finish_and_clear();

    let rounds = args.rounds.max(1);
    let progress = indicatif::ProgressBar::new((rounds + args.warmup_rounds) as u64);
    progress.set_message("bench rounds (first is warm-up)");
    let (mut pre, mut vis, mut prefill, mut decode) = (vec![], vec![], vec![], vec![]);
    let mut merged_tokens = 0;
    for round in 0..rounds + args.warmup_rounds {
        let t0 = Instant::now();
        let inputs = processor.process(
            &notes.user,
            std::slice::from_ref(&image),
            Some(&notes.system),
        )?;
        let pixels = Tensor::from_slice(
            &inputs.pixel_values.data,
            inputs.pixel_values.shape.to_vec(),
            &device,
        )?;
        let t1 = Instant::now();
        let features = model.image_features(&magma_model::ImageBatch {
            pixel_values: pixels,
            grids: inputs.image_grids.clone(),
        })?;
        let t2 = Instant::now();
        let embeds = model.merge(&inputs.input_ids, &features)?;
        merged_tokens = embeds.dim(1)?;
        let outcome = magma_model::generation::decode_loop(
            &model,
            &embeds,
            &inputs.input_ids,
            &GenerationParams {
                max_new_tokens: args.new_tokens,
                ..Default::default()
            },
            &[],
            &mut |ids| Ok(format!("{} tokens", ids.len())),
            &mut |_, _| std::ops::ControlFlow::Continue(()),
        )?;
        progress.inc(1);
        if round < args.warmup_rounds {
            continue; // warm-up
        }
        pre.push((t1 - t0).as_secs_f64() * 1e3);
        vis.push((t2 - t1).as_secs_f64() * 1e3);
        prefill.push(outcome.prefill_ms);
        decode.push(outcome.decode_tokens_per_s);
    }
    progress.finish_and_clear();
    let report = ModelReport {
        preprocess_ms: median(pre),
        vision_ms: median(vis),
        prefill_ms: median(prefill),
        decode_tok_s: median(decode),
        merged_tokens,
        rounds,
        dtype: format!("{dtype:?}"),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        quantize: args.quantize.map(|q| q.name().to_string()),
        preset: args.preset.map(|p| p.name().to_string()),
        build_ms,
        peak_rss_mb: bench_preset::peak_rss_mb(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "magma bench model ({}, {} rounds, {} threads)",
            report.dtype, report.rounds, report.threads
        );
        println!("  preprocess       {:>9.1} ms", report.preprocess_ms);
        println!("  vision+projector {:>9.1} ms", report.vision_ms);
        println!(
            "  prefill          {:>9.1} ms ({} tokens)",
            report.prefill_ms, report.merged_tokens
        );
        println!("  decode           {:>9.1} tok/s", report.decode_tok_s);
        println!(
            "  build            {:>9.1} ms (quantize: {})",
            report.build_ms,
            report.quantize.as_deref().unwrap_or("none")
        );
        if let Some(rss) = report.peak_rss_mb {
            println!("  peak RSS         {rss:>9.0} MiB");
        }
    }
    Ok(())
}
