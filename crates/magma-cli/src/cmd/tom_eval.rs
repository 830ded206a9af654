//! `magma tom-eval`: the synthetic Trace-of-Mark benchmark — TAP-Vid tracking metrics,
//! camera-motion homography error and the moving-point split on scenes with exact ground truth.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::ProgressBar;
use magma_traces::eval::{evaluate_scene, markdown_table, EvalConfig};
use magma_traces::lk::LucasKanade;
use magma_traces::output::write_atomic;
use magma_traces::select::DataKind;
use magma_traces::synthetic::SceneKind;
use serde_json::json;

/// Synthetic benchmark of the ToM pipeline: textured scenes under known camera homographies
/// (pan, zoom, roll) with moving, occluding objects.
///
/// Reports TAP-Vid δ_avg (position accuracy over 1/2/4/8/16 px on a 256 raster), occlusion
/// accuracy and average Jaccard, the camera homography error, and precision/recall of the
/// moving-point split.
///
/// Examples:
///   magma tom-eval
///   magma tom-eval --width 256 --height 192 --frames 16 --json
///   magma tom-eval --scene pan --export /tmp/pan   # frames + ground truth for other trackers
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Frame width in pixels.
    #[arg(long, default_value_t = 512)]
    pub width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 384)]
    pub height: u32,
    /// Frames per scene.
    #[arg(long, default_value_t = 24)]
    pub frames: usize,
    /// Query grid side (S×S points).
    #[arg(long, default_value_t = 15)]
    pub grid: usize,
    /// Scene seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only these scenes (static, pan, zoom, rotate, objects, pan-objects, combined).
    #[arg(long = "scene", value_name = "NAME", value_parser = parse_scene)]
    pub scenes: Vec<SceneKind>,
    /// Also write each scene's frames (PNG) and ground truth (JSON) under DIR/<scene>/.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Print the reports as JSON instead of a Markdown table.
    #[arg(long)]
    pub json: bool,
}

/// A scene name of `--scene`.
fn parse_scene(name: &str) -> Result<SceneKind, String> {
    SceneKind::from_name(name).ok_or_else(|| {
        let names: Vec<_> = SceneKind::ALL.iter().map(|k| k.name()).collect();
        format!(
            "unknown scene `{name}`; expected one of {}",
            names.join(", ")
        )
    })
}

fn export_scene(dir: &std::path::Path, kind: SceneKind, config: &EvalConfig) -> anyhow::Result<()> {
    let (scene, queries, truth) = config.render(kind);
    let folder = dir.join(kind.name());
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    for (t, frame) in scene.frames.iter().enumerate() {
        let path = folder.join(format!("frame_{t:04}.png"));
        frame
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let gt = json!({
        "width": config.width,
        "height": config.height,
        "queries": queries,
        "points": truth.tracks.points,
        "visible": truth.tracks.visible,
        "moving": truth.moving,
    });
    write_atomic(&folder.join("ground_truth.json"), &serde_json::to_vec(&gt)?)?;
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = EvalConfig {
        width: args.width,
        height: args.height,
        frames: args.frames,
        grid_size: args.grid,
        seed: args.seed,
        kind: DataKind::Video,
    };
    let scenes: Vec<SceneKind> = if args.scenes.is_empty() {
        SceneKind::ALL.to_vec()
    } else {
        args.scenes.clone()
    };
    let progress = ProgressBar::new(scenes.len() as u64);
    let tracker = LucasKanade::default();
    let mut reports = Vec::new();
    for &kind in &scenes {
        progress.set_message(kind.name());
        if let Some(dir) = &args.export {
            export_scene(dir, kind, &config)?;
        }
        reports.push(
            evaluate_scene(kind, &config, &tracker)
                .with_context(|| format!("scene {}", kind.name()))?,
        );
        progress.inc(1);
    }
    progress.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"config": config, "scenes": reports}))?
        );
    } else {
        println!(
            "{} frames of {}x{}, {}x{} grid, seed {} (metrics x100; H error: mean px over the grid)\n",
            config.frames, config.width, config.height, config.grid_size, config.grid_size, config.seed
        );
        print!("{}", markdown_table(&reports));
    }
    Ok(())
}
