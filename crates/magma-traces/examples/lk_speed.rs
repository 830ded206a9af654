//! Speed and accuracy of the Lucas–Kanade tracker on one synthetic scene, one thread, and an
//! export of its frames and ground truth for `benches/opencv_lk.py` (the OpenCV baseline).
//!
//! `cargo run --release -p magma-traces --example lk_speed -- OUT_DIR [pan|objects|combined]`
//! (or `cargo run --config 'profile.dev.package.magma-traces.opt-level=3' ...`: the
//! `CARGO_PROFILE_DEV_PACKAGE_...` environment form does not reach a hyphenated package name,
//! and at the dev profile's opt-level 1 the window loops are not vectorised)

use std::path::PathBuf;
use std::time::Instant;

use magma_traces::lk::LucasKanade;
use magma_traces::metrics::tap_vid;
use magma_traces::synthetic::{Scene, SceneKind};
use magma_traces::tracker::{grid_points, Tracker};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(args.get(1).ok_or("usage: lk_speed OUT_DIR [SCENE]")?);
    let kind = match args.get(2).map(String::as_str) {
        Some("objects") => SceneKind::Objects,
        Some("combined") => SceneKind::Combined,
        _ => SceneKind::Pan,
    };
    let (w, h, frames) = (512, 384, 24);
    let scene = Scene::generate(kind, w, h, frames, 0);
    let queries = grid_points(15, w, h);
    let truth = scene.ground_truth(&queries);
    std::fs::create_dir_all(&out)?;
    for (t, f) in scene.frames.iter().enumerate() {
        f.save(out.join(format!("frame_{t:04}.png")))?;
    }
    let gt = serde_json::json!({
        "width": w, "height": h, "queries": queries,
        "points": truth.tracks.points, "visible": truth.tracks.visible, "moving": truth.moving,
    });
    std::fs::write(out.join("ground_truth.json"), serde_json::to_vec(&gt)?)?;
    let lk = LucasKanade::default();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut best = f64::INFINITY;
    let mut tracks = None;
    for _ in 0..3 {
        let started = Instant::now();
        let t = pool.install(|| lk.track(&scene.frames, &queries, &|_| {}))?;
        best = best.min(started.elapsed().as_secs_f64());
        tracks = Some(t);
    }
    let tracks = tracks.ok_or("no run")?;
    // Forward only (no backward pass, no visibility), as OpenCV's single-call baseline.
    let mut forward_best = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        let mut points = queries.clone();
        let mut previous = lk.pyramid(&scene.frames[0]);
        for frame in &scene.frames[1..] {
            let next = lk.pyramid(frame);
            for p in points.iter_mut() {
                if let Some(q) = lk.track_point(&previous, &next, *p) {
                    *p = q;
                }
            }
            previous = next;
        }
        forward_best = forward_best.min(started.elapsed().as_secs_f64());
    }
    let m = tap_vid(&tracks, &truth.tracks, w, h);
    let pairs = (frames - 1) as f64;
    let per_point = |secs: f64| 1e6 * secs / pairs / queries.len() as f64;
    println!(
        "{}: {:.2} ms/frame, {:.2} us/point (forward+backward, pyramids included, 1 thread); forward only {:.2} us/point; delta_avg {:.3} OA {:.3} AJ {:.3}",
        kind.name(),
        1000.0 * best / pairs,
        per_point(best),
        per_point(forward_best),
        m.position_accuracy,
        m.occlusion_accuracy,
        m.average_jaccard
    );
    Ok(())
}
