//! `magma preprocess`: run Magma's image processor on one image and save the pixel values as
//! `.npy`, to compare with the Python reference or feed other tools.

use std::path::PathBuf;

use anyhow::Context;
use magma_processor::{load_rgb_image, npy, ImageProcessor, DEFAULT_MAX_PIXELS};
use serde_json::json;

use crate::embedded::{model_dir_or_embedded, MODEL_HELP};

/// Preprocess one image into Magma's crops and write them as a float32 .npy file.
///
/// Example: magma preprocess --image photo.jpg --out pixel_values.npy
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, value_name = "DIR", help = MODEL_HELP)]
    pub model: Option<PathBuf>,

    /// The image file (PNG, JPEG or GIF).
    #[arg(long, value_name = "PATH")]
    pub image: PathBuf,

    /// Output .npy file: pixel_values [crops, 3, base, base], float32, little-endian (written
    /// atomically).
    #[arg(long, value_name = "FILE.npy")]
    pub out: PathBuf,

    /// Write the stitched resized image [3, rows*base, cols*base] instead of the crops (what the
    /// `global` strategy feeds to the vision tower).
    #[arg(long)]
    pub canvas: bool,

    /// Largest accepted image, in pixels (checked before decoding).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,

    /// Print one JSON object instead of a readable summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = model_dir_or_embedded(args.model)?;
    let processor = ImageProcessor::from_file(&model.join("preprocessor_config.json"))?;
    let image = load_rgb_image(&args.image, args.max_pixels)?;
    let out = processor.preprocess(&image)?;
    let (rows, cols) = out.grid();
    let shape: Vec<usize> = if args.canvas {
        let shape = out.canvas_shape().to_vec();
        npy::write_f32(&args.out, &out.canvas(), &shape)?;
        shape
    } else {
        let shape = out.crops_shape().to_vec();
        npy::write_f32(&args.out, out.crops(), &shape)?;
        shape
    };
    let tokens = processor.num_image_tokens(rows, cols);
    let (resized_h, resized_w) = out.resized_hw();

    if args.json {
        let summary = json!({
            "image": args.image,
            "width": image.width(),
            "height": image.height(),
            "grid": [rows, cols],
            "resized_hw": [resized_h, resized_w],
            "num_image_tokens": tokens,
            "out": args.out,
            "shape": shape,
        });
        println!(
            "{}",
            serde_json::to_string(&summary).context("serialising the summary")?
        );
    } else {
        println!(
            "{} ({}x{}) -> grid {rows}x{cols} (rows x cols), resized to {resized_w}x{resized_h}, {tokens} image tokens",
            args.image.display(),
            image.width(),
            image.height(),
        );
        println!("wrote {} {:?} float32", args.out.display(), shape);
    }
    Ok(())
}
