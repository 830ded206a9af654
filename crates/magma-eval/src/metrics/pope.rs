//! POPE, with both answer parsers that papers use:
//!
//! * **LLaVA** `llava/eval/eval_pope.py` (widely copied): keep the first sentence, drop commas,
//!   split on single spaces; the word `No`, `not` or `no` → "no", anything else → "yes";
//!   yes-ratio over the *predictions*; metrics per category. Overall values are the mean over the
//!   categories (how papers average the three POPE splits).
//! * **lmms-eval** `tasks/pope/utils.py`: the answer must be exactly `yes`/`no` after
//!   `lower().strip()`; anything else is wrong for accuracy and neither TP nor FP/FN;
//!   `yes_ratio` counts the *ground-truth* labels; pooled over all questions. Keys carry `lmms`.

use serde::Deserialize;

use crate::jsonl::id_string;
use crate::scores::{mean, Scores};

/// Categories in the order of the POPE files.
pub const CATEGORIES: [&str; 3] = ["adversarial", "popular", "random"];

/// One reference question.
#[derive(Debug, Clone, Deserialize)]
pub struct PopeReference {
    #[serde(deserialize_with = "id_string")]
    pub question_id: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub text: String,
    pub label: String,
    pub category: String,
}

/// One answer line.
#[derive(Debug, Clone, Deserialize)]
pub struct PopePrediction {
    #[serde(deserialize_with = "id_string")]
    pub question_id: String,
    pub text: Option<String>,
}

/// The LLaVA parser: `true` = yes.
///
/// ```
/// use magma_eval::metrics::pope::llava_says_yes;
/// assert!(!llava_says_yes("No, there is not."));
/// assert!(llava_says_yes("Yes"));
/// assert!(llava_says_yes("NO")); // only `No`, `no` and `not` count
/// assert!(llava_says_yes("No!")); // split on spaces: the word is "No!"
/// ```
pub fn llava_says_yes(text: &str) -> bool {
    let first = text.split('.').next().unwrap_or("");
    let first = first.replace(',', "");
    !first
        .split(' ')
        .any(|w| w == "No" || w == "not" || w == "no")
}

/// The lmms-eval parser: `Some(true)` yes, `Some(false)` no, `None` neither.
pub fn lmms_answer(text: &str) -> Option<bool> {
    match text.to_lowercase().trim() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

#[derive(Default, Clone, Copy)]
struct Confusion {
    tp: usize,
    fp: usize,
    tn: usize,
    fn_: usize,
}

fn llava_metrics(items: &[(bool, bool)]) -> [f64; 5] {
    // items: (prediction yes, label yes)
    let mut c = Confusion::default();
    for &(p, l) in items {
        match (p, l) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, false) => c.tn += 1,
            (false, true) => c.fn_ += 1,
        }
    }
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    let precision = ratio(c.tp, c.tp + c.fp);
    let recall = ratio(c.tp, c.tp + c.fn_);
    let f1 = 2.0 * precision * recall / (precision + recall);
    let accuracy = ratio(c.tp + c.tn, items.len());
    let yes_ratio = ratio(c.tp + c.fp, items.len());
    [accuracy, precision, recall, f1, yes_ratio]
}

fn lmms_metrics(items: &[(Option<bool>, bool)]) -> [f64; 5] {
    let n = items.len();
    let correct = items.iter().filter(|(p, l)| *p == Some(*l)).count();
    let tp = items.iter().filter(|(p, l)| *l && *p == Some(true)).count();
    let fp = items
        .iter()
        .filter(|(p, l)| !*l && *p == Some(true))
        .count();
    let fn_ = items
        .iter()
        .filter(|(p, l)| *l && *p == Some(false))
        .count();
    let yes = items.iter().filter(|(_, l)| *l).count();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    [ratio(correct, n), precision, recall, f1, ratio(yes, n)]
}

const NAMES: [&str; 5] = ["accuracy", "precision", "recall", "f1", "yes_ratio"];

/// Per category (`adversarial`, `popular`, `random`) both parsers' `accuracy`, `precision`,
/// `recall`, `f1`, `yes_ratio` (lmms-eval's as `lmms_…`); top level the LLaVA values averaged
/// over the categories and the lmms-eval values pooled over every question.
pub fn score(pairs: &[(PopeReference, Option<PopePrediction>)]) -> Scores {
    // LLaVA maps every label that is not "no" to yes; lmms-eval lower-cases and strips it.
    let rows: Vec<(&str, bool, bool, Option<bool>, bool)> = pairs
        .iter()
        .map(|(r, p)| {
            let text = p.as_ref().and_then(|p| p.text.as_deref()).unwrap_or("");
            (
                r.category.as_str(),
                llava_says_yes(text),
                r.label != "no",
                lmms_answer(text),
                r.label.to_lowercase().trim() == "yes",
            )
        })
        .collect();
    let mut categories: Vec<&str> = CATEGORIES.to_vec();
    for row in &rows {
        if !categories.contains(&row.0) {
            categories.push(row.0);
        }
    }
    let mut scores = Scores::new();
    let mut per_category: Vec<[f64; 5]> = Vec::new();
    for cat in categories {
        let selected: Vec<_> = rows.iter().filter(|r| r.0 == cat).collect();
        if selected.is_empty() {
            continue;
        }
        let llava = llava_metrics(&selected.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>());
        let lmms = lmms_metrics(&selected.iter().map(|r| (r.3, r.4)).collect::<Vec<_>>());
        let mut s = Scores::new();
        for (name, v) in NAMES.iter().zip(llava) {
            s.insert(*name, 100.0 * v);
        }
        for (name, v) in NAMES.iter().zip(lmms) {
            s.insert(format!("lmms_{name}"), 100.0 * v);
        }
        s.insert("questions", selected.len() as f64);
        per_category.push(llava);
        scores.insert_group(cat, s);
    }
    for (k, name) in NAMES.iter().enumerate() {
        scores.insert(
            *name,
            100.0 * mean(&per_category.iter().map(|m| m[k]).collect::<Vec<_>>()),
        );
    }
    let lmms = lmms_metrics(&rows.iter().map(|r| (r.3, r.4)).collect::<Vec<_>>());
    for (name, v) in NAMES.iter().zip(lmms) {
        scores.insert(format!("lmms_{name}"), 100.0 * v);
    }
    scores.insert("questions", rows.len() as f64);
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parsers_on_the_worked_example() {
        // preds ["Yes", "No, there is not.", "yes"], GT [yes, no, no]
        let llava = llava_metrics(&[
            (llava_says_yes("Yes"), true),
            (llava_says_yes("No, there is not."), false),
            (llava_says_yes("yes"), false),
        ]);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(llava[0], 2.0 / 3.0) && close(llava[1], 0.5) && close(llava[2], 1.0));
        assert!(close(llava[3], 2.0 / 3.0) && close(llava[4], 2.0 / 3.0));
        let lmms = lmms_metrics(&[
            (lmms_answer("Yes"), true),
            (lmms_answer("No, there is not."), false),
            (lmms_answer("yes"), false),
        ]);
        // only the first answer is exactly the label
        assert!(close(lmms[0], 1.0 / 3.0));
        // TP 1, FP 1, FN 0 → P 0.5, R 1, F1 2/3; yes_ratio counts labels: 1/3
        assert!(close(lmms[1], 0.5) && close(lmms[2], 1.0) && close(lmms[3], 2.0 / 3.0));
        assert!(close(lmms[4], 1.0 / 3.0));
        // a non-yes/no answer is wrong for lmms accuracy and outside its confusion counts
        let lmms = lmms_metrics(&[
            (lmms_answer("Yes, a dog."), true),
            (lmms_answer(" no "), false),
        ]);
        assert!(close(lmms[0], 0.5) && lmms[1] == 0.0 && lmms[3] == 0.0);
    }
}
