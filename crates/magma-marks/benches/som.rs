//! Marking a 1920×1080 screenshot with 100 boxes (target: well under 50 ms).
//!
//! `cargo bench -p magma-marks --bench som`

use criterion::{criterion_group, criterion_main, Criterion};
use image::{Rgb, RgbImage};
use magma_marks::{mark_screenshot, CandidateBox, MarkStyle, SomOptions};

/// 100 UI-like boxes (rows of buttons, fields and links) from a fixed linear congruential sequence.
fn ui_boxes() -> Vec<CandidateBox> {
    let mut state = 0x2545_f491_u64;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    (0..100)
        .map(|i| {
            let x = 20.0 + next(1700) as f64;
            let y = 10.0 + (i as f64) * 10.5;
            let w = 30.0 + next(200) as f64;
            let h = 18.0 + next(30) as f64;
            CandidateBox::from_xyxy(x, y, (x + w).min(1920.0), (y + h).min(1080.0))
        })
        .collect()
}

fn bench_som(c: &mut Criterion) {
    let shot = RgbImage::from_fn(1920, 1080, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 200])
    });
    let boxes = ui_boxes();
    for (name, style) in [
        ("magma", MarkStyle::Magma),
        ("omniparser", MarkStyle::OmniParser),
    ] {
        let options = SomOptions {
            style,
            ..SomOptions::default()
        };
        c.bench_function(&format!("som_1920x1080_100_boxes_{name}"), |b| {
            b.iter(|| mark_screenshot(&shot, &boxes, &options).map(|s| s.marks.len()))
        });
    }
}

criterion_group!(benches, bench_som);
criterion_main!(benches);
