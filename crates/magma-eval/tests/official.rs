//! Random cases scored by the official Python code (google-research `action_matching.py` with
//! SeeClick's per-category aggregation, MindAct's and SeeClick's Mind2Web metric code, lmms-eval v0.3.0 VQAv2 / TextVQA / POPE / ChartQA, LLaVA
//! `eval_pope.py`); the cases and the official numbers are in `tests/fixtures/official/*/`
//! (see the README there). Every number must be reproduced to 0.01 points.

use std::path::PathBuf;

use magma_eval::{score_files, Benchmark};

fn check(benchmark: Benchmark, dir: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/official")
        .join(dir);
    let eval = score_files(
        benchmark,
        Some(&root.join("references.jsonl")),
        &root.join("predictions.jsonl"),
    )
    .unwrap();
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
            .unwrap();
    assert!(!expected.is_empty());
    for (key, want) in &expected {
        let want = want.as_f64().unwrap();
        let got = eval
            .scores
            .get(key)
            .unwrap_or_else(|| panic!("{dir}: no metric `{key}` in {}", eval.scores.to_json()));
        assert!(
            (got - want).abs() < 0.01,
            "{dir}: {key} = {got}, official code gives {want}"
        );
    }
}

#[test]
fn aitw_matches_the_official_action_matching() {
    check(Benchmark::Aitw, "aitw");
}

#[test]
fn aitw_missing_predictions_are_counted_and_reported() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/official/aitw");
    let eval = score_files(
        Benchmark::Aitw,
        Some(&root.join("references.jsonl")),
        &root.join("predictions.jsonl"),
    )
    .unwrap();
    assert!(!eval.missing.is_empty());
    assert!(eval.warnings()[0].contains("have no prediction and count as wrong"));
}

#[test]
fn mind2web_matches_mindact_and_seeclick() {
    check(Benchmark::Mind2Web, "mind2web");
}

#[test]
fn vqav2_matches_lmms_eval() {
    check(Benchmark::Vqav2, "vqav2");
}

#[test]
fn textvqa_matches_lmms_eval() {
    check(Benchmark::TextVqa, "textvqa");
}

#[test]
fn pope_matches_llava_and_lmms_eval() {
    check(Benchmark::Pope, "pope");
}

#[test]
fn chartqa_matches_lmms_eval() {
    check(Benchmark::ChartQa, "chartqa");
}
