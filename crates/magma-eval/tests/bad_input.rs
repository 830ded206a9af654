//! Bad input gets a clear error or warning naming what was wrong.

use magma_eval::{score_text, Benchmark, EvalError};

const POPE_REFS: &str = r#"{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "yes", "category": "random"}
{"question_id": 2, "image": "a.jpg", "text": "Is there a cat?", "label": "no", "category": "random"}
"#;

#[test]
fn unknown_and_missing_predictions_are_reported() {
    let preds = r#"{"question_id": 1, "text": "Yes"}
{"question_id": 99, "text": "No"}"#;
    let eval = score_text(Benchmark::Pope, POPE_REFS, Some(preds)).unwrap();
    assert_eq!(eval.missing, ["2"]);
    assert_eq!(eval.unknown, ["99"]);
    let warnings = eval.warnings();
    assert!(warnings[0].starts_with("1 of 2 references have no prediction and count as wrong: 2"));
    assert!(warnings[1].starts_with("1 predictions match no reference id and were ignored: 99"));
    // the missing answer is an empty answer: LLaVA reads it as "yes" (wrong here), lmms as neither
    assert_eq!(eval.scores.get("random.accuracy"), Some(50.0));
}

#[test]
fn a_malformed_line_is_named() {
    let preds = "{\"question_id\": 1, \"text\": \"Yes\"}\n{\"question_id\": 2, \"text\": \"No\"\n";
    let err = score_text(Benchmark::Pope, POPE_REFS, Some(preds)).unwrap_err();
    assert!(matches!(err, EvalError::Malformed { line: 2, .. }), "{err}");
    assert!(
        err.to_string().starts_with("predictions:2: not valid JSON"),
        "{err}"
    );
}

#[test]
fn a_missing_field_is_named_with_its_line() {
    let refs = r#"{"question_id": 1, "label": "yes", "category": "random"}
{"question_id": 2, "category": "random", "image": "x"}"#;
    let err = score_text(Benchmark::Pope, refs, Some("")).unwrap_err();
    assert!(
        err.to_string()
            .contains("references:2: missing field `label`"),
        "{err}"
    );
}

#[test]
fn mixed_benchmarks_are_refused() {
    let aitw_line = r#"{"episode_id": "1", "step_id": 0, "category": "general", "results/action_type": 5, "results/yx_touch": [-1, -1], "results/yx_lift": [-1, -1]}"#;
    let refs = format!("{POPE_REFS}{aitw_line}\n");
    let err = score_text(Benchmark::Pope, &refs, Some("")).unwrap_err();
    assert!(
        err.to_string()
            .contains("references:3: this looks like a `aitw` record, but the benchmark is `pope`"),
        "{err}"
    );
}

#[test]
fn duplicate_keys_are_refused() {
    let preds = "{\"question_id\": 1, \"text\": \"Yes\"}\n{\"question_id\": 1, \"text\": \"No\"}\n";
    let err = score_text(Benchmark::Pope, POPE_REFS, Some(preds)).unwrap_err();
    assert!(
        err.to_string()
            .contains("predictions:2: duplicate key 1 (first on line 1)"),
        "{err}"
    );
}

#[test]
fn unknown_benchmark_names_the_known_ones() {
    let err = "mmlu".parse::<Benchmark>().unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown benchmark `mmlu` (known: aitw, mind2web"),
        "{err}"
    );
    assert_eq!(
        "Mind2Web".parse::<Benchmark>().unwrap(),
        Benchmark::Mind2Web
    );
}

#[test]
fn aitw_unparsable_prediction_counts_as_wrong() {
    let refs = r#"{"episode_id": "1", "step_id": 0, "category": "general", "results/action_type": 5, "results/yx_touch": [-1, -1], "results/yx_lift": [-1, -1]}
{"episode_id": "1", "step_id": 1, "category": "general", "results/action_type": 6, "results/yx_touch": [-1, -1], "results/yx_lift": [-1, -1]}"#;
    let preds = r#"{"episode_id": "1", "step_id": 0, "results/action_type": 5}
{"episode_id": 1, "step_id": 1, "results/action_type": null, "results/yx_touch": null, "results/yx_lift": null, "results/type_action": null}"#;
    let eval = score_text(Benchmark::Aitw, refs, Some(preds)).unwrap();
    assert_eq!(eval.scores.get("general.accuracy"), Some(50.0));
    assert_eq!(eval.scores.get("general.unparsed"), Some(1.0));
    assert_eq!(eval.scores.get("general.partial_match"), Some(50.0));
    assert_eq!(eval.scores.get("general.complete_match"), Some(0.0));
}
