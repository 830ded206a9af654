//! ChartQA relaxed accuracy (lmms-eval `tasks/chartqa/utils.py`, from Qwen-VL's
//! `evaluate_vqa.py`): a numeric answer is right within 5 % of a non-zero numeric target,
//! anything else needs a case-insensitive exact match.

use serde::Deserialize;

use crate::scores::{mean, Scores};

/// The largest relative error a numeric answer may have.
pub const MAX_RELATIVE_CHANGE: f64 = 0.05;

/// One reference question.
#[derive(Debug, Clone, Deserialize)]
pub struct ChartQaReference {
    pub imgname: String,
    pub query: String,
    pub label: String,
    /// `human_test` or `augmented_test`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One prediction (the raw answer, not trimmed).
#[derive(Debug, Clone, Deserialize)]
pub struct ChartQaPrediction {
    pub imgname: String,
    pub query: String,
    pub prediction: Option<String>,
}

/// The join key: image name and query.
pub fn key(imgname: &str, query: &str) -> String {
    format!("{imgname}\u{1f}{query}")
}

/// Python's `float(text)`: surrounding whitespace allowed, `_` only between digits, `inf`,
/// `nan`, `infinity` in any case, a sign; nothing else.
pub fn python_float(text: &str) -> Option<f64> {
    let t = text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c));
    let chars: Vec<char> = t.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let digit = |j: Option<usize>| {
                j.and_then(|j| chars.get(j))
                    .is_some_and(char::is_ascii_digit)
            };
            if !digit(i.checked_sub(1)) || !digit(Some(i + 1)) {
                return None;
            }
        }
    }
    let cleaned: String = chars.iter().filter(|&&c| c != '_').collect();
    let body = cleaned.trim_start_matches(['+', '-']);
    // Rust also accepts forms Python rejects only in exotic cases; reject a second sign.
    if cleaned.len() - body.len() > 1 {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return cleaned.parse().ok();
    }
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    cleaned.parse().ok()
}

/// `_to_float` of the official code: a trailing `%` (all of them, `rstrip`) divides by 100.
fn to_float(text: &str) -> Option<f64> {
    match text.strip_suffix('%') {
        Some(_) => python_float(text.trim_end_matches('%')).map(|v| v / 100.0),
        None => python_float(text),
    }
}

/// `relaxed_correctness(prediction, target)`.
///
/// ```
/// use magma_eval::metrics::chartqa::relaxed_correctness;
/// assert!(relaxed_correctness("10.4", "10"));
/// assert!(!relaxed_correctness("10.6", "10"));
/// assert!(relaxed_correctness("45%", "0.45"));
/// assert!(!relaxed_correctness("45", "45%"));
/// assert!(relaxed_correctness("0", "0")); // zero target: string comparison
/// assert!(relaxed_correctness("Blue", "blue"));
/// ```
pub fn relaxed_correctness(prediction: &str, target: &str) -> bool {
    let p = to_float(prediction);
    let t = to_float(target);
    match (p, t) {
        // `if prediction_float is not None and target_float:` — a zero target is falsy.
        (Some(p), Some(t)) if t != 0.0 => (p - t).abs() / t.abs() <= MAX_RELATIVE_CHANGE,
        _ => prediction.to_lowercase() == target.to_lowercase(),
    }
}

/// `relaxed_accuracy` over all questions, and per test file (`human`, `augmented`).
pub fn score(pairs: &[(ChartQaReference, Option<ChartQaPrediction>)]) -> Scores {
    let outcomes: Vec<(&str, f64)> = pairs
        .iter()
        .map(|(r, p)| {
            let pred = p
                .as_ref()
                .and_then(|p| p.prediction.as_deref())
                .unwrap_or("");
            let split = if r.kind == "human_test" {
                "human"
            } else {
                "augmented"
            };
            (
                split,
                f64::from(u8::from(relaxed_correctness(pred, &r.label))),
            )
        })
        .collect();
    let mut scores = Scores::new();
    scores.insert(
        "relaxed_accuracy",
        100.0 * mean(&outcomes.iter().map(|o| o.1).collect::<Vec<_>>()),
    );
    for split in ["human", "augmented"] {
        let v: Vec<f64> = outcomes
            .iter()
            .filter(|o| o.0 == split)
            .map(|o| o.1)
            .collect();
        if !v.is_empty() {
            let mut s = Scores::new();
            s.insert("relaxed_accuracy", 100.0 * mean(&v));
            s.insert("questions", v.len() as f64);
            scores.insert_group(split, s);
        }
    }
    scores.insert("questions", outcomes.len() as f64);
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_semantics() {
        assert_eq!(python_float(" 12\n"), Some(12.0));
        assert_eq!(python_float("1_000.5"), Some(1000.5));
        assert_eq!(python_float("1__0"), None);
        assert_eq!(python_float("_1"), None);
        assert_eq!(python_float("1e3"), Some(1000.0));
        assert_eq!(python_float(".5"), Some(0.5));
        assert_eq!(python_float("1,000"), None);
        assert_eq!(python_float("$5"), None);
        assert!(python_float("NaN").unwrap().is_nan());
        // a NaN target compares false; the exact-match fallback is not taken
        assert!(!relaxed_correctness("nan", "nan"));
        // "10%%" strips every trailing %
        assert!(relaxed_correctness("10%%", "0.1"));
        // whitespace is fine for float() but not for the string fallback
        assert!(relaxed_correctness(" 10\n", "10"));
        assert!(!relaxed_correctness(" blue", "blue"));
    }
}
