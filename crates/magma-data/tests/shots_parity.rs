//! Shot detection against PySceneDetect 0.7.2 (`tests/fixtures/curate/expected_shots.json`,
//! written by `make_fixtures.py`): the same cut frames and scenes, and every per-frame stats
//! column within 1e-3, on four small H.264 videos (hard cuts at 24 fps, fades at 25, flashes
//! and a too-short shot at 29.97 and 640x360, a cut-free pan at 30) under seven settings.
//! PySceneDetect was fed the frames magma-data decodes (see the script), so decoders agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use magma_data::curate::shots::{
    DetectorKind, Downscale, FilterMode, ShotConfig, ShotDetector, Shots, Weights,
};
use magma_data::curate::video::detect_shots;
use magma_traces::mp4::Mp4Video;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/curate")
}

fn config(setting: &str) -> ShotConfig {
    let base = ShotConfig {
        record_stats: true,
        ..Default::default()
    };
    match setting {
        "content_default" => base,
        "content_t20_len8_suppress" => ShotConfig {
            threshold: 20.0,
            min_scene_len: 8,
            filter_mode: FilterMode::Suppress,
            ..base
        },
        "content_luma_t10" => ShotConfig {
            threshold: 10.0,
            weights: Weights::LUMA_ONLY,
            ..base
        },
        "content_edges_t20" => ShotConfig {
            threshold: 20.0,
            weights: Weights {
                delta_edges: 1.0,
                ..Weights::DEFAULT
            },
            ..base
        },
        "adaptive_default" => ShotConfig {
            detector: DetectorKind::Adaptive,
            ..base
        },
        "adaptive_t2_w3_len10" => ShotConfig {
            detector: DetectorKind::Adaptive,
            adaptive_threshold: 2.0,
            window_width: 3,
            min_content_val: 10.0,
            min_scene_len: 10,
            ..base
        },
        "content_default_v06_downscale" => ShotConfig {
            downscale: Downscale::Auto06,
            ..base
        },
        other => panic!("unknown setting {other}"),
    }
}

fn column(shots: &Shots, key: &str) -> Vec<Option<f64>> {
    shots
        .stats
        .iter()
        .map(|s| match key {
            "content_val" => Some(s.content_val),
            "delta_hue" => Some(s.delta_hue),
            "delta_sat" => Some(s.delta_sat),
            "delta_lum" => Some(s.delta_lum),
            "delta_edges" => s.delta_edges,
            k if k.starts_with("adaptive_ratio") => s.adaptive_ratio,
            k => panic!("unknown stats column {k}"),
        })
        .collect()
}

fn check(name: &str, setting: &str, shots: &Shots, want: &Value) {
    let cuts: Vec<usize> = serde_json::from_value(want["cuts"].clone()).unwrap();
    assert_eq!(shots.cuts, cuts, "{name} {setting}: cuts");
    let scenes: Vec<(usize, usize)> = serde_json::from_value(want["scenes"].clone()).unwrap();
    assert_eq!(shots.ranges(), scenes, "{name} {setting}: scenes");
    let stats: BTreeMap<String, Vec<Option<f64>>> =
        serde_json::from_value(want["stats"].clone()).unwrap();
    for (key, expected) in &stats {
        let got = column(shots, key);
        assert_eq!(got.len(), expected.len(), "{name} {setting} {key}: frames");
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            match (g, e) {
                (Some(g), Some(e)) => assert!(
                    (g - e).abs() <= 1e-3,
                    "{name} {setting} {key} frame {}: {g} vs PySceneDetect {e}",
                    i + 1
                ),
                (None, None) => {}
                _ => panic!("{name} {setting} {key} frame {}: {g:?} vs {e:?}", i + 1),
            }
        }
    }
}

#[test]
fn shots_equal_pyscenedetect_on_every_fixture_and_setting() {
    let text = std::fs::read_to_string(fixtures().join("expected_shots.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let videos = expected["videos"].as_object().unwrap();
    assert_eq!(videos.len(), 4);
    for (name, entry) in videos {
        let path = fixtures().join(name);
        let video = Mp4Video::open(&path).unwrap();
        let frames: Vec<_> = video.frames().unwrap().map(Result::unwrap).collect();
        assert_eq!(
            frames.len(),
            entry["frames"].as_u64().unwrap() as usize,
            "{name}"
        );
        let fps: (u32, u32) = serde_json::from_value(entry["fps"].clone()).unwrap();
        assert_eq!(
            (video.frame_rate().num, video.frame_rate().den),
            fps,
            "{name}"
        );
        for (setting, want) in entry["settings"].as_object().unwrap() {
            let mut detector =
                ShotDetector::new(config(setting), video.width(), video.height()).unwrap();
            for frame in &frames {
                detector.push(frame).unwrap();
            }
            check(
                name,
                setting,
                &detector.finish(Some(video.frame_rate())),
                want,
            );
        }
        // The file-level entry point (threaded decode) gives the same result, and the cut
        // list equals PySceneDetect's run on the MP4 with OpenCV's own decoder.
        let shots = detect_shots(&path, &config("content_default"), None, &mut |_, _| {}).unwrap();
        check(
            name,
            "content_default",
            &shots,
            &entry["settings"]["content_default"],
        );
        let native: Vec<usize> =
            serde_json::from_value(entry["native_opencv_decode_content_default_cuts"].clone())
                .unwrap();
        assert_eq!(shots.cuts, native, "{name}: OpenCV-decoded cuts");
    }
}

#[test]
fn a_video_without_cuts_has_no_shots_and_frame_rates_are_exact() {
    let path = fixtures().join("pan_30.mp4");
    let shots = detect_shots(&path, &ShotConfig::default(), None, &mut |_, _| {}).unwrap();
    assert_eq!(shots.frames, 120);
    assert!(shots.cuts.is_empty() && shots.scenes.is_empty());
    let ntsc = fixtures().join("flashes_2997.mp4");
    let shots = detect_shots(&ntsc, &ShotConfig::default(), None, &mut |_, _| {}).unwrap();
    let rate = shots.frame_rate.unwrap();
    assert_eq!((rate.num, rate.den), (30000, 1001));
    let last = shots.scenes.last().unwrap();
    assert_eq!(last.end, 160);
    // 160 frames at 30000/1001 fps = 5.338666… s.
    assert_eq!(last.end_timecode.as_deref(), Some("00:00:05.339"));
}

#[test]
fn bad_videos_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.mp4");
    let bytes = std::fs::read(fixtures().join("hardcuts_24.mp4")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = detect_shots(&truncated, &ShotConfig::default(), None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated.mp4"), "{err}");
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "hello").unwrap();
    let err = detect_shots(&text, &ShotConfig::default(), None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("notes.mp4") && err.contains("MP4"), "{err}");
}
