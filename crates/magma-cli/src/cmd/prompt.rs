//! `magma prompt`: show exactly what the model would receive for a prompt and images — the
//! rendered chat template, token ids, crop grids and image-token counts.

use std::path::PathBuf;

use anyhow::Context;
use magma_processor::{Processor, DEFAULT_MAX_PIXELS};
use serde_json::json;

use crate::embedded::{model_dir_or_embedded, MODEL_HELP};

/// Render the chat prompt, tokenize it and preprocess the images, without running the model.
///
/// Example: magma prompt --prompt "<image>\nWhat is in this image?" --image photo.jpg --json
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, value_name = "DIR", help = MODEL_HELP)]
    pub model: Option<PathBuf>,

    /// The user's text. `<image>` marks where each image goes; without any, one `<image>` line
    /// per image is put in front.
    #[arg(long)]
    pub prompt: String,

    /// An image file (PNG, JPEG or GIF); repeat for several images, in prompt order.
    #[arg(long = "image", value_name = "PATH")]
    pub images: Vec<PathBuf>,

    /// System prompt [default: "You are agent that can see, talk and act."].
    #[arg(long)]
    pub system: Option<String>,

    /// Largest accepted image, in pixels (checked before decoding).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,

    /// Print one JSON object (prompt, input_ids, attention_mask, image_grids, image_tokens,
    /// merged_len, pixel_values_shape) instead of a readable summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = model_dir_or_embedded(args.model)?;
    let processor = Processor::from_dir(&model)
        .with_context(|| format!("loading the processor of {}", model.display()))?
        .with_pixel_limit(args.max_pixels);
    let images = args
        .images
        .iter()
        .map(|path| processor.load_image(path))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = processor.process(&args.prompt, &images, args.system.as_deref())?;

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
