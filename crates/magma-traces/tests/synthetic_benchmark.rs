//! Floors on the synthetic benchmark (small scenes so the test stays fast; `magma tom-eval` runs
//! the full-size table).

use magma_traces::eval::{evaluate_scene, markdown_table, EvalConfig, SceneReport};
use magma_traces::lk::LucasKanade;
use magma_traces::synthetic::SceneKind;

fn report(kind: SceneKind) -> SceneReport {
    let config = EvalConfig {
        width: 256,
        height: 192,
        frames: 12,
        grid_size: 12,
        ..Default::default()
    };
    let r = evaluate_scene(kind, &config, &LucasKanade::default()).unwrap();
    eprintln!("{}", markdown_table(std::slice::from_ref(&r)));
    r
}

#[test]
fn a_camera_pan_is_tracked_and_removed() {
    let r = report(SceneKind::Pan);
    assert!(r.tap_vid.position_accuracy > 0.95, "{r:?}");
    assert!(r.tap_vid.occlusion_accuracy > 0.95, "{r:?}");
    assert!(r.camera_motion_removed);
    assert!(r.homography_error_px < 0.5, "{r:?}");
}

#[test]
fn zoom_and_roll_are_tracked() {
    for kind in [SceneKind::Zoom, SceneKind::Rotate] {
        let r = report(kind);
        assert!(r.tap_vid.position_accuracy > 0.9, "{kind:?}: {r:?}");
        assert!(r.tap_vid.average_jaccard > 0.85, "{kind:?}: {r:?}");
    }
}

#[test]
fn moving_objects_are_found() {
    for kind in [
        SceneKind::Objects,
        SceneKind::PanObjects,
        SceneKind::Combined,
    ] {
        let r = report(kind);
        assert!(r.moving_truth >= 5, "{kind:?}: {r:?}");
        assert!(r.moving_recall.unwrap_or(0.0) >= 0.8, "{kind:?}: {r:?}");
        assert!(r.moving_precision.unwrap_or(0.0) >= 0.3, "{kind:?}: {r:?}");
        assert!(r.tap_vid.position_accuracy > 0.75, "{kind:?}: {r:?}");
    }
}

#[test]
fn a_static_scene_has_no_camera_motion_and_nothing_moving() {
    let r = report(SceneKind::Static);
    assert!(!r.camera_motion_removed);
    assert_eq!(r.moving_predicted, 0);
    assert!(r.tap_vid.position_accuracy > 0.99, "{r:?}");
}
