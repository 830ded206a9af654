//! Times the CLIP filter and the video ToM stage on the bundled fixtures, for
//! docs/curation.md: `cargo run -p magma-data --features clip --example curation_speed`.
//! Run it under `taskset -c 0` with `RAYON_NUM_THREADS=1` for one-core numbers.

#[cfg(not(feature = "clip"))]
fn main() {
    eprintln!("curation_speed needs the `clip` feature: cargo run -p magma-data --features clip --example curation_speed");
    std::process::exit(2);
}

#[cfg(feature = "clip")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::path::Path;
    use std::time::Instant;

    use magma_data::curate::clip::ClipScorer;
    use magma_data::curate::stage::VideoTomStage;
    use magma_data::stage::{CollectSink, Stage, WorkItem};

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/curate");
    let scorer = ClipScorer::load(&fixtures.join("clip"))?;
    let names = [
        "wide.png",
        "tall.png",
        "square.png",
        "grey.png",
        "alpha.png",
        "small.png",
    ];
    let base: Vec<_> = names
        .iter()
        .map(|n| image::open(fixtures.join("clip/images").join(n)))
        .collect::<Result<_, _>>()?;
    let images: Vec<_> = base.iter().cycle().take(384).cloned().collect();
    scorer.image_embeddings(&images[..8])?;
    let t = Instant::now();
    for batch in images.chunks(64) {
        scorer.image_embeddings(batch)?;
    }
    let clip_s = t.elapsed().as_secs_f64();
    println!(
        "clip tiny: {} images in {clip_s:.3} s = {:.0} images/s (preprocess + vision tower, batches of 64)",
        images.len(),
        images.len() as f64 / clip_s
    );

    let dir = std::env::temp_dir().join(format!("curation-speed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let list = dir.join("clip.json");
    let video = fixtures.join("hardcuts_24.mp4");
    let segments: Vec<_> = (0..6)
        .map(|i| serde_json::json!({"start": i as f64, "end": i as f64 + 1.0, "text": "C moves the disc"}))
        .collect();
    std::fs::write(
        &list,
        serde_json::json!({"video": video, "segments": segments}).to_string(),
    )?;
    let stage = VideoTomStage::default();
    let t = Instant::now();
    let mut sink = CollectSink::default();
    stage.process(&WorkItem::file(&list), &mut sink)?;
    let stage_s = t.elapsed().as_secs_f64();
    println!(
        "video stage: {} ToM windows (16 frames, 256 px high) in {stage_s:.3} s = {:.0} clips/minute (decode + shots + tracking + records)",
        sink.samples.len(),
        sink.samples.len() as f64 * 60.0 / stage_s
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
