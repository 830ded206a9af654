//! The video converter stage on the hard-cut fixture (cuts at frames 36 and 80, 24 fps):
//! windows never cross a cut, short parts and empty captions are reported, records carry the
//! frame references, the ToM conversation and provenance.

use std::path::Path;

use magma_data::curate::stage::VideoTomStage;
use magma_data::record::Media;
use magma_data::stage::{CollectSink, Stage, WorkItem};

#[test]
fn clip_lists_become_tom_records_split_at_shots() {
    let dir = tempfile::tempdir().unwrap();
    let video = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/curate/hardcuts_24.mp4");
    let list = serde_json::json!({
        "video": video,
        "segments": [
            // Frames 12..132: parts 12..36 (1 window), 36..80 (2), 80..132 (3).
            {"start": 0.5, "end": 5.5, "text": "C moves the disc"},
            {"start": 1.0, "end": 2.0, "text": "   "},
            // Frames 0..12: shorter than a window.
            {"start": 0.0, "end": 0.5, "text": "C looks"},
        ]
    });
    let path = dir.path().join("clip.json");
    std::fs::write(&path, list.to_string()).unwrap();
    let stage = VideoTomStage {
        resize: magma_traces::frames::Resize::Height(90),
        ..Default::default()
    };
    let mut sink = CollectSink::default();
    stage.process(&WorkItem::file(&path), &mut sink).unwrap();
    let starts: Vec<u64> = sink
        .samples
        .iter()
        .map(|s| match &s.record.media[0] {
            Media::VideoFrames {
                frames,
                fps_num,
                fps_den,
                ..
            } => {
                assert_eq!((*fps_num, *fps_den), (24, 1));
                assert_eq!(frames.len(), 16);
                frames[0]
            }
            other => panic!("unexpected media {other:?}"),
        })
        .collect();
    assert_eq!(starts, vec![12, 36, 52, 80, 96, 112]);
    for s in &sink.samples {
        let r = &s.record;
        assert_eq!(r.conversations.len(), 2);
        // ToM questions carry the narration; a window whose marks barely move falls back to
        // Set-of-Mark (magma-traces' rule), which asks to locate the marks instead.
        let q = &r.conversations[0].value;
        assert!(
            q.contains("The person is doing: C moves the disc")
                || q.contains("locate all the numerical marks"),
            "{q}"
        );
        assert!(!r.conversations[1].value.is_empty());
        assert!(r.provenance.locator.starts_with("segment 0 frames"));
    }
    assert_eq!(sink.skipped.len(), 1);
    assert_eq!(sink.skipped[0].reason, "empty_text");
    assert_eq!(sink.dropped.get("part_shorter_than_window"), Some(&1));
    // Deterministic ids: a rerun gives the same records.
    let mut again = CollectSink::default();
    stage.process(&WorkItem::file(&path), &mut again).unwrap();
    let ids = |s: &CollectSink| {
        s.samples
            .iter()
            .map(|x| x.record.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&sink), ids(&again));
}
