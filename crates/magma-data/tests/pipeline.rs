//! `PIPELINE.toml` end to end on the bundled fixtures: two converter stages, a filter stage over
//! the first one's records, `--dry-run`, shards and idempotent reruns.

use std::path::Path;

use magma_data::job::ShardSpec;
use magma_data::pipeline::{Pipeline, RunOptions};

fn write_pipeline(dir: &Path) -> std::path::PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = format!(
        r#"
out = "out"

[[stage]]
name = "robot"
kind = "rlds"
input = "{f}/rlds/tiny_robot/1.0.0"
statistics = "{f}/rlds/dataset_statistics.json"

[[stage]]
name = "phone"
kind = "aitw"
input = "{f}/aitw/*.tfrecord.gz"

[[stage]]
name = "phone_marked"
kind = "filter"
from = "phone"
require_marks = true
min_scores = {{ clip = 0.25 }}
"#,
        f = fixtures.display()
    );
    let path = dir.join("PIPELINE.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn pipeline_runs_stages_reports_funnels_and_reruns_idempotently() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::from_file(&write_pipeline(tmp.path())).unwrap();
    let dry = magma_data::pipeline::run(
        &pipeline,
        &RunOptions {
            dry_run: true,
            ..Default::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(
        dry.iter().map(|r| r.items).collect::<Vec<_>>(),
        [1, 1, 0],
        "the filter has no input before its source ran"
    );
    assert!(
        !tmp.path().join("out/robot").exists(),
        "a dry run writes nothing"
    );

    let reports =
        magma_data::pipeline::run(&pipeline, &RunOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(reports[0].funnel.records, 4);
    assert_eq!(reports[0].funnel.skipped["undecodable_image"], 1);
    assert_eq!(reports[1].funnel.records, 4);
    assert_eq!(reports[1].funnel.skipped["unknown_action_type"], 1);
    // No record carries a CLIP score yet: all four are dropped, with the reason counted.
    assert_eq!(reports[2].funnel.records, 0);
    assert_eq!(reports[2].funnel.dropped["no_clip_score"], 4);
    let errors = std::fs::read_to_string(
        std::fs::read_dir(tmp.path().join("out/phone"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".errors.jsonl"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        errors.contains(r#""reason":"unknown_action_type""#),
        "{errors}"
    );
    assert!(errors.contains("unknown_action_type:99"), "{errors}");

    // The part's index lists every record of its tar, in order.
    let phone = tmp.path().join("out/phone");
    let tar = magma_data::job::done_parts(&phone).unwrap().remove(0).path;
    let index = magma_data::index::read_jsonl(&tar.with_extension("index.jsonl")).unwrap();
    let samples = magma_data::webdataset::read_shard(&tar).unwrap();
    assert_eq!(
        index.iter().map(|r| &r.id).collect::<Vec<_>>(),
        samples.iter().map(|s| &s.record.id).collect::<Vec<_>>()
    );
    assert_eq!(
        (index[0].width, index[0].height, index[0].marks),
        (72, 128, 3)
    );

    // Rerun: nothing pending, same funnels.
    let mut events = 0;
    let again =
        magma_data::pipeline::run(&pipeline, &RunOptions::default(), &mut |_, _| events += 1)
            .unwrap();
    assert_eq!(events, 3, "one Start per stage and no item ran");
    assert_eq!(again[1].funnel, reports[1].funnel);
    assert_eq!(again[0].done_before, 1);

    // A shard that owns no item of a one-item manifest runs nothing.
    let other = RunOptions {
        shard: ShardSpec { index: 1, count: 2 },
        dry_run: false,
    };
    let empty = magma_data::pipeline::run(&pipeline, &other, &mut |_, _| {}).unwrap();
    assert_eq!(empty[0].items, 0);
}

#[test]
fn pipeline_errors_name_the_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.toml");
    std::fs::write(
        &path,
        "out = \"o\"\n[[stage]]\nname = \"f\"\nkind = \"filter\"\nfrom = \"nothing\"\n",
    )
    .unwrap();
    let err = Pipeline::from_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("stage `f`: `from = \"nothing\"` must name an earlier stage"),
        "{err}"
    );
    std::fs::write(
        &path,
        "out = \"o\"\n[[stage]]\nname = \"x\"\nkind = \"teleport\"\ninput = \"a\"\n",
    )
    .unwrap();
    assert!(Pipeline::from_file(&path)
        .unwrap_err()
        .to_string()
        .contains("unknown kind `teleport`"));
}
