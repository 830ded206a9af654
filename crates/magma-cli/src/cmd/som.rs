//! `magma som`: numbered Set-of-Mark labels on a screenshot, so a model can answer "which number"
//! instead of "where to click".

use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;
use magma_marks::{mark_screenshot, parse_boxes, BoxFormat, MarkStyle, SomOptions, TextLayout};

/// Draw numbered marks on a screenshot from candidate element boxes.
///
/// Example: `magma som --image shot.png --boxes parsed.json --out marked.png`
/// prints `Mark 0: button "Sign in"`-style lines (the prompt-ready list) and writes the marked PNG.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Screenshot to mark (PNG, JPEG or GIF).
    #[arg(long, value_name = "SHOT.png")]
    pub image: PathBuf,
    /// Candidate boxes as JSON: a list of boxes, or an object with a `parsed_content_list` or `boxes` list.
    #[arg(long, value_name = "BOXES.json")]
    pub boxes: PathBuf,
    /// How the boxes are written.
    #[arg(long, value_enum, default_value_t = Format::Omniparser)]
    pub format: Format,
    /// Which annotator to reproduce.
    #[arg(long, value_enum, default_value_t = Style::Magma)]
    pub style: Style,
    /// Pillow text layout whose label sizes are reproduced (raqm: Pillow's default with libraqm, as in
    /// the PyPI wheels; basic: Pillow without libraqm). Label sizes decide label positions.
    #[arg(long, value_enum, default_value_t = Layout::Raqm)]
    pub text_layout: Layout,
    /// Where to write the marked PNG (written atomically: temporary file, then rename).
    #[arg(long, value_name = "MARKED.png")]
    pub out: PathBuf,
    /// Print the marks (ids, boxes in pixels and normalised, label rectangles, font size, positions)
    /// as JSON instead of the prompt list.
    #[arg(long)]
    pub json: bool,
}

/// Box formats accepted by `--format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// OmniParser's parsed-content list: `bbox` = [x1, y1, x2, y2] as ratios, `type`, `content`, `interactivity`.
    Omniparser,
    /// [x1, y1, x2, y2] in pixels (bare arrays or objects with `bbox`).
    Pixels,
    /// [x1, y1, x2, y2] as ratios of the image size.
    Ratios,
    /// The reference's (y, x, h, w) in pixels.
    Yxhw,
    /// (y, x, h, w) as ratios, truncated to pixels like the reference's `normalized_to_pixel=True`.
    YxhwRatios,
}

/// Annotators accepted by `--style`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Style {
    /// Magma's UI agent: red outlines, red labels with white 0-based numbers, 8-position label search.
    Magma,
    /// OmniParser's preview annotator: palette colours, 4-position label search with a 0.3 overlap limit.
    Omniparser,
}

/// Pillow layout engines accepted by `--text-layout`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Layout {
    /// HarfBuzz via libraqm (Pillow's default when available).
    Raqm,
    /// Pillow's basic layout.
    Basic,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let shot = magma_marks::image::open(&args.image)
        .with_context(|| format!("{}: cannot read the screenshot", args.image.display()))?
        .to_rgb8();
    let text = std::fs::read_to_string(&args.boxes)
        .with_context(|| format!("{}: cannot read the boxes file", args.boxes.display()))?;
    let format = match args.format {
        Format::Omniparser => BoxFormat::OmniParser,
        Format::Pixels => BoxFormat::Pixels,
        Format::Ratios => BoxFormat::Ratios,
        Format::Yxhw => BoxFormat::Yxhw,
        Format::YxhwRatios => BoxFormat::YxhwRatios,
    };
    let parsed = parse_boxes(
        &text,
        &args.boxes.display().to_string(),
        format,
        shot.width(),
        shot.height(),
    )?;
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    let options = SomOptions {
        style: match args.style {
            Style::Magma => MarkStyle::Magma,
            Style::Omniparser => MarkStyle::OmniParser,
        },
        layout: match args.text_layout {
            Layout::Raqm => TextLayout::Raqm,
            Layout::Basic => TextLayout::Basic,
        },
    };
    let som = mark_screenshot(&shot, &parsed.boxes, &options)?;
    som.save_png(&args.out)?;
    if args.json {
        let report = serde_json::json!({
            "image": args.image.display().to_string(),
            "out": args.out.display().to_string(),
            "width": shot.width(),
            "height": shot.height(),
            "style": options.style,
            "text_layout": options.layout,
            "marks": som.marks,
            "prompt": som.prompt_list(),
            "warnings": parsed.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", som.prompt_list());
        eprintln!("wrote {} ({} marks)", args.out.display(), som.marks.len());
    }
    Ok(())
}
