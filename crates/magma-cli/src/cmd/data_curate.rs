//! `magma data shots` (and the other video-curation steps of `magma data`).

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use magma_data::curate::shots::{DetectorKind, Downscale, FilterMode, ShotConfig, Weights};
use magma_traces::mp4::FrameRate;

/// Split a video into shots as PySceneDetect does (ContentDetector / AdaptiveDetector).
///
/// Reads MP4/H.264 in the default build (other formats with the `video` feature) or a folder
/// of numbered frames. Prints the shots as `[start, end)` frame ranges with timecodes at the
/// track's exact frame rate; a video without a cut has no shots (PySceneDetect's behaviour).
/// Defaults are PySceneDetect 0.7's; `--psd-0.6` switches to 0.6's downscale rule.
///
/// Examples:
///   magma data shots clip.mp4
///   magma data shots clip.mp4 --detector adaptive --threshold 2.5 --json
///   magma data shots clip.mp4 --stats clip.stats.csv --min-scene-len 8
#[derive(clap::Args, Debug)]
pub struct ShotsArgs {
    /// An MP4 file, another video (`video` feature), or a folder of numbered frame images.
    pub video: PathBuf,
    /// `content`: a fixed threshold on the HSV frame difference; `adaptive`: the difference
    /// relative to the neighbouring frames.
    #[arg(long, value_enum, default_value = "content")]
    pub detector: DetectorArg,
    /// Content: cut threshold on `content_val` [27]. Adaptive: ratio to the window mean [3].
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,
    /// Minimum shot length in frames.
    #[arg(long, default_value_t = 15, value_name = "N")]
    pub min_scene_len: usize,
    /// Score on brightness only (weights 0, 0, 1, 0).
    #[arg(long)]
    pub luma_only: bool,
    /// Component weights `hue,sat,lum,edges` (default 1,1,1,0).
    #[arg(long, value_name = "H,S,L,E", value_delimiter = ',', num_args = 4)]
    pub weights: Option<Vec<f64>>,
    /// Edge dilation kernel size (odd, >= 3) [from the resolution].
    #[arg(long, value_name = "K")]
    pub kernel_size: Option<usize>,
    /// How cuts closer than --min-scene-len are handled: merged (0.6.4+) or dropped.
    #[arg(long, value_enum, default_value = "merge")]
    pub filter_mode: FilterArg,
    /// Adaptive: frames on each side of a candidate cut.
    #[arg(long, default_value_t = 2, value_name = "W")]
    pub window_width: usize,
    /// Adaptive: the least content_val a cut must have.
    #[arg(long, default_value_t = 15.0, value_name = "V")]
    pub min_content_val: f64,
    /// Fixed integer downscale factor instead of the automatic one (1 = full size).
    #[arg(long, value_name = "F")]
    pub downscale: Option<u32>,
    /// PySceneDetect 0.6 downscale rule (integer factor width // 256).
    #[arg(long = "psd-0.6")]
    pub psd_06: bool,
    /// Frame rate for timecodes, e.g. 30000/1001 (needed for frame folders; overrides MP4's).
    #[arg(long, value_name = "NUM[/DEN]", value_parser = parse_rate)]
    pub fps: Option<FrameRate>,
    /// Write PySceneDetect's per-frame stats CSV here.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// Print the result as JSON (shots, cuts, frame rate; per-frame scores with --stats).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DetectorArg {
    Content,
    Adaptive,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FilterArg {
    Merge,
    Suppress,
}

fn parse_rate(s: &str) -> Result<FrameRate, String> {
    let (num, den) = s.split_once('/').unwrap_or((s, "1"));
    let num: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad frame rate {s:?}"))?;
    let den: u64 = den
        .trim()
        .parse()
        .map_err(|_| format!("bad frame rate {s:?}"))?;
    FrameRate::new(num, den).ok_or_else(|| format!("frame rate {s:?} must be positive"))
}

impl ShotsArgs {
    fn config(&self) -> anyhow::Result<ShotConfig> {
        let detector = match self.detector {
            DetectorArg::Content => DetectorKind::Content,
            DetectorArg::Adaptive => DetectorKind::Adaptive,
        };
        let mut config = ShotConfig {
            detector,
            min_scene_len: self.min_scene_len,
            kernel_size: self.kernel_size,
            filter_mode: match self.filter_mode {
                FilterArg::Merge => FilterMode::Merge,
                FilterArg::Suppress => FilterMode::Suppress,
            },
            window_width: self.window_width,
            min_content_val: self.min_content_val,
            record_stats: self.stats.is_some(),
            ..Default::default()
        };
        match (detector, self.threshold) {
            (DetectorKind::Content, Some(t)) => config.threshold = t,
            (DetectorKind::Adaptive, Some(t)) => config.adaptive_threshold = t,
            _ => {}
        }
        if let Some(w) = &self.weights {
            config.weights = Weights {
                delta_hue: w[0],
                delta_sat: w[1],
                delta_lum: w[2],
                delta_edges: w[3],
            };
        }
        if self.luma_only {
            config.weights = Weights::LUMA_ONLY;
        }
        config.downscale = match (self.downscale, self.psd_06) {
            (Some(_), true) => anyhow::bail!("--downscale and --psd-0.6 exclude each other"),
            (Some(f), false) => Downscale::Factor(f),
            (None, true) => Downscale::Auto06,
            (None, false) => Downscale::Auto07,
        };
        Ok(config)
    }
}

pub fn run_shots(args: ShotsArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} frames  {per_sec}  ETA {eta}")
            .expect("valid template"),
    );
    let shots = magma_data::curate::video::detect_shots(
        &args.video,
        &config,
        args.fps,
        &mut |done, total| {
            if let Some(t) = total {
                bar.set_length(t as u64);
            }
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    if let Some(path) = &args.stats {
        std::fs::write(path, shots.stats_csv())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&shots)?);
        return Ok(());
    }
    let rate = shots
        .frame_rate
        .map_or_else(|| "unknown".to_string(), |r| r.to_string());
    println!(
        "{}: {} frames at {rate} fps, scored at {}x{}",
        args.video.display(),
        shots.frames,
        shots.processed_size.0,
        shots.processed_size.1
    );
    if shots.scenes.is_empty() {
        println!("no cut: no shots (the whole video is one scene)");
    }
    for (i, s) in shots.scenes.iter().enumerate() {
        let time = match (&s.start_timecode, &s.end_timecode) {
            (Some(a), Some(b)) => format!("  {a} - {b}"),
            _ => String::new(),
        };
        println!(
            "shot {:>3}: frames {:>6} - {:>6} ({} frames){time}",
            i + 1,
            s.start,
            s.end,
            s.end - s.start
        );
    }
    if let Some(path) = &args.stats {
        println!("per-frame scores: {}", path.display());
    }
    Ok(())
}

/// CLIP scores of images against captions: the cosine of L2-normalised embeddings, as Magma's
/// curation filter computes them (it keeps a window when its best frame scores >= 0.25).
///
/// The model is a Hugging Face `CLIPModel` folder (config.json, model.safetensors,
/// merges.txt), e.g. openai/clip-vit-large-patch14-336; preprocessing and tokenizer are the
/// OpenAI `clip` package's.
///
/// Examples:
///   magma data clip-score --model clip-vit-large-patch14-336 --image a.jpg b.jpg --text "a dog" "a cat"
///   magma data clip-score --model DIR --image frame.png --text "chopping onions" --json
#[derive(clap::Args, Debug)]
pub struct ClipScoreArgs {
    /// Hugging Face CLIP folder.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Images to score.
    #[arg(long, num_args = 1.., required = true, value_name = "IMG")]
    pub image: Vec<PathBuf>,
    /// Captions to score them against.
    #[arg(long, num_args = 1.., required = true, value_name = "T")]
    pub text: Vec<String>,
    /// Print embeddings and the image x text cosine matrix as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_clip_score(args: ClipScoreArgs) -> anyhow::Result<()> {
    let scorer = magma_data::curate::clip::ClipScorer::load(&args.model)?;
    let images = args
        .image
        .iter()
        .map(|p| image::open(p).with_context(|| format!("reading {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
    let image_embeddings = scorer.image_embeddings(&images)?;
    let text_embeddings = scorer.text_embeddings(&texts)?;
    let cosine = magma_data::curate::clip::cosine_matrix(&image_embeddings, &text_embeddings);
    if args.json {
        let out = serde_json::json!({
            "images": args.image,
            "texts": args.text,
            "image_embeddings": image_embeddings,
            "text_embeddings": text_embeddings,
            "cosine": cosine,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for (path, row) in args.image.iter().zip(&cosine) {
        println!("{}", path.display());
        for (text, score) in args.text.iter().zip(row) {
            println!("  {score:+.4}  {text}");
        }
    }
    Ok(())
}
