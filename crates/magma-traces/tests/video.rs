//! Decoding a real clip through FFmpeg (feature `video`) and bad video inputs.
#![cfg(feature = "video")]

use std::path::PathBuf;

use magma_traces::frames::{load_clip, FrameWindow, Resize};
use magma_traces::lk::LucasKanade;
use magma_traces::pipeline::{run, RecordKind, TomConfig};
use magma_traces::select::{DataKind, Fallback};
use magma_traces::TracesError;

fn clip() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/robot_pick_up_chip_bag.mp4")
}

#[test]
fn decodes_a_window_of_a_real_clip() {
    let window = FrameWindow {
        start: 2,
        frames: Some(8),
        stride: 2,
    };
    let loaded = load_clip(&clip(), &window, Resize::Original, &mut |_, _| {}).unwrap();
    assert_eq!(loaded.original_size, (320, 256));
    assert_eq!(loaded.source_indices, vec![2, 4, 6, 8, 10, 12, 14, 16]);
    assert_eq!(loaded.frames.len(), 8);
    // A real picture, not a blank frame: plenty of distinct grey levels.
    let mut levels = std::collections::BTreeSet::new();
    for p in loaded.frames[0].pixels() {
        levels.insert(p.0[1]);
    }
    assert!(levels.len() > 100, "{} levels", levels.len());
    let all = load_clip(
        &clip(),
        &FrameWindow::default(),
        Resize::Height(128),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(all.frames.len(), 19);
    assert_eq!(all.frames[0].dimensions(), (160, 128));
    let config = TomConfig {
        kind: DataKind::Robot,
        grid_size: 10,
        task: "pick up the chip bag".into(),
        ..Default::default()
    };
    let result = run(&all.frames, &LucasKanade::default(), &config, &|_| {}).unwrap();
    assert_eq!(result.tracks.num_frames(), 19);
}

#[test]
fn a_window_past_the_end_names_the_frame_count() {
    let window = FrameWindow {
        start: 10,
        frames: Some(20),
        stride: 1,
    };
    let err = load_clip(&clip(), &window, Resize::Original, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(err, TracesError::WindowOutOfRange { available: 19, .. }),
        "{err}"
    );
}

#[test]
fn zero_frame_windows_and_zero_strides_are_rejected_before_decoding() {
    let zero_frames = FrameWindow {
        start: 0,
        frames: Some(0),
        stride: 1,
    };
    let err = load_clip(&clip(), &zero_frames, Resize::Original, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(err, TracesError::InvalidParameter { name: "frames", .. }),
        "{err}"
    );
    let zero_stride = FrameWindow {
        stride: 0,
        ..Default::default()
    };
    let err = load_clip(&clip(), &zero_stride, Resize::Original, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(err, TracesError::InvalidParameter { name: "stride", .. }),
        "{err}"
    );
}

#[test]
fn a_static_clip_falls_back_to_set_of_mark() {
    // The clip's first frame held for 8 frames: a camera and scene that do not move.
    let window = FrameWindow {
        start: 0,
        frames: Some(1),
        stride: 1,
    };
    let first = load_clip(&clip(), &window, Resize::Original, &mut |_, _| {}).unwrap();
    let frames = vec![first.frames[0].clone(); 8];
    let config = TomConfig {
        kind: DataKind::Robot,
        task: "pick up the chip bag".into(),
        ..Default::default()
    };
    let result = run(&frames, &LucasKanade::default(), &config, &|_| {}).unwrap();
    assert_eq!(result.kind, RecordKind::Som);
    assert_eq!(result.fallback, Some(Fallback::NothingMoves));
    assert!(!result.selection.stabilized.applied);
    assert!(result
        .question
        .ends_with("Please locate all the numerical marks in the image.\n"));
}

#[test]
fn truncated_and_unreadable_videos_are_errors() {
    let dir = std::env::temp_dir().join(format!("magma-traces-video-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(clip()).unwrap();
    let truncated = dir.join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let window = FrameWindow {
        start: 0,
        frames: Some(19),
        stride: 1,
    };
    let err = load_clip(&truncated, &window, Resize::Original, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("truncated.mp4"), "{err}");
    let garbage = dir.join("garbage.mp4");
    std::fs::write(&garbage, b"this is not a video at all").unwrap();
    let err = load_clip(
        &garbage,
        &FrameWindow::default(),
        Resize::Original,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, TracesError::Video { .. }), "{err}");
    assert!(err.to_string().contains("garbage.mp4"));
    std::fs::remove_dir_all(&dir).unwrap();
}
