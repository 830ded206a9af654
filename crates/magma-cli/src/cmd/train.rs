//! `magma train`: fine-tune a Magma model (projector, LoRA, QLoRA or full) from a `train.toml`.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use magma_train::config::{Preset, TrainConfig};
use magma_train::Trainer;
use std::path::PathBuf;

/// Fine-tune Magma with gradients equal to the reference's (see docs/training.md).
///
/// The run writes `OUT/metrics.jsonl` (one line per optimizer step: step, loss before the
/// update, lr, grad norm, tokens/s, labelled tokens, action accuracy), atomic checkpoints in
/// `OUT/checkpoints/`, and at the end the trained weights: a PEFT adapter in `OUT/adapter/`
/// (lora, qlora) or a Hugging Face model folder in `OUT/model/` (full, projector, or lora with
/// --merge).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run's configuration (model, mode, [data], [lora], [optim], [train]).
    #[arg(long)]
    pub config: PathBuf,
    /// Continue from the newest checkpoint in OUT/checkpoints (a killed run loses nothing and
    /// reproduces the uninterrupted loss curve).
    #[arg(long)]
    pub resume: bool,
    /// Write the first step's gradients (safetensors, checkpoint / PEFT names) to this file.
    #[arg(long)]
    pub dump_grads: Option<PathBuf>,
    /// A recipe applied over the config: `projector-sft` (the reference's released fine-tune:
    /// projector, lr 1e-5 cosine, 3 % warm-up, batch 16, clip 1.0) or `lora-libero` (OpenVLA's
    /// LIBERO LoRA: r 32, alpha 16, all decoder linears, lr 5e-4 constant, batch 16).
    #[arg(long)]
    pub preset: Option<String>,
    /// LoRA modes: also write the adapter merged into the base as a full model in OUT/model/.
    #[arg(long)]
    pub merge: bool,
    /// Override train.steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Print one JSON object per step on stdout (and a summary at the end) instead of a bar.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = TrainConfig::from_file(&args.config)?;
    if let Some(preset) = &args.preset {
        config.apply_preset(preset.parse::<Preset>()?);
    }
    if let Some(steps) = args.steps {
        config.train.steps = steps;
    }
    config.validate()?;
    let model_dir = crate::embedded::ModelSource {
        model: Some(config.model.clone()),
        offline: false,
    }
    .dir()?;
    let device = magma_model::device::parse_device(&config.train.device)?;
    let mut trainer = Trainer::new(config.clone(), &model_dir, device)
        .with_context(|| format!("setting up the run of {}", args.config.display()))?;
    trainer.dump_grads = args.dump_grads.clone();
    for (item, warning) in &trainer.train_data().warnings {
        eprintln!("warning: {item}: {warning}");
    }
    let counts = trainer.model.trainable_counts();
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    if !args.json {
        eprintln!(
            "mode {} · {} samples · {} steps · trainable parameters {total}:",
            trainer.config.mode,
            trainer.train_data().examples.len(),
            trainer.total_steps()
        );
        for (group, n) in &counts {
            eprintln!("  {group:<40} {n:>12}");
        }
    }
    if args.resume {
        match trainer.resume()? {
            Some(step) => eprintln!("resumed from step {step}"),
            None => eprintln!(
                "no checkpoint in {}: starting fresh",
                config.train.out.display()
            ),
        }
    } else if config.train.out.join("checkpoints/latest").exists() {
        anyhow::bail!(
            "{} already holds a run; pass --resume to continue it or choose another train.out",
            config.train.out.display()
        );
    }
    let bar = (!args.json).then(|| {
        let bar = ProgressBar::new(trainer.total_steps() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps · {msg} · {elapsed_precise} · ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(trainer.step_count() as u64);
        bar
    });
    let json = args.json;
    trainer.run(&mut |record, _total| {
        if json {
            println!("{}", serde_json::to_string(record).unwrap_or_default());
        }
        if let Some(bar) = &bar {
            bar.set_message(format!(
                "loss {:.4} · lr {:.2e} · {:.0} tok/s",
                record.loss, record.lr, record.tokens_per_s
            ));
            bar.set_position(record.step as u64);
        }
    })?;
    if let Some(bar) = &bar {
        bar.finish();
    }
    let out = &config.train.out;
    let mut written = Vec::new();
    if let Some(plan) = trainer.lora_plan() {
        let dir = out.join("adapter");
        magma_train::export::write_adapter(&trainer.model, plan, &config.model, &dir)?;
        written.push(dir);
    }
    if trainer.lora_plan().is_none() || args.merge {
        let dir = out.join("model");
        magma_train::export::write_model(&trainer.model, &dir, args.merge)?;
        written.push(dir);
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "steps": trainer.step_count(), "written": written })
        );
    } else {
        for dir in &written {
            eprintln!("wrote {}", dir.display());
        }
    }
    Ok(())
}
