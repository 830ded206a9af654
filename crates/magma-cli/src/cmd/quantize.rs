//! `magma quantize`: write a reusable quantized copy of a model folder (`model.gguf` + the
//! config, tokenizer and processor files), converting one tensor at a time.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use magma_model::quant::{quantize_checkpoint, QuantFormat};
use std::path::PathBuf;

/// Quantize a model's linear layers (decoder, projector, vision MLPs) into a GGUF file.
///
/// Example: `magma quantize --model microsoft/Magma-8B --format q4k --out Magma-8B-q4k`,
/// then `magma generate --model Magma-8B-q4k --prompt ...`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model folder with safetensors weights, or a hub id found in the local Hugging Face cache.
    #[arg(long)]
    pub model: String,
    /// Block format of the linear weights: q4k, q5k, q6k or q8_0. Layers whose input size is
    /// not a multiple of the block size fall back (q4k -> q5_0, q5k -> q5_1, q6k -> q8_0) or
    /// stay dense; the fallbacks are listed at the end.
    #[arg(long, default_value = "q4k")]
    pub format: String,
    /// Output folder (created; gets model.gguf and copies of the non-weight files).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let format: QuantFormat = args.format.parse()?;
    let src = magma_model::hub::resolve_model(&args.model)?;
    if src.canonicalize().ok() == args.out.canonicalize().ok() {
        anyhow::bail!(
            "--out {} is the model folder itself; choose another folder",
            args.out.display()
        );
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = quantize_checkpoint(&src, &args.out, format, &mut |p| {
        bar.set_length(p.total_bytes);
        bar.set_position(p.done_bytes);
        bar.set_message(p.tensor.to_string());
    })
    .with_context(|| format!("quantizing {} to {}", src.display(), args.out.display()))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "wrote {} ({}): {} of {} tensors quantized, {:.2} GiB -> {:.2} GiB",
        report.output.display(),
        report.format,
        report.quantized,
        report.tensors,
        gib(report.source_bytes),
        gib(report.output_bytes)
    );
    println!("copied: {}", report.copied_files.join(", "));
    for fallback in &report.fallbacks {
        println!("fallback: {fallback}");
    }
    Ok(())
}
