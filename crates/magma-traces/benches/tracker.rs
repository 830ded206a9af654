//! Speed of the Lucas–Kanade tracker and RANSAC (compare with `benches/opencv_lk.py`).
//!
//! `cargo bench -p magma-traces --bench tracker`

use criterion::{criterion_group, criterion_main, Criterion};
use magma_traces::homography::{find_homography_ransac, RansacConfig};
use magma_traces::lk::LucasKanade;
use magma_traces::synthetic::{Scene, SceneKind};
use magma_traces::tracker::{grid_points, Tracker};

fn tracking(c: &mut Criterion) {
    // The same frames `magma tom-eval --scene pan --export DIR` writes (512×384, 24 frames, seed 0).
    let scene = Scene::generate(SceneKind::Pan, 512, 384, 24, 0);
    let queries = grid_points(15, 512, 384);
    let lk = LucasKanade::default();
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("lk_15x15_512x384_24_frames");
    group.sample_size(10);
    group.bench_function("forward_backward_1_thread", |b| {
        b.iter(|| one_thread.install(|| lk.track(&scene.frames, &queries, &|_| {}).unwrap()))
    });
    group.bench_function("forward_backward_all_threads", |b| {
        b.iter(|| lk.track(&scene.frames, &queries, &|_| {}).unwrap())
    });
    group.bench_function("pyramid_one_frame", |b| {
        b.iter(|| lk.pyramid(&scene.frames[0]))
    });
    group.finish();
}

fn ransac(c: &mut Criterion) {
    let src: Vec<[f64; 2]> = grid_points(15, 512, 384)
        .iter()
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect();
    let dst: Vec<[f64; 2]> = src
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let q = [
                1.02 * p[0] + 0.01 * p[1] + 3.0,
                -0.01 * p[0] + 0.99 * p[1] - 2.0,
            ];
            if i % 5 == 0 {
                [q[0] + 30.0, q[1]]
            } else {
                q
            }
        })
        .collect();
    c.bench_function("ransac_225_points_20pct_outliers", |b| {
        b.iter(|| find_homography_ransac(&src, &dst, &RansacConfig::default()).unwrap())
    });
}

criterion_group!(benches, tracking, ransac);
criterion_main!(benches);
