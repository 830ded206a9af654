//! `magma prompt`: show exactly what the model would receive for a prompt and images — the
//! rendered chat template, token ids, crop grids and image-token counts — or, with
//! `--conversation`, one training sample as the trainer sees it: `input_ids`, `labels` (−100
//! where no loss is taken) and the decoded text of every span that carries loss.

use std::path::{Path, PathBuf};

use anyhow::Context;
use magma_processor::training::{
    read_items, ExampleImage, TrainingExampleBuilder, DEFAULT_MAX_LENGTH,
};
use magma_processor::{Processor, DEFAULT_MAX_PIXELS};
use serde_json::json;

use crate::embedded::{model_dir_or_embedded, MODEL_HELP};

/// Render the chat prompt, tokenize it and preprocess the images, without running the model;
/// or show a training sample's ids and labels (`--conversation`).
///
/// Example: magma prompt --prompt "<image>\nWhat is in this image?" --image photo.jpg --json
///
/// Example: magma prompt --conversation train.json --item 3 --max-length 2048 --json
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompt", "conversation"])))]
pub struct Args {
    #[arg(long, value_name = "DIR", help = MODEL_HELP)]
    pub model: Option<PathBuf>,

    /// The user's text. `<image>` marks where each image goes; without any, one `<image>` line
    /// per image is put in front.
    #[arg(long)]
    pub prompt: Option<String>,

    /// A training item (Magma/LLaVA JSON: `conversations` with `from`/`value`, `image`; or a
    /// robot step with `"rlds": true`), a JSON list of items, or a JSONL file: shows the sample
    /// labelled exactly as Magma's training code does. Image paths are relative to the file's
    /// folder unless `--image` is given.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["prompt", "system"])]
    pub conversation: Option<PathBuf>,

    /// Which item of a list or JSONL `--conversation` file (0-based).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "conversation")]
    pub item: usize,

    /// `model_max_length` of training: longer samples are cut as the reference does (said in
    /// the output).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LENGTH, requires = "conversation")]
    pub max_length: usize,

    /// An image file (PNG, JPEG or GIF); repeat for several images, in prompt order.
    #[arg(long = "image", value_name = "PATH")]
    pub images: Vec<PathBuf>,

    /// System prompt [default: "You are agent that can see, talk and act."].
    #[arg(long)]
    pub system: Option<String>,

    /// Largest accepted image, in pixels (checked before decoding).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,

    /// Print one JSON object instead of a readable summary: prompt, input_ids,
    /// attention_mask, image_grids, image_tokens, merged_len, pixel_values_shape; with
    /// `--conversation` also labels, loss_spans (start, end, text), n_labelled, warnings.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = model_dir_or_embedded(args.model.clone())?;
    if let Some(file) = args.conversation.clone() {
        return show_training_sample(&model, &file, &args);
    }
    let prompt = args.prompt.clone().unwrap_or_default();
    let processor = Processor::from_dir(&model)
        .with_context(|| format!("loading the processor of {}", model.display()))?
        .with_pixel_limit(args.max_pixels);
    let images = args
        .images
        .iter()
        .map(|path| processor.load_image(path))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = processor.process(&prompt, &images, args.system.as_deref())?;

    if args.json {
        let out = json!({
            "model": model,
            "prompt": inputs.prompt,
            "input_ids": inputs.input_ids,
            "attention_mask": inputs.attention_mask,
            "image_grids": inputs.image_grids.iter().map(|&(r, c)| [r, c]).collect::<Vec<_>>(),
            "image_tokens": inputs.image_tokens,
            "merged_len": inputs.merged_len,
            "pixel_values_shape": inputs.pixel_values.shape,
        });
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }

    println!("model: {}", model.display());
    println!("prompt:\n{}", inputs.prompt);
    println!(
        "input_ids ({}): {:?}",
        inputs.input_ids.len(),
        inputs.input_ids
    );
    for (k, (path, image)) in args.images.iter().zip(&images).enumerate() {
        let (rows, cols) = inputs.image_grids[k];
        println!(
            "image {}: {} ({}x{}) -> grid {rows}x{cols} (rows x cols), {} image tokens",
            k + 1,
            path.display(),
            image.width(),
            image.height(),
            inputs.image_tokens[k],
        );
    }
    println!("pixel_values: {:?}", inputs.pixel_values.shape);
    println!("merged length: {}", inputs.merged_len);
    Ok(())
}

/// `--conversation`: one training sample as the trainer sees it.
fn show_training_sample(model: &Path, file: &Path, args: &Args) -> anyhow::Result<()> {
    let builder = TrainingExampleBuilder::from_dir(model)
        .with_context(|| format!("loading the processor of {}", model.display()))?
        .with_max_length(args.max_length)?;
    let items = read_items(file)?;
    let item = items.get(args.item).with_context(|| {
        format!(
            "{} has {} item(s); --item {} is out of range",
            file.display(),
            items.len(),
            args.item
        )
    })?;
    let example = builder.build(item)?;
    for warning in &example.warnings {
        eprintln!("warning: item {}: {warning}", item.name());
    }
    let root = file.parent().unwrap_or(Path::new("."));
    let pixels = if args.images.is_empty() {
        builder.pixels(&example, root)?
    } else {
        // `--image` replaces the item's files, in order; a blank (text-only) slot stays blank.
        let files = example
            .images
            .iter()
            .filter(|i| !matches!(i, ExampleImage::Blank))
            .count();
        anyhow::ensure!(
            files == args.images.len(),
            "the sample has {files} image file(s) but {} --image given",
            args.images.len()
        );
        let mut given = args.images.iter();
        let loaded = example
            .images
            .iter()
            .map(|slot| match slot {
                ExampleImage::Blank => Ok(None),
                _ => {
                    let path = given.next().expect("counted above");
                    builder.processor().load_image(path).map(Some)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        builder.pixels_from_images(&example, &loaded)?
    };
    let spans = example
        .loss_spans()
        .into_iter()
        .map(|span| {
            let text = builder.decode_with_special(&example.input_ids[span.clone()])?;
            Ok((span, text))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged_len =
        example.input_ids.len() - example.images.len() + pixels.image_tokens.iter().sum::<usize>();

    if args.json {
        let out = json!({
            "model": model,
            "id": example.id,
            "kind": example.kind,
            "prompt": example.text,
            "input_ids": example.input_ids,
            "labels": example.labels,
            "attention_mask": vec![1; example.input_ids.len()],
            "n_labelled": example.n_labelled(),
            "loss_spans": spans.iter().map(|(s, text)| json!({
                "start": s.start, "end": s.end, "text": text,
            })).collect::<Vec<_>>(),
            "images": example.images,
            "image_positions": example.image_positions,
            "image_grids": pixels.image_sizes.iter().map(|&(r, c)| [r, c]).collect::<Vec<_>>(),
            "image_tokens": pixels.image_tokens,
            "merged_len": merged_len,
            "pixel_values_shape": pixels.pixel_values.shape,
            "max_length": args.max_length,
            "warnings": example.warnings,
        });
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }

    println!("model: {}", model.display());
    println!("item: {} ({:?})", item.name(), example.kind);
    println!("prompt:\n{}", example.text);
    println!(
        "input_ids ({}): {:?}",
        example.input_ids.len(),
        example.input_ids
    );
    println!("labels: {:?}", example.labels);
    println!(
        "loss on {} of {} tokens, in {} span(s):",
        example.n_labelled(),
        example.input_ids.len(),
        spans.len()
    );
    for (span, text) in &spans {
        println!("  [{}..{}) {text:?}", span.start, span.end);
    }
    for (k, image) in example.images.iter().enumerate() {
        let (rows, cols) = pixels.image_sizes[k];
        let source = match image {
            ExampleImage::File { path } => path.display().to_string(),
            ExampleImage::RobotFrame { path } => format!("{} (robot frame)", path.display()),
            ExampleImage::Blank => "black dummy image (text-only sample)".into(),
        };
        println!(
            "image {}: {source} -> grid {rows}x{cols}, {} image tokens",
            k + 1,
            pixels.image_tokens[k]
        );
    }
    println!("merged length: {merged_len}");
    Ok(())
}
