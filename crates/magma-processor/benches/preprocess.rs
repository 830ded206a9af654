//! Image preprocessing speed on the bench-small 1280x720 image with Magma-8B settings
//! (512-px crops, 4 crops -> 2x2 grid, 1024x1024 resize). Compare with the PyTorch reference's
//! `preprocess_ms` (`python cpu_reference.py`), which also starts from decoded RGB pixels.
//!
//! `cargo bench -p magma-processor --bench preprocess`

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use magma_processor::{load_rgb_image, ImageProcessor, DEFAULT_MAX_PIXELS};

fn bench_preprocess(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bench-small");
    let image = load_rgb_image(&dir.join("bench_image_1280x720.png"), DEFAULT_MAX_PIXELS)
        .expect("bench image");
    let processor = ImageProcessor::from_file(&dir.join("preprocessor_config.json"))
        .expect("bench-small preprocessor_config.json");
    assert_eq!(processor.best_grid(image.width(), image.height()), (2, 2));

    let mut group = c.benchmark_group("preprocess");
    group.sample_size(50);
    group.bench_function("1280x720_to_2x2_crops_of_512", |b| {
        b.iter(|| {
            processor
                .preprocess(std::hint::black_box(&image))
                .expect("preprocess")
        })
    });
    group.bench_function("decode_png_and_preprocess", |b| {
        let bytes = std::fs::read(dir.join("bench_image_1280x720.png")).expect("bench image");
        b.iter(|| {
            let img = magma_processor::decode_rgb_image(&bytes, DEFAULT_MAX_PIXELS, "bench")
                .expect("decode");
            processor.preprocess(&img).expect("preprocess")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_preprocess);
criterion_main!(benches);
