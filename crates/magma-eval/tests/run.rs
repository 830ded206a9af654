//! `run` over the bundled samples with a test double standing in for the model (it answers
//! what a model might, by benchmark), so the prompts, Set-of-Mark drawing, answer parsing,
//! resumption and scoring are checked without a model.

use std::path::{Path, PathBuf};

use magma_eval::run::{run, Answerer, Request, RunOptions};
use magma_eval::Benchmark;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name)
}

/// Stands in for a model: answers with `reply(request)`, counts calls, and panics on call
/// `panic_at` (1-based) to simulate the process being killed mid-run.
struct Double {
    reply: fn(&Request) -> String,
    calls: usize,
    panic_at: Option<usize>,
    prompts: Vec<String>,
}

impl Double {
    fn new(reply: fn(&Request) -> String) -> Self {
        Self {
            reply,
            calls: 0,
            panic_at: None,
            prompts: Vec::new(),
        }
    }
}

impl Answerer for Double {
    fn answer(&mut self, request: &Request) -> Result<String, String> {
        self.calls += 1;
        if Some(self.calls) == self.panic_at {
            panic!("simulated kill");
        }
        assert_eq!(
            request.text.matches("<image>").count(),
            request.images.len()
        );
        self.prompts.push(request.text.clone());
        Ok((self.reply)(request))
    }
}

fn run_sample(
    benchmark: Benchmark,
    out: &Path,
    double: &mut Double,
) -> magma_eval::run::RunSummary {
    let dir = sample(benchmark.name());
    run(
        benchmark,
        &dir.join("data.jsonl"),
        &dir,
        out,
        double,
        &RunOptions::default(),
        &mut |_| {},
    )
    .unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn killed_run_resumes_without_answering_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pope");
    let mut first = Double::new(|_| "Yes".into());
    first.panic_at = Some(3);
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_sample(Benchmark::Pope, &out, &mut first);
    }));
    assert!(killed.is_err());
    let preds = out.join("predictions.jsonl");
    assert_eq!(lines(&preds).len(), 2);
    // a write cut short by the kill
    let mut text = std::fs::read_to_string(&preds).unwrap();
    text.push_str("{\"question_id\": 3, \"te");
    std::fs::write(&preds, text).unwrap();

    let mut second = Double::new(|_| "Yes".into());
    let summary = run_sample(Benchmark::Pope, &out, &mut second);
    assert_eq!((second.calls, summary.resumed, summary.answered), (1, 2, 1));
    let ids: Vec<i64> = lines(&preds)
        .iter()
        .map(|l| l["question_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);

    // the same scores as an uninterrupted run
    let mut fresh = Double::new(|_| "Yes".into());
    let clean = run_sample(Benchmark::Pope, &tmp.path().join("fresh"), &mut fresh);
    assert_eq!(
        summary.evaluation.scores.to_json(),
        clean.evaluation.scores.to_json()
    );
    assert_eq!(clean.evaluation.scores.get("random.accuracy"), Some(50.0));
    // a third run answers nothing
    let mut third = Double::new(|_| "Yes".into());
    run_sample(Benchmark::Pope, &out, &mut third);
    assert_eq!(third.calls, 0);
    assert!(out.join("scores.json").exists());
}

#[test]
fn a_second_writer_on_the_same_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // a live pid (this process) holds the lock
    std::fs::write(tmp.path().join(".lock"), std::process::id().to_string()).unwrap();
    let dir = sample("pope");
    let data = dir.join("data.jsonl");
    let mut double = Double::new(|_| "Yes".into());
    let options = RunOptions::default();
    let err = run(
        Benchmark::Pope,
        &data,
        &dir,
        tmp.path(),
        &mut double,
        &options,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("another run"), "{err}");
    assert_eq!(double.calls, 0);
    // a lock left by a dead process is taken over (a pid above any pid_max)
    std::fs::write(tmp.path().join(".lock"), "999999999").unwrap();
    run(
        Benchmark::Pope,
        &data,
        &dir,
        tmp.path(),
        &mut double,
        &options,
        &mut |_| {},
    )
    .unwrap();
    assert!(!tmp.path().join(".lock").exists());
}

#[test]
fn pope_prompt_is_lmms_evals() {
    let tmp = tempfile::tempdir().unwrap();
    let mut double = Double::new(|_| "No".into());
    run_sample(Benchmark::Pope, tmp.path(), &mut double);
    assert_eq!(
        double.prompts[0],
        "<image>\nIs there a dog in the image?\nAnswer the question using a single word or phrase."
    );
}

#[test]
fn screenspot_marks_resolve_to_their_boxes() {
    let tmp = tempfile::tempdir().unwrap();
    // mark 0 is the blue menu (instruction 1), so instruction 2 (the red icon, mark 1) misses;
    // the web record has no marks and a point answer inside its box
    let mut double = Double::new(|r| {
        if r.text.contains("sign in") {
            "Coordinate: (0.78, 0.2)".into()
        } else {
            "Mark: 0".into()
        }
    });
    let s = run_sample(Benchmark::ScreenSpot, tmp.path(), &mut double);
    assert!(double.prompts[0].contains("click a button to \"open the blue menu\""));
    let scores = &s.evaluation.scores;
    assert_eq!(scores.get("mobile.text"), Some(100.0));
    assert_eq!(scores.get("mobile.icon"), Some(0.0));
    assert_eq!(scores.get("web.text"), Some(100.0));
    assert!((scores.get("overall").unwrap() - 200.0 / 3.0).abs() < 1e-9);
}

#[test]
fn aitw_marks_history_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    let mut double = Double::new(|r| {
        if r.text.contains("(Step 0)") {
            r#"{"TAP": {"MARK": 0}}"#.into()
        } else {
            r#"{"SET_TASK_STATUS": "COMPLETE"}"#.into()
        }
    });
    let s = run_sample(Benchmark::Aitw, tmp.path(), &mut double);
    assert!(double.prompts[0].contains("labeled with 1 bounding boxes"));
    // step 1's history is step 0's ground truth
    assert!(double.prompts[1]
        .contains("Previous actions:\n{\"TAP\": {\"NORMALIZED_COORDINATE\": [0.22, 0.5]}}"));
    assert_eq!(s.evaluation.scores.get("general.accuracy"), Some(100.0));
    assert_eq!(
        s.evaluation.scores.get("general.complete_match"),
        Some(100.0)
    );
}

#[test]
fn mind2web_marks_name_ranked_candidates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut double = Double::new(|r| {
        if r.text.contains("Previous actions: Step0") {
            // mark 0 = rank 0 = the negative 204; the point is in the box
            r#"{"action_type": 4, "click_point": (0.50,0.75)}. Mark: 0"#.into()
        } else {
            r#"{"ACTION": "TYPE", "MARK": 0, "VALUE": "new york"}"#.into()
        }
    });
    let s = run_sample(Benchmark::Mind2Web, tmp.path(), &mut double);
    let scores = &s.evaluation.scores;
    // MindAct: step 1 element right, F1("TYPE new york", "TYPE New York") = 1/3; step 2 element wrong
    assert_eq!(scores.get("test_website.element_accuracy"), Some(50.0));
    assert_eq!(scores.get("test_website.step_success_rate"), Some(0.0));
    // SeeClick: step 1 has no click point (F1 0, miss); step 2 hits with F1 1
    assert_eq!(
        scores.get("test_website.seeclick_step_success_rate"),
        Some(50.0)
    );
    assert!(double.prompts[1].contains(
        "Instruction: Find flights to New York. Previous actions: Step0: {\"action_type\": 3"
    ));
}

#[test]
fn vqa_and_chartqa_samples_score() {
    let tmp = tempfile::tempdir().unwrap();
    let mut double = Double::new(|r| {
        if r.text.contains("color") {
            "Red.".into()
        } else {
            "no".into()
        }
    });
    let s = run_sample(Benchmark::Vqav2, &tmp.path().join("vqa"), &mut double);
    assert_eq!(s.evaluation.scores.get("accuracy"), Some(100.0));
    let mut double = Double::new(|_| "STOP".into());
    let s = run_sample(Benchmark::TextVqa, &tmp.path().join("textvqa"), &mut double);
    assert_eq!(
        double.prompts[0],
        "<image>\nWhat is written on the sign?\nAnswer the question using a single word or phrase."
    );
    assert_eq!(s.evaluation.scores.get("accuracy"), Some(100.0));
    let mut double = Double::new(|r| {
        if r.text.contains("value") {
            "51.5".into()
        } else {
            "orange".into()
        }
    });
    let s = run_sample(Benchmark::ChartQa, &tmp.path().join("chartqa"), &mut double);
    assert_eq!(s.evaluation.scores.get("relaxed_accuracy"), Some(100.0));
}

#[test]
fn simulators_are_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    std::fs::write(&data, "{\"suite\": \"libero_goal\", \"success\": true}\n").unwrap();
    let mut double = Double::new(|_| String::new());
    let err = run(
        Benchmark::Libero,
        &data,
        tmp.path(),
        tmp.path(),
        &mut double,
        &RunOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("simulator"), "{err}");
}
