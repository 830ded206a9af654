//! Times shot detection on one video for the side-by-side comparison with PySceneDetect in
//! docs/curation.md: `cargo run --release -p magma-data --example shots_speed -- VIDEO [RUNS]`.
//! Prints frames, cuts, wall time and frames per second (best of RUNS, default 3).

use std::time::Instant;

use magma_data::curate::shots::ShotConfig;
use magma_data::curate::video::detect_shots;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let video = args.next().ok_or("usage: shots_speed VIDEO [RUNS]")?;
    let runs: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let shots = detect_shots(video.as_ref(), &ShotConfig::default(), None, &mut |_, _| {})?;
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(shots);
    }
    let shots = last.ok_or("RUNS must be at least 1")?;
    println!(
        "{{\"frames\": {}, \"cuts\": {:?}, \"best_seconds\": {best:.3}, \"frames_per_second\": {:.1}}}",
        shots.frames,
        shots.cuts,
        shots.frames as f64 / best
    );
    Ok(())
}
