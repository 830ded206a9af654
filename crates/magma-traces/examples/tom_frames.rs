//! Runs the Trace-of-Mark pipeline on a folder of numbered frames and writes every output
//! (the library path of `magma tom`, without the CLI's other dependencies).
//!
//! `cargo run -p magma-traces --example tom_frames -- FRAME_DIR OUT_DIR [START] [FRAMES] [TASK]`

use std::path::PathBuf;

use magma_traces::frames::{load_clip, FrameWindow, Resize};
use magma_traces::lk::LucasKanade;
use magma_traces::output::{conversation_record, write_outputs};
use magma_traces::pipeline::{run, TomConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: tom_frames FRAME_DIR OUT_DIR [START] [FRAMES] [TASK]".into());
    }
    let window = FrameWindow {
        start: args.get(3).map_or(Ok(0), |s| s.parse())?,
        frames: args.get(4).map(|s| s.parse()).transpose()?,
        stride: 1,
    };
    let task = args
        .get(5)
        .cloned()
        .unwrap_or_else(|| "the task shown in the video".into());
    let clip = load_clip(
        &PathBuf::from(&args[1]),
        &window,
        Resize::Height(512),
        &mut |_, _| {},
    )?;
    let config = TomConfig {
        task,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let result = run(&clip.frames, &LucasKanade::default(), &config, &|_| {})?;
    eprintln!(
        "{} frames tracked in {:.2} s",
        clip.frames.len(),
        started.elapsed().as_secs_f64()
    );
    let record = conversation_record(&result, "clip", false);
    let extra = serde_json::json!({ "source_frames": clip.source_indices });
    write_outputs(
        &PathBuf::from(&args[2]),
        &clip.frames,
        &result,
        &record,
        extra,
    )?;
    println!("{}\n{}", result.question, result.answer);
    Ok(())
}
