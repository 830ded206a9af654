//! Mind2Web, scored from one prediction file under two protocols side by side:
//!
//! * **MindAct** (`OSU-NLP-Group/Mind2Web`, `src/action_prediction/metric.py`): the predicted
//!   element must be a positive candidate ranked in the top 50; Op F1 over whitespace-token sets
//!   of `"OP value"` with case kept; step success = element right and F1 = 1; task success =
//!   no failed step; macro averages per task.
//! * **SeeClick** (`njucckevin/SeeClick`, `agent_tasks/mind2web_test.py`, the protocol Magma's
//!   Table 4 follows): the predicted click point must lie in the ground-truth box (normalised,
//!   rounded to 3 decimals, edges inclusive); Op F1 over `"4"`, `"2 value"`, `"3 value"` with
//!   values lower-cased, averaged per operation type and then over the three types.
//!
//! SeeClick's values carry `seeclick` in their key.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use crate::jsonl::id_string;
use crate::scores::{mean, percent, Scores};

/// Candidates ranked below this are out of MindAct's candidate pool (`top_k=50`).
pub const MINDACT_TOP_K: u32 = 50;

/// The test splits in the order of Magma's Table 4 (Cross-Website, Cross-Task, Cross-Domain).
pub const SPLITS: [&str; 3] = ["test_website", "test_task", "test_domain"];

/// The reference operation.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceOperation {
    pub op: String,
    #[serde(default)]
    pub original_op: Option<String>,
    #[serde(default)]
    pub value: String,
}

/// A ranked candidate element.
#[derive(Debug, Clone, Deserialize)]
pub struct Candidate {
    #[serde(deserialize_with = "id_string")]
    pub backend_node_id: String,
    pub rank: u32,
    #[serde(default)]
    pub score: Option<f64>,
}

/// A pixel box with a top-left origin.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PixelBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// One reference step.
#[derive(Debug, Clone, Deserialize)]
pub struct Mind2WebReference {
    #[serde(deserialize_with = "id_string")]
    pub annotation_id: String,
    #[serde(deserialize_with = "id_string")]
    pub action_uid: String,
    pub split: String,
    #[serde(default)]
    pub confirmed_task: String,
    pub operation: ReferenceOperation,
    #[serde(default)]
    pub pos_candidates: Vec<Candidate>,
    #[serde(default)]
    pub neg_candidates: Vec<Candidate>,
    #[serde(default)]
    pub bbox: Option<PixelBox>,
    /// `[width, height]` of the screenshot.
    #[serde(default)]
    pub img_size: Option<[f64; 2]>,
}

/// The predicted operation.
#[derive(Debug, Clone, Deserialize)]
pub struct PredictedOperation {
    pub op: String,
    #[serde(default)]
    pub value: String,
}

/// One predicted step.
#[derive(Debug, Clone, Deserialize)]
pub struct Mind2WebPrediction {
    #[serde(deserialize_with = "id_string")]
    pub annotation_id: String,
    #[serde(deserialize_with = "id_string")]
    pub action_uid: String,
    /// `backend_node_id` of the chosen element; `None` = "none of the above".
    #[serde(default, deserialize_with = "optional_id")]
    pub element_id: Option<String>,
    #[serde(default)]
    pub operation: Option<PredictedOperation>,
    /// `[x, y]` normalised by the screenshot size.
    #[serde(default)]
    pub click_point: Option<[f64; 2]>,
}

fn optional_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "id_string")] String);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

impl Mind2WebReference {
    /// The join key `annotation_id/action_uid`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.annotation_id, self.action_uid)
    }
}

impl Mind2WebPrediction {
    /// The join key `annotation_id/action_uid`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.annotation_id, self.action_uid)
    }
}

/// Mind2Web's `calculate_f1`: F1 of the *sets* of whitespace tokens; both empty → 1, one empty
/// → 0.
///
/// ```
/// use magma_eval::metrics::mind2web::token_f1;
/// assert!((token_f1("3 new york city", "3 new york") - 6.0 / 7.0).abs() < 1e-12);
/// assert!((token_f1("TYPE new york", "TYPE New York") - 1.0 / 3.0).abs() < 1e-12);
/// assert_eq!(token_f1("4", "3 foo"), 0.0);
/// ```
pub fn token_f1(pred: &str, label: &str) -> f64 {
    let p: HashSet<&str> = pred.split_whitespace().collect();
    let l: HashSet<&str> = label.split_whitespace().collect();
    if p.is_empty() && l.is_empty() {
        return 1.0;
    }
    if p.is_empty() || l.is_empty() {
        return 0.0;
    }
    let tp = p.intersection(&l).count() as f64;
    let precision = tp / p.len() as f64;
    let recall = tp / l.len() as f64;
    if precision == 0.0 || recall == 0.0 {
        return 0.0;
    }
    2.0 * precision * recall / (precision + recall)
}

/// Python's `round(v, 3)` (correctly rounded, ties to even), which Rust's formatting matches.
fn round3(v: f64) -> f64 {
    format!("{v:.3}").parse().unwrap_or(v)
}

/// Per-step MindAct outcome: (element right, op F1, step success).
pub fn mindact_step(r: &Mind2WebReference, p: Option<&Mind2WebPrediction>) -> (bool, f64, bool) {
    let positives: Vec<&str> = r
        .pos_candidates
        .iter()
        .filter(|c| c.rank < MINDACT_TOP_K)
        .map(|c| c.backend_node_id.as_str())
        .collect();
    if positives.is_empty() {
        return (false, 0.0, false);
    }
    // "None of the above" (or nothing usable) leaves MindAct without a final prediction: 0 on
    // every metric.
    let Some((element, op)) =
        p.and_then(|p| Some((p.element_id.as_deref()?, p.operation.as_ref()?)))
    else {
        return (false, 0.0, false);
    };
    let target = mindact_action(&r.operation.op, &r.operation.value);
    let predicted = mindact_action(&op.op, &op.value);
    let element_ok = positives.contains(&element);
    let f1 = token_f1(&predicted, &target);
    (element_ok, f1, element_ok && f1 == 1.0)
}

/// The action string MindAct's `postprocess_action` reads back from `Action: OP\nValue: v`:
/// the op as `Action: (CLICK|SELECT|TYPE)` finds it (else empty), a space, the value's first
/// line (`Value: (.*)$`, multi-line), each stripped.
fn mindact_action(op: &str, value: &str) -> String {
    let op = ["CLICK", "SELECT", "TYPE"]
        .into_iter()
        .find(|o| op.starts_with(o))
        .unwrap_or("");
    let value = value.split('\n').next().unwrap_or("");
    format!("{} {}", op, value.trim())
}

/// SeeClick's operation id: CLICK/HOVER/ENTER 4, SELECT 2, TYPE 3.
fn seeclick_type(op: &str) -> Option<u32> {
    match op {
        "CLICK" | "HOVER" | "ENTER" => Some(4),
        "SELECT" => Some(2),
        "TYPE" => Some(3),
        _ => None,
    }
}

fn seeclick_string(action_type: u32, value: &str) -> String {
    if action_type == 4 {
        "4".into()
    } else {
        format!("{action_type} {}", value.to_lowercase())
    }
}

/// Per-step SeeClick outcome: `None` when SeeClick skips the step, else (element right, op F1,
/// reference op type).
pub fn seeclick_step(
    r: &Mind2WebReference,
    p: Option<&Mind2WebPrediction>,
) -> Option<(bool, f64, u32)> {
    let (bbox, [w, h]) = (r.bbox?, r.img_size?);
    let ref_op = r
        .operation
        .original_op
        .as_deref()
        .unwrap_or(&r.operation.op);
    let ref_type = seeclick_type(ref_op)?;
    // SeeClick builds the reference as a Python literal with the value in double quotes and
    // `ast.literal_eval`s it; a value with a `"` fails there and the step is skipped.
    if ref_type != 4 && r.operation.value.contains('"') {
        return None;
    }
    let gt = [
        round3(bbox.x / w),
        round3(bbox.y / h),
        round3((bbox.x + bbox.width) / w),
        round3((bbox.y + bbox.height) / h),
    ];
    let Some(p) = p else {
        return Some((false, 0.0, ref_type));
    };
    let Some(pred_type) = p.operation.as_ref().and_then(|o| seeclick_type(&o.op)) else {
        return Some((false, 0.0, ref_type));
    };
    // The click point is read before the F1 is computed: without one, F1 stays 0.
    let Some([x, y]) = p.click_point else {
        return Some((false, 0.0, ref_type));
    };
    let element = gt[0] <= x && x <= gt[2] && gt[1] <= y && y <= gt[3];
    let value = p.operation.as_ref().map_or("", |o| o.value.as_str());
    let f1 = token_f1(
        &seeclick_string(pred_type, value),
        &seeclick_string(ref_type, &r.operation.value),
    );
    Some((element, f1, ref_type))
}

/// Scores joined steps per split (`test_website`, `test_task`, `test_domain`). Per split:
/// MindAct `element_accuracy`, `operation_f1`, `step_success_rate` (micro), `task_success_rate`,
/// `macro_element_accuracy`, `macro_operation_f1`, `macro_step_success_rate`; SeeClick
/// `seeclick_element_accuracy`, `seeclick_operation_f1` (per-type mean), `seeclick_step_success_rate`,
/// `seeclick_task_success_rate`, `seeclick_macro_{element_accuracy,operation_f1,step_success_rate}`,
/// `seeclick_steps` (scored steps).
pub fn score(pairs: &[(Mind2WebReference, Option<Mind2WebPrediction>)]) -> Scores {
    let mut by_split: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (r, _)) in pairs.iter().enumerate() {
        by_split.entry(r.split.as_str()).or_default().push(i);
    }
    let mut scores = Scores::new();
    let ordered = SPLITS
        .iter()
        .copied()
        .filter(|s| by_split.contains_key(s))
        .chain(
            by_split
                .keys()
                .copied()
                .filter(|s| !SPLITS.contains(s))
                .collect::<Vec<_>>(),
        )
        .collect::<Vec<_>>();
    for split in ordered {
        let steps: Vec<_> = by_split[split].iter().map(|&i| &pairs[i]).collect();
        let mut s = mindact(&steps);
        for (k, node) in seeclick(&steps).entries() {
            if let crate::scores::Node::Value(v) = node {
                s.insert(k.clone(), *v);
            }
        }
        scores.insert_group(split, s);
    }
    scores
}

type Step<'a> = &'a (Mind2WebReference, Option<Mind2WebPrediction>);
/// MindAct per step: (element right, op F1, step success).
type MindActOutcome = (bool, f64, bool);
/// SeeClick per step: (element right, op F1, reference op type).
type SeeClickOutcome = (bool, f64, u32);

fn mindact(steps: &[Step<'_>]) -> Scores {
    let outcomes: Vec<(bool, f64, bool)> = steps
        .iter()
        .map(|(r, p)| mindact_step(r, p.as_ref()))
        .collect();
    let n = outcomes.len() as f64;
    let mut s = Scores::new();
    s.insert(
        "element_accuracy",
        percent(outcomes.iter().filter(|o| o.0).count() as f64, n),
    );
    s.insert(
        "operation_f1",
        100.0 * mean(&outcomes.iter().map(|o| o.1).collect::<Vec<_>>()),
    );
    s.insert(
        "step_success_rate",
        percent(outcomes.iter().filter(|o| o.2).count() as f64, n),
    );
    // MindAct recomputes its per-task (macro) values and `error_ratio` inside the loop, only
    // after steps that have a top-50 positive: the reported values cover the steps up to the
    // last such step.
    let last = steps
        .iter()
        .rposition(|(r, _)| r.pos_candidates.iter().any(|c| c.rank < MINDACT_TOP_K));
    let prefix = last.map_or(0, |l| l + 1);
    let mut tasks: Vec<(&str, Vec<MindActOutcome>)> = Vec::new();
    for ((r, _), o) in steps[..prefix].iter().zip(&outcomes) {
        match tasks.iter_mut().find(|(id, _)| *id == r.annotation_id) {
            Some((_, v)) => v.push(*o),
            None => tasks.push((r.annotation_id.as_str(), vec![*o])),
        }
    }
    let per_task = |f: &dyn Fn(&(bool, f64, bool)) -> f64| {
        100.0
            * mean(
                &tasks
                    .iter()
                    .map(|(_, v)| mean(&v.iter().map(f).collect::<Vec<_>>()))
                    .collect::<Vec<_>>(),
            )
    };
    let solved = tasks.iter().filter(|(_, v)| v.iter().all(|o| o.2)).count();
    s.insert(
        "task_success_rate",
        percent(solved as f64, tasks.len() as f64),
    );
    s.insert(
        "macro_element_accuracy",
        per_task(&|o| f64::from(u8::from(o.0))),
    );
    s.insert("macro_operation_f1", per_task(&|o| o.1));
    s.insert(
        "macro_step_success_rate",
        per_task(&|o| f64::from(u8::from(o.2))),
    );
    s.insert("steps", n);
    s
}

fn seeclick(steps: &[Step<'_>]) -> Scores {
    // (task, outcomes) in first-appearance order; a task whose steps are all skipped still
    // counts, as a success (SeeClick's `episode_success` starts true).
    let mut tasks: Vec<(&str, Vec<SeeClickOutcome>)> = Vec::new();
    for (r, p) in steps {
        let outcome = seeclick_step(r, p.as_ref());
        let i = match tasks.iter().position(|(id, _)| *id == r.annotation_id) {
            Some(i) => i,
            None => {
                tasks.push((r.annotation_id.as_str(), Vec::new()));
                tasks.len() - 1
            }
        };
        tasks[i].1.extend(outcome);
    }
    let all: Vec<&(bool, f64, u32)> = tasks.iter().flat_map(|(_, v)| v).collect();
    let n = all.len() as f64;
    let mut s = Scores::new();
    s.insert(
        "seeclick_element_accuracy",
        percent(all.iter().filter(|o| o.0).count() as f64, n),
    );
    // "Operation F1" = mean over the op types {4, 2, 3} of the per-type mean F1. A type absent
    // from the split makes numpy's mean NaN there; it is left out here instead.
    let per_type: Vec<f64> = [4u32, 2, 3]
        .iter()
        .filter_map(|t| {
            let v: Vec<f64> = all.iter().filter(|o| o.2 == *t).map(|o| o.1).collect();
            (!v.is_empty()).then(|| mean(&v))
        })
        .collect();
    s.insert("seeclick_operation_f1", 100.0 * mean(&per_type));
    let success = |o: &(bool, f64, u32)| o.1 == 1.0 && o.0;
    s.insert(
        "seeclick_step_success_rate",
        percent(all.iter().filter(|o| success(o)).count() as f64, n),
    );
    let solved = tasks.iter().filter(|(_, v)| v.iter().all(success)).count();
    s.insert(
        "seeclick_task_success_rate",
        percent(solved as f64, tasks.len() as f64),
    );
    // Macro values: per task, then over tasks (numpy's mean of a skipped-only task is NaN
    // there; such tasks are left out here).
    let per_task = |f: &dyn Fn(&SeeClickOutcome) -> f64| {
        let means: Vec<f64> = tasks
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(_, v)| mean(&v.iter().map(f).collect::<Vec<_>>()))
            .collect();
        100.0 * mean(&means)
    };
    s.insert(
        "seeclick_macro_element_accuracy",
        per_task(&|o| f64::from(u8::from(o.0))),
    );
    s.insert("seeclick_macro_operation_f1", per_task(&|o| o.1));
    s.insert(
        "seeclick_macro_step_success_rate",
        per_task(&|o| f64::from(u8::from(success(o)))),
    );
    s.insert("seeclick_steps", n);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reference(op: &str, value: &str) -> Mind2WebReference {
        serde_json::from_value(json!({
            "annotation_id": "t1", "action_uid": "a1", "split": "test_task",
            "operation": {"op": op, "original_op": op, "value": value},
            "pos_candidates": [{"backend_node_id": "42", "rank": 3, "score": 0.9}],
            "neg_candidates": [{"backend_node_id": "7", "rank": 0, "score": 0.95}],
            "bbox": {"x": 100.0, "y": 100.0, "width": 50.0, "height": 10.0},
            "img_size": [1000.0, 400.0],
        }))
        .unwrap()
    }

    fn prediction(
        element: Option<&str>,
        op: &str,
        value: &str,
        point: Option<[f64; 2]>,
    ) -> Mind2WebPrediction {
        Mind2WebPrediction {
            annotation_id: "t1".into(),
            action_uid: "a1".into(),
            element_id: element.map(str::to_string),
            operation: Some(PredictedOperation {
                op: op.into(),
                value: value.into(),
            }),
            click_point: point,
        }
    }

    #[test]
    fn mindact_keeps_case_and_needs_a_top50_positive() {
        let r = reference("TYPE", "New York");
        let p = prediction(Some("42"), "TYPE", "new york", None);
        let (element, f1, step) = mindact_step(&r, Some(&p));
        assert!(element && !step);
        assert!((f1 - 1.0 / 3.0).abs() < 1e-12);
        let mut far = r.clone();
        far.pos_candidates[0].rank = 50;
        assert_eq!(mindact_step(&far, Some(&p)), (false, 0.0, false));
        // "none of the above" scores 0 everywhere, even with the right operation
        let none = prediction(None, "TYPE", "New York", None);
        assert_eq!(mindact_step(&r, Some(&none)), (false, 0.0, false));
    }

    #[test]
    fn seeclick_lowercases_and_tests_the_rounded_box_inclusively() {
        // box (0.10, 0.25, 0.15, 0.275)
        let r = reference("TYPE", "New York");
        let hit = prediction(None, "TYPE", "new york", Some([0.15, 0.275]));
        assert_eq!(seeclick_step(&r, Some(&hit)), Some((true, 1.0, 3)));
        let miss = prediction(None, "TYPE", "New York City", Some([0.151, 0.26]));
        let (element, f1, _) = seeclick_step(&r, Some(&miss)).unwrap();
        assert!(!element);
        assert!((f1 - 6.0 / 7.0).abs() < 1e-12);
        // HOVER is a click (4), and a click ignores the value
        let hover = reference("HOVER", "");
        let click = prediction(None, "CLICK", "whatever", Some([0.12, 0.26]));
        assert_eq!(seeclick_step(&hover, Some(&click)), Some((true, 1.0, 4)));
        // no click point: F1 stays 0 even with the right op
        let no_point = prediction(None, "CLICK", "", None);
        assert_eq!(
            seeclick_step(&hover, Some(&no_point)),
            Some((false, 0.0, 4))
        );
    }

    #[test]
    fn seeclick_rounds_the_box_to_three_decimals_like_python() {
        // x / w = 0.0625 rounds (half to even) to 0.062: a click at 0.0621 is inside
        let mut r = reference("CLICK", "");
        r.bbox = Some(PixelBox {
            x: 62.5,
            y: 0.0,
            width: 100.0,
            height: 400.0,
        });
        let p = prediction(None, "CLICK", "", Some([0.0621, 0.5]));
        assert!(seeclick_step(&r, Some(&p)).unwrap().0);
    }

    #[test]
    fn task_success_and_per_type_f1() {
        let r1 = reference("CLICK", "");
        let mut r2 = reference("TYPE", "abc");
        r2.action_uid = "a2".into();
        let p1 = prediction(Some("42"), "CLICK", "", Some([0.12, 0.26]));
        let mut p2 = prediction(Some("42"), "TYPE", "abc def", Some([0.12, 0.26]));
        p2.action_uid = "a2".into();
        let pairs = vec![(r1, Some(p1)), (r2, Some(p2))];
        let s = score(&pairs);
        assert_eq!(s.get("test_task.element_accuracy"), Some(100.0));
        assert_eq!(s.get("test_task.step_success_rate"), Some(50.0));
        assert_eq!(s.get("test_task.task_success_rate"), Some(0.0));
        // per type: CLICK 1.0, TYPE F1("3 abc def", "3 abc") = 0.8 → mean 0.9
        assert!((s.get("test_task.seeclick_operation_f1").unwrap() - 90.0).abs() < 1e-9);
        // MindAct op F1: CLICK 1.0, "TYPE abc def" vs "TYPE abc" = 0.8 → micro 0.9
        assert!((s.get("test_task.operation_f1").unwrap() - 90.0).abs() < 1e-9);
    }
}
