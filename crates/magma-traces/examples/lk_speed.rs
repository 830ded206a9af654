//! Speed and accuracy of the Lucas–Kanade tracker on one synthetic scene, one thread, and an
//! export of its frames and ground truth for `benches/opencv_lk.py` (the OpenCV baseline).
//!
//! `cargo run --release -p magma-traces --example lk_speed -- OUT_DIR [SCENE]` (SCENE: static,
//! pan, zoom, rotate, objects, pan-objects, combined; default pan). Time only release builds:
//! the dev profile keeps overflow checks and debug assertions in the window loops, which
//! costs about half the speed even at opt-level 3. `benches/lk_vs_opencv.sh` runs this
//! beside OpenCV.
//!
//! Prints one JSON object. Every timing is the best of 5 runs inside a one-thread rayon pool
//! (the tracker parallelises over points and pyramid builds with rayon; one thread turns that
//! off), per tracked point and frame pair, as wall time (`us_per_point`) and as the thread's
//! CPU time (`cpu_us_per_point`, robust to other processes on the machine):
//!
//! * `plain_forward_backward`: the loop `opencv_lk.py` runs with OpenCV (chained frame to frame,
//!   a forward and a backward track per point, 1 px forward–backward check), each frame's
//!   pyramid built once;
//! * `plain_forward`: the same without the backward track;
//! * `tracker`: [`LucasKanade`] as the pipeline uses it (forward–backward, appearance check,
//!   lost points carried with the scene and re-acquired);
//! * `pyramid_ms`: building one frame's pyramid, the fixed cost per frame inside the above.

use std::path::PathBuf;
use std::time::Instant;

use image::RgbImage;
use magma_traces::lk::LucasKanade;
use magma_traces::metrics::{tap_vid, TapVidMetrics};
use magma_traces::synthetic::{Scene, SceneKind};
use magma_traces::tracker::{grid_points, Tracker, Tracks};
use serde_json::json;

const RUNS: usize = 5;

/// Plain chained Lucas–Kanade, as `opencv_lk.py` drives OpenCV: a point lost (untrackable)
/// keeps its last position; a point that left the image stops being tracked; visible =
/// tracked, inside and (with `backward`) forward–backward consistent.
fn plain(lk: &LucasKanade, frames: &[RgbImage], queries: &[[f32; 2]], backward: bool) -> Tracks {
    let (w, h) = frames[0].dimensions();
    let mut alive = vec![true; queries.len()];
    let mut points = vec![queries.to_vec()];
    let mut visible = vec![vec![true; queries.len()]];
    let mut previous = lk.pyramid(&frames[0]);
    let inside = |q: &[f32; 2]| {
        q[0] >= 0.0 && q[1] >= 0.0 && q[0] <= w as f32 - 1.0 && q[1] <= h as f32 - 1.0
    };
    for frame in &frames[1..] {
        let next = lk.pyramid(frame);
        let last = points.last().cloned().unwrap_or_default();
        // Per point: where it went (None: not tracked) and whether it is forward–backward
        // consistent.
        // Every point is tracked, dead or alive, as OpenCV tracks the whole array it is given.
        let results: Vec<(Option<[f32; 2]>, bool)> = if backward {
            lk.track_pair(&previous, &next, &last, &vec![true; last.len()])
                .iter()
                .zip(&alive)
                .map(|(r, &a)| (r.position.filter(|_| a), r.consistent))
                .collect()
        } else {
            lk.track_forward(&previous, &next, &last)
                .into_iter()
                .zip(&alive)
                .map(|(q, &a)| (q.filter(|_| a), true))
                .collect()
        };
        let mut moved = Vec::with_capacity(last.len());
        let mut seen = Vec::with_capacity(last.len());
        for ((q, consistent), (p, a)) in results.into_iter().zip(last.iter().zip(&mut alive)) {
            let on_image = q.as_ref().is_some_and(inside);
            seen.push(q.is_some() && consistent && on_image);
            // A point that left the image stops; an untrackable one keeps its place.
            *a &= on_image || q.is_none();
            moved.push(q.unwrap_or(*p));
        }
        points.push(moved);
        visible.push(seen);
        previous = next;
    }
    Tracks { points, visible }
}

/// CPU time of the calling thread in seconds (Linux; elsewhere wall time since the first
/// call): unlike wall time it leaves out the time other processes hold the core.
fn thread_seconds() -> f64 {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Timespec {
            seconds: i64,
            nanoseconds: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, out: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut t = Timespec {
            seconds: 0,
            nanoseconds: 0,
        };
        // SAFETY: `t` is a valid timespec for the C library to fill.
        if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0 {
            return t.seconds as f64 + 1e-9 * t.nanoseconds as f64;
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Best wall time and best thread CPU time of [`RUNS`] calls of `f` (seconds), and the last
/// result.
fn best_of<T>(mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    let mut last = None;
    for _ in 0..RUNS {
        let (started, cpu_started) = (Instant::now(), thread_seconds());
        last = Some(f());
        cpu = cpu.min(thread_seconds() - cpu_started);
        wall = wall.min(started.elapsed().as_secs_f64());
    }
    (wall, cpu, last.expect("RUNS > 0"))
}

fn metrics_json(m: &TapVidMetrics) -> serde_json::Value {
    json!({
        "delta_avg": m.position_accuracy,
        "occlusion_accuracy": m.occlusion_accuracy,
        "average_jaccard": m.average_jaccard,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(args.get(1).ok_or("usage: lk_speed OUT_DIR [SCENE]")?);
    let name = args.get(2).map_or("pan", String::as_str);
    let kind = SceneKind::from_name(name).ok_or_else(|| format!("unknown scene {name}"))?;
    let (w, h, frames) = (512, 384, 24);
    let scene = Scene::generate(kind, w, h, frames, 0);
    let queries = grid_points(15, w, h);
    let truth = scene.ground_truth(&queries);
    std::fs::create_dir_all(&out)?;
    for (t, f) in scene.frames.iter().enumerate() {
        f.save(out.join(format!("frame_{t:04}.png")))?;
    }
    let gt = json!({
        "width": w, "height": h, "queries": queries,
        "points": truth.tracks.points, "visible": truth.tracks.visible, "moving": truth.moving,
    });
    std::fs::write(out.join("ground_truth.json"), serde_json::to_vec(&gt)?)?;

    let lk = LucasKanade::default();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let pairs = (frames - 1) as f64;
    let per_point = |secs: f64| 1e6 * secs / pairs / queries.len() as f64;
    let mut report = json!({
        "scene": kind.name(), "points": queries.len(), "frames": frames, "threads": 1,
    });
    for (key, backward) in [("plain_forward_backward", true), ("plain_forward", false)] {
        let (wall, cpu, tracks) =
            pool.install(|| best_of(|| plain(&lk, &scene.frames, &queries, backward)));
        let mut entry = metrics_json(&tap_vid(&tracks, &truth.tracks, w, h));
        entry["us_per_point"] = json!(per_point(wall));
        entry["cpu_us_per_point"] = json!(per_point(cpu));
        report[key] = entry;
    }
    let (wall, cpu, tracks) =
        pool.install(|| best_of(|| lk.track(&scene.frames, &queries, &|_| {})));
    let mut entry = metrics_json(&tap_vid(&tracks?, &truth.tracks, w, h));
    entry["us_per_point"] = json!(per_point(wall));
    entry["cpu_us_per_point"] = json!(per_point(cpu));
    report["tracker"] = entry;
    let (wall, cpu, _) = pool.install(|| best_of(|| lk.pyramid(&scene.frames[0])));
    report["pyramid_ms"] = json!(1e3 * wall);
    report["pyramid_cpu_ms"] = json!(1e3 * cpu);
    println!("{report}");
    Ok(())
}
