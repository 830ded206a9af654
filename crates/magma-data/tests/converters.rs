//! Converters on small inputs in each source's native format (`tests/fixtures/make_fixtures.py`
//! writes them with the `protobuf` package and Pillow, no TensorFlow): decoded values checked.

use std::path::{Path, PathBuf};

use magma_data::convert::aitw::Aitw;
use magma_data::convert::llava::Llava;
use magma_data::convert::rlds::{RldsConverter, RldsOptions};
use magma_data::convert::ui::{Mind2Web, SeeClick};
use magma_data::record::{Action, Media};
use magma_data::stage::{CollectSink, Stage, WorkItem};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run(stage: &dyn Stage, path: &Path) -> CollectSink {
    let mut sink = CollectSink::default();
    stage.process(&WorkItem::file(path), &mut sink).unwrap();
    sink
}

fn reasons(sink: &CollectSink) -> Vec<&str> {
    sink.skipped.iter().map(|s| s.reason.as_str()).collect()
}

#[test]
fn rlds_steps_become_action_records_with_q99_tokens() {
    let dir = fixtures().join("rlds/tiny_robot/1.0.0");
    let options = RldsOptions {
        statistics: Some(fixtures().join("rlds/dataset_statistics.json")),
        ..Default::default()
    };
    let conv = RldsConverter::open(&dir, &options).unwrap();
    assert_eq!(conv.name(), "tiny_robot");
    let shards = conv.shards().unwrap();
    assert_eq!(shards.len(), 1);
    let sink = run(&conv, &shards[0]);
    // 3 + 2 steps; step 1 of episode 1 has a corrupt JPEG.
    assert_eq!(sink.samples.len(), 4);
    assert_eq!(reasons(&sink), ["undecodable_image"]);
    assert_eq!(sink.skipped[0].locator, "record 1 step 1");
    let first = &sink.samples[0].record;
    assert_eq!(first.source, "rlds:tiny_robot");
    assert_eq!(
        first.conversations[0].value,
        "<image>\nWhat action should the robot take to pick up the red can?"
    );
    assert_eq!(first.conversations[1].value, "<action>".repeat(7));
    assert_eq!(first.media[0].size(), (64, 48));
    assert_eq!(
        &sink.samples[0].assets[0].bytes[..2],
        &[0xff, 0xd8],
        "original JPEG bytes"
    );
    let Action::Robot {
        raw,
        normalized,
        tokens,
    } = &first.actions[0]
    else {
        panic!()
    };
    // Step 0 of episode 0: [0.01, -0.02, 0, 0.1, -0.1, 0, 0] (float32 in the file).
    assert_eq!(raw[0], 0.01f32 as f64);
    assert_eq!(raw[1], -0.02f32 as f64);
    let n = normalized.as_ref().unwrap();
    // q01 = 0.01, q99 = 0.03 → -1; -0.02 in [-0.06, -0.02] → 1; dims with min == max → 0;
    // the gripper (mask false) passes through.
    assert!((n[0] + 1.0).abs() < 1e-5, "{n:?}");
    assert!((n[1] - 1.0).abs() < 1e-5, "{n:?}");
    assert_eq!(&n[3..6], &[0.0, 0.0, 0.0]);
    assert_eq!(n[6], 0.0);
    let t = tokens.as_ref().unwrap();
    assert_eq!(t.len(), 7);
    // digitize(-1) = 1 → 127999; the upper end is 2·0.04/(0.04 + 1e-8) − 1 = 0.9999995 (the
    // reference's +1e-8), bin 255 → 127745, not 127744; digitize(0) = 128 → 127872.
    assert_eq!(t[0], 127_999);
    assert_eq!(t[1], 127_745);
    assert_eq!(t[3], 127_872);
    // Episode 1, step 0: the other instruction, lower-cased.
    let later = &sink.samples[3].record;
    assert!(later.conversations[0]
        .value
        .ends_with("to open the drawer?"));
    assert_eq!(later.provenance.locator, "record 1 step 0");
}

#[test]
fn truncated_tfrecord_is_logged_with_file_and_offset_and_the_rest_is_kept() {
    let dir = fixtures().join("rlds/tiny_robot/1.0.0");
    let conv = RldsConverter::open(&dir, &RldsOptions::default()).unwrap();
    let sink = run(&conv, &fixtures().join("bad/truncated.tfrecord"));
    assert_eq!(sink.samples.len(), 3, "the first episode survives");
    assert_eq!(reasons(&sink), ["truncated_record"]);
    let message = &sink.skipped[0].message;
    assert!(
        message.contains("bad/truncated.tfrecord: TFRecord at byte offset 3014: "),
        "{message}"
    );
    assert!(message.contains("truncated record"), "{message}");
    // Without statistics the raw action is kept and no tokens are made.
    let Action::Robot { tokens, .. } = &sink.samples[0].record.actions[0] else {
        panic!()
    };
    assert!(tokens.is_none());
}

#[test]
fn aitw_steps_become_som_records_with_one_key_json_actions() {
    let sink = run(
        &Aitw,
        &fixtures().join("aitw/general-0000-of-0001.tfrecord.gz"),
    );
    let answers: Vec<&str> = sink
        .samples
        .iter()
        .map(|s| s.record.conversations[1].value.as_str())
        .collect();
    // tap inside box 0; finger moving up; typing; (unknown type 99 skipped); complete.
    assert_eq!(
        answers,
        [
            r#"{"TAP": {"MARK": 0}}"#,
            r#"{"SWIPE": "UP"}"#,
            r#"{"TYPE": "coffee near me"}"#,
            r#"{"SET_TASK_STATUS": "COMPLETE"}"#
        ]
    );
    assert_eq!(reasons(&sink), ["box_outside_image", "unknown_action_type"]);
    assert_eq!(sink.skipped[0].locator, "record 2 box 2");
    let first = &sink.samples[0].record;
    assert_eq!(first.media[0].size(), (72, 128));
    assert_eq!(first.marks.len(), 3);
    // Box 0: (y, x, h, w) = (16/128, 8/72, 16/128, 32/72) → x1 y1 x2 y2 = 8 16 40 32.
    let b = first.marks[0].bbox;
    assert!(
        (b[0] - 8.0).abs() < 1e-4
            && (b[1] - 16.0).abs() < 1e-4
            && (b[2] - 40.0).abs() < 1e-4
            && (b[3] - 32.0).abs() < 1e-4,
        "{b:?}"
    );
    assert_eq!(first.marks[0].text.as_deref(), Some("Search"));
    assert_eq!(
        first.marks[1].kind.as_deref(),
        Some("ICON_MAGNIFYING_GLASS")
    );
    let q = &first.conversations[0].value;
    assert!(q.contains("Current task: search for coffee near me"));
    assert!(q.contains("Previous actions:\nNone"));
    assert!(q.contains("labeled with 3 bounding boxes"));
    // The third step lists the earlier actions and has 2 marks (one box left the screen).
    let third = &sink.samples[2].record;
    assert!(third.conversations[0]
        .value
        .contains("Previous actions:\n{\"TAP\": {\"MARK\": 0}}\n{\"SWIPE\": \"UP\"}\n"));
    assert_eq!(third.marks.len(), 2);
    // The stored image is the marked screenshot (PNG).
    let png = image::load_from_memory(&sink.samples[0].assets[0].bytes)
        .unwrap()
        .to_rgb8();
    assert_eq!(png.dimensions(), (72, 128));
    assert_eq!(png.get_pixel(8, 16).0, [255, 0, 0], "red outline of mark 0");
}

#[test]
fn mind2web_actions_become_marked_records_with_the_target_mark() {
    let stage = Mind2Web {
        screenshots: fixtures().join("mind2web/screenshots"),
        max_marks: 30,
    };
    let sink = run(&stage, &fixtures().join("mind2web/train_0.json"));
    assert_eq!(sink.samples.len(), 2);
    assert_eq!(reasons(&sink), ["box_outside_image"]);
    let first = &sink.samples[0].record;
    // Positive + 2 rendered negatives inside the 200x120 screenshot (one is -1,-1,-1,-1).
    assert_eq!(first.marks.len(), 3);
    let Action::Ui {
        op,
        mark,
        value,
        point,
    } = &first.actions[0]
    else {
        panic!()
    };
    assert_eq!(op, "TYPE");
    assert_eq!(value.as_deref(), Some("sushi"));
    let k = mark.unwrap();
    assert_eq!(first.marks[k as usize].bbox, [10.0, 8.0, 110.0, 28.0]);
    assert_eq!(
        first.conversations[1].value,
        format!(r#"{{"ACTION": "TYPE", "MARK": {k}, "VALUE": "sushi"}}"#)
    );
    assert_eq!(point.unwrap(), [0.3, 0.15]);
    let second = &sink.samples[1].record;
    assert!(second.conversations[1]
        .value
        .starts_with(r#"{"ACTION": "CLICK", "MARK": "#));
    assert!(second.conversations[0]
        .value
        .contains("Previous actions:\n[searchbox]  Search -> TYPE: sushi\n"));
}

#[test]
fn seeclick_pages_become_grounding_turns() {
    let stage = SeeClick {
        images: fixtures().join("seeclick/images"),
        max_turns: 10,
    };
    let web = run(&stage, &fixtures().join("seeclick/seeclick_web.json"));
    assert_eq!(web.samples.len(), 1);
    assert_eq!(reasons(&web), ["box_outside_image"]);
    let r = &web.samples[0].record;
    assert_eq!(r.conversations.len(), 4);
    assert!(r.conversations[0]
        .value
        .starts_with("<image>\nIn this view I need to click a button to \"Sign in\"?"));
    assert_eq!(
        r.conversations[1].value,
        "Coordinate: (0.20, 0.15). Mark: 0"
    );
    assert_eq!(
        r.conversations[3].value,
        "Coordinate: (0.65, 0.15). Mark: 1"
    );
    assert!(!r.conversations[2].value.contains("<image>"));
    assert_eq!(r.marks[1].bbox, [64.0, 10.0, 144.0, 20.0]);
    let mobile = run(&stage, &fixtures().join("seeclick/mobile.json"));
    assert_eq!(
        mobile.samples[0].record.conversations[1].value,
        "Coordinate: (0.82, 0.08). Mark: 0"
    ); // Python: round(0.825, 2), round(0.07500000000000001, 2)
    assert_eq!(mobile.samples[0].record.media[0].size(), (60, 120));
}

#[test]
fn llava_items_pass_through_after_image_checks() {
    let stage = Llava {
        images: fixtures().join("llava/images"),
    };
    let sink = run(&stage, &fixtures().join("llava/llava_mix.json"));
    assert_eq!(sink.samples.len(), 2);
    assert_eq!(reasons(&sink), ["missing_image", "undecodable_image"]);
    let r = &sink.samples[0].record;
    assert_eq!(
        r.conversations[1].value,
        "The bus in the image is white and red."
    );
    assert_eq!(
        r.media[0],
        Media::Image {
            path: "coco/33471.jpg".into(),
            width: 40,
            height: 30
        }
    );
    assert!(sink.samples[1].record.media.is_empty());
}

#[test]
fn exported_conversations_load_in_the_trainers_reader() {
    let dir = fixtures().join("rlds/tiny_robot/1.0.0");
    let options = RldsOptions {
        statistics: Some(fixtures().join("rlds/dataset_statistics.json")),
        ..Default::default()
    };
    let conv = RldsConverter::open(&dir, &options).unwrap();
    let mut samples = run(&conv, &conv.shards().unwrap()[0]).samples;
    samples.extend(
        run(
            &Aitw,
            &fixtures().join("aitw/general-0000-of-0001.tfrecord.gz"),
        )
        .samples,
    );
    let out = tempfile::tempdir().unwrap();
    let json = magma_data::magma_json::write_dir(out.path(), &samples).unwrap();
    let items = magma_processor::training::read_items(&json).unwrap();
    assert_eq!(items.len(), 8);
    let robot = &items[0];
    assert!(robot.rlds);
    assert_eq!(
        robot.language_instruction.as_deref(),
        Some("pick up the red can")
    );
    assert_eq!(robot.action_token_ids.as_ref().unwrap()[0], 127_999);
    let phone = &items[4];
    assert!(!phone.rlds);
    assert_eq!(phone.conversations[1].value, r#"{"TAP": {"MARK": 0}}"#);
    let image = phone.image.as_ref().unwrap().paths()[0].to_path_buf();
    assert!(
        out.path().join(&image).is_file(),
        "{image:?} written under images/"
    );
}
