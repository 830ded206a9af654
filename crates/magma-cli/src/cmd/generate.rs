//! `magma generate`: answer a prompt (with optional images) with a Magma model.

use anyhow::Context;
use candle_core::{DType, Device};
use indicatif::{ProgressBar, ProgressStyle};
use magma_model::{GenerationParams, MagmaPipeline};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use crate::embedded::ModelSource;
use std::time::Duration;

/// Generate text from a prompt and images.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub source: ModelSource,
    /// User message; `<image>` marks where each image goes (default: all images first).
    #[arg(long)]
    pub prompt: String,
    /// Image file (PNG/JPEG/GIF); repeat for several images, in prompt order.
    #[arg(long = "image", value_name = "PATH")]
    pub images: Vec<PathBuf>,
    /// System message (default: Magma's "You are agent that can see, talk and act.").
    #[arg(long)]
    pub system: Option<String>,
    /// Maximum number of generated tokens.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Keep only the K most likely tokens when sampling.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampler (same seed and inputs, same output).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Repetition penalty (1.0 = off; >1 discourages repeating prompt or output tokens).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
    /// Extra stop string; repeat for several. Generation also stops at the model's eos ids.
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Compute dtype (default: f32 on CPU, where it is fastest; bf16 on a GPU). bf16/f16 halve memory.
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Device: `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Quantize the linear layers while loading (q4k, q5k, q6k, q8_0; f32 activations). Not
    /// needed for a folder written by `magma quantize`, which loads quantized as it is.
    #[arg(long, value_parser = super::bench_preset::parse_format)]
    pub quantize: Option<magma_model::quant::QuantFormat>,
    /// A PEFT LoRA adapter folder (`adapter_config.json` + `adapter_model.safetensors`, e.g.
    /// `magma train`'s `out/adapter/` or one saved by PEFT), merged into the weights at load.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Print one JSON object (prompt_ids, generated_ids, text, finish_reason, timings) instead
    /// of streaming text.
    #[arg(long)]
    pub json: bool,
}

/// Weight and activation dtype.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeArg {
    F32,
    Bf16,
    F16,
}

impl DtypeArg {
    /// The chosen dtype, or the device's default ([`magma_model::device::default_dtype`]).
    pub fn or_device_default(arg: Option<Self>, device: &Device) -> DType {
        arg.map_or_else(|| magma_model::device::default_dtype(device), Self::dtype)
    }

    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }
}

/// A spinner on stderr for slow phases.
pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = args.source.dir()?;
    let device = magma_model::device::parse_device(&args.device)?;
    let loading = spinner(&format!("loading {}", dir.display()));
    let dtype = DtypeArg::or_device_default(args.dtype, &device);
    let pipeline = match (&args.adapter, args.quantize) {
        (Some(adapter_dir), quantize) => {
            let adapter = magma_model::adapter::LoraAdapter::load(adapter_dir)
                .with_context(|| format!("loading the adapter {}", adapter_dir.display()))?;
            magma_model::adapter::load_adapted_pipeline(&dir, &adapter, dtype, &device, quantize)
        }
        (None, Some(format)) => magma_model::quant::load_quantized_pipeline(&dir, format, &device),
        (None, None) => MagmaPipeline::load(&dir, dtype, &device),
    }
    .with_context(|| format!("loading the model from {}", dir.display()))?;
    loading.finish_and_clear();
    let images = args
        .images
        .iter()
        .map(|path| {
            pipeline
                .processor()
                .load_image(path)
                .with_context(|| format!("reading image {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let params = GenerationParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        repetition_penalty: args.repetition_penalty,
        stop_token_ids: Vec::new(),
        stop_strings: args.stop.clone(),
    };
    let stream = !args.json;
    let mut stdout = std::io::stdout();
    let output = pipeline.generate(
        &args.prompt,
        &images,
        args.system.as_deref(),
        &params,
        &mut |_, delta| {
            if stream {
                // a closed stdout (e.g. `| head`) cancels generation instead of failing
                if write!(stdout, "{delta}")
                    .and_then(|_| stdout.flush())
                    .is_err()
                {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        println!();
        let t = &output.timings;
        eprintln!(
            "[{} tokens, finish: {}; preprocess {:.0} ms, vision {:.0} ms, prefill {:.0} ms, decode {:.1} tok/s]",
            output.generated_ids.len(),
            output.finish_reason.as_str(),
            t.preprocess_ms,
            t.vision_ms,
            t.prefill_ms,
            t.decode_tokens_per_s
        );
    }
    Ok(())
}
