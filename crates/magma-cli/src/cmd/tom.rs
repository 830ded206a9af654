//! `magma tom`: Trace-of-Mark on a video or a folder of frames — track an s×s point grid,
//! remove camera motion, pick marks, and write the marked first frame, the trace pictures, every
//! trace as JSON and the ToM (or SoM) conversation record.

use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use magma_traces::camera::CameraMotionRule;
use magma_traces::frames::{load_clip, FrameWindow, Resize};
use magma_traces::lk::LucasKanade;
use magma_traces::output::{conversation_record, write_outputs};
use magma_traces::pipeline::{run as run_pipeline, RecordKind, TomConfig};
use magma_traces::record::RecordOptions;
use magma_traces::select::DataKind;
use serde_json::json;

/// Trace-of-Mark from a video: track a point grid, remove camera motion, select marks and write
/// the ToM (or Set-of-Mark fallback) record.
///
/// Examples:
///   magma tom clip.mp4 --start 20 --frames 32 --task "put the cup on the shelf" --out out/
///   magma tom frames_dir/ --kind robot --size 256x256 --stride 2 --out out/ --json
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Video file (MP4, WebM, AVI, …; needs the `video` feature) or a folder of numbered frame
    /// images (.png/.jpg, ordered by the last number in their names).
    pub input: PathBuf,

    /// First frame of the window (0-based).
    #[arg(long, default_value_t = 0, value_name = "F")]
    pub start: usize,

    /// Number of frames in the window [default: every frame from --start on].
    #[arg(long, value_name = "N")]
    pub frames: Option<usize>,

    /// Use every K-th frame.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub stride: usize,

    /// Query grid side S: S×S points on the first frame (Magma: 15).
    #[arg(long, default_value_t = 15, value_name = "S")]
    pub grid: usize,

    /// What is being done in the clip (goes into the ToM question).
    #[arg(
        long,
        default_value = "the task shown in the video",
        value_name = "TEXT"
    )]
    pub task: String,

    /// Data kind: thresholds, cluster counts and question wording of human videos or robot
    /// episodes.
    #[arg(long, value_enum, default_value_t = KindArg::Video)]
    pub kind: KindArg,

    /// Seed of every random choice (cluster counts, k-means, representatives, mark ids, RANSAC).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,

    /// Resize frames to this height, keeping the aspect ratio (Alg. 2 demo: 512); 0 keeps the
    /// decoded size.
    #[arg(long, default_value_t = 512, value_name = "PX")]
    pub height: u32,

    /// Resize frames to exactly WxH (a training record's annotation size); overrides --height.
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,

    /// When to remove camera motion [default: when >80% of points move more than 1 px/frame].
    #[arg(long, value_enum, default_value_t = CameraArg::Auto)]
    pub camera: CameraArg,

    /// Ask for the marks' mean speed in the question (`mm_use_trace_speed`).
    #[arg(long)]
    pub trace_speed: bool,

    /// Wrap the traces in <trace_start>…<trace_end> (`mm_use_trace_start_end`).
    #[arg(long)]
    pub trace_start_end: bool,

    /// Serialise whole quantised traces instead of removing (almost) static points.
    #[arg(long)]
    pub keep_static_points: bool,

    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Data kind.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum KindArg {
    Video,
    Robot,
}

/// Camera-motion rule.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CameraArg {
    Auto,
    Always,
    Never,
}

fn parse_size(text: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .with_context(|| format!("--size {text:?}: expected WxH, e.g. 256x256"))?;
    let parse = |v: &str| -> anyhow::Result<u32> {
        let n: u32 = v
            .trim()
            .parse()
            .with_context(|| format!("--size {text:?}: {v:?} is not a number"))?;
        if n == 0 {
            bail!("--size {text:?}: sides must be positive");
        }
        Ok(n)
    };
    Ok((parse(w)?, parse(h)?))
}

fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>9} [{bar:30}] {pos}/{len} frames {elapsed}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let resize = match &args.size {
        Some(s) => {
            let (w, h) = parse_size(s)?;
            Resize::Exact(w, h)
        }
        None if args.height == 0 => Resize::Original,
        None => Resize::Height(args.height),
    };
    let window = FrameWindow {
        start: args.start,
        frames: args.frames,
        stride: args.stride,
    };
    let loading = bar(args.frames.unwrap_or(0) as u64, "reading");
    let clip = load_clip(&args.input, &window, resize, &mut |done, total| {
        if total as u64 != loading.length().unwrap_or(0) {
            loading.set_length(total as u64);
        }
        loading.set_position(done as u64);
    })
    .with_context(|| format!("reading frames from {}", args.input.display()))?;
    loading.finish_and_clear();

    let kind = match args.kind {
        KindArg::Video => DataKind::Video,
        KindArg::Robot => DataKind::Robot,
    };
    let config = TomConfig {
        grid_size: args.grid,
        kind,
        seed: args.seed,
        task: args.task.clone(),
        record: RecordOptions {
            remove_static_points: !args.keep_static_points,
            trace_speed: args.trace_speed,
            trace_start_end: args.trace_start_end,
        },
        camera_rule: Some(match args.camera {
            CameraArg::Auto => kind.params().camera_rule,
            CameraArg::Always => CameraMotionRule::Always,
            CameraArg::Never => CameraMotionRule::Never,
        }),
    };
    let tracking = bar(clip.frames.len() as u64, "tracking");
    let started = std::time::Instant::now();
    let result = run_pipeline(&clip.frames, &LucasKanade::default(), &config, &|t| {
        tracking.set_position(t as u64 + 1)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    tracking.finish_and_clear();

    let record_id = args
        .input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "clip".into());
    let record = conversation_record(&result, &record_id, kind == DataKind::Robot);
    let extra = json!({
        "input": args.input.display().to_string(),
        "source_frames": clip.source_indices,
        "original_size": [clip.original_size.0, clip.original_size.1],
        "grid": args.grid,
        "kind": kind,
        "seed": args.seed,
        "task": args.task,
    });
    let written = write_outputs(&args.out, &clip.frames, &result, &record, extra)
        .with_context(|| format!("writing outputs to {}", args.out.display()))?;

    let sel = &result.selection;
    let moving = sel.moving.iter().filter(|&&m| m).count();
    if args.json {
        let summary = json!({
            "record": match result.kind { RecordKind::Tom => "tom", RecordKind::Som => "som" },
            "fallback": result.fallback,
            "frames": clip.frames.len(),
            "size": [result.size.0, result.size.1],
            "points": result.tracks.num_points(),
            "valid_points": sel.valid.len(),
            "moving_points": moving,
            "camera_motion_removed": sel.stabilized.applied,
            "homography_failures": sel.stabilized.failures.len(),
            "marks": result.marks.iter().map(|m| json!({"id": m.id, "grid": [m.at.x, m.at.y]})).collect::<Vec<_>>(),
            "question": result.question,
            "answer": result.answer,
            "seconds": seconds,
            "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} frames {}x{}, {} points tracked in {:.2} s; {} visible in >50% of frames, {} moving; camera motion {}",
            clip.frames.len(),
            result.size.0,
            result.size.1,
            result.tracks.num_points(),
            seconds,
            sel.valid.len(),
            moving,
            if sel.stabilized.applied { "removed" } else { "not detected" },
        );
        match result.fallback {
            None => println!(
                "Trace-of-Mark record with {} moving marks of {}",
                result.traces.len(),
                result.marks.len()
            ),
            Some(reason) => println!(
                "Set-of-Mark record ({} marks); fallback: {reason:?}",
                result.marks.len()
            ),
        }
        println!(
            "\n--- question ---\n{}--- answer ---\n{}",
            result.question, result.answer
        );
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}
