//! An ordered tree of named metric values: what every benchmark's scorer returns.
//!
//! Key paths name the split (`google_apps`, `test_task`, `yes/no`, …) and then the metric in plain
//! words (`accuracy`, `element_accuracy`, …); whole-benchmark values sit at the top level.

use std::fmt::Write as _;

/// One entry of a [`Scores`] tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A metric value.
    Value(f64),
    /// A split or category with its own metrics.
    Group(Scores),
}

/// Metric values in insertion order (splits in the order the benchmark defines them).
///
/// ```
/// use magma_eval::Scores;
///
/// let mut split = Scores::new();
/// split.insert("accuracy", 61.5);
/// let mut all = Scores::new();
/// all.insert_group("general", split);
/// all.insert("accuracy", 61.5);
/// assert_eq!(all.get("general.accuracy"), Some(61.5));
/// assert_eq!(all.to_json(), r#"{"general": {"accuracy": 61.5}, "accuracy": 61.5}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    entries: Vec<(String, Node)>,
}

impl Scores {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` (replacing an earlier value of that key in place).
    pub fn insert(&mut self, key: impl Into<String>, value: f64) {
        self.set(key.into(), Node::Value(value));
    }

    /// Sets `key` to a sub-tree.
    pub fn insert_group(&mut self, key: impl Into<String>, group: Scores) {
        self.set(key.into(), Node::Group(group));
    }

    fn set(&mut self, key: String, node: Node) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = node,
            None => self.entries.push((key, node)),
        }
    }

    /// The entries in order.
    pub fn entries(&self) -> &[(String, Node)] {
        &self.entries
    }

    /// Whether the tree has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value at a `.`-separated key path (`test_task.step_success_rate`).
    pub fn get(&self, path: &str) -> Option<f64> {
        let (head, rest) = match path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (path, None),
        };
        let node = &self.entries.iter().find(|(k, _)| k == head)?.1;
        match (node, rest) {
            (Node::Value(v), None) => Some(*v),
            (Node::Group(g), Some(rest)) => g.get(rest),
            _ => None,
        }
    }

    /// Every value with its full `.`-joined key path, depth first in order.
    pub fn flatten(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        self.flatten_into("", &mut out);
        out
    }

    fn flatten_into(&self, prefix: &str, out: &mut Vec<(String, f64)>) {
        for (key, node) in &self.entries {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match node {
                Node::Value(v) => out.push((path, *v)),
                Node::Group(g) => g.flatten_into(&path, out),
            }
        }
    }

    /// The tree as one JSON object, keys in order. Non-finite values (an empty split) are `null`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (key, node)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out += &serde_json::Value::String(key.clone()).to_string();
            out.push_str(": ");
            match node {
                Node::Value(v) => out += &json_number(*v),
                Node::Group(g) => out += &g.to_json(),
            }
        }
        out.push('}');
        out
    }

    /// Reads a tree back from JSON text written by [`Scores::to_json`], keys in their order.
    /// `null` reads as NaN; strings, booleans and arrays are skipped.
    ///
    /// ```
    /// use magma_eval::Scores;
    /// let s = Scores::parse_json(r#"{"web": {"text": 50.0}, "overall": null, "note": "x"}"#).unwrap();
    /// assert_eq!(s.flatten()[0], ("web.text".to_string(), 50.0));
    /// assert!(s.get("overall").unwrap().is_nan());
    /// ```
    pub fn parse_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads a tree back from a parsed JSON object (keys sorted, as serde_json keeps them).
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let object = value.as_object()?;
        let mut scores = Scores::new();
        for (key, v) in object {
            match v {
                serde_json::Value::Number(n) => scores.insert(key.clone(), n.as_f64()?),
                serde_json::Value::Null => scores.insert(key.clone(), f64::NAN),
                serde_json::Value::Object(_) => {
                    scores.insert_group(key.clone(), Scores::from_json(v)?)
                }
                _ => {}
            }
        }
        Some(scores)
    }

    /// A two-column Markdown table (`metric | value`), values with two decimals.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("| metric | value |\n|---|---:|\n");
        for (path, v) in self.flatten() {
            let shown = if is_count(&path) && v.is_finite() {
                format!("{v:.0}")
            } else {
                format_value(v)
            };
            let _ = writeln!(out, "| {path} | {shown} |");
        }
        out
    }
}

/// A metric as the tables print it: two decimals, `–` when undefined.
pub fn format_value(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "–".into()
    }
}

/// Whether a key path names a count (`steps`, `questions`, …) rather than a rate.
pub fn is_count(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    matches!(
        last,
        "steps"
            | "episodes"
            | "questions"
            | "instructions"
            | "videos"
            | "seeds"
            | "unparsed"
            | "policies"
            | "tasks"
            | "seeclick_steps"
    )
}

fn json_number(v: f64) -> String {
    if v.is_finite() {
        serde_json::Number::from_f64(v).map_or("null".into(), |n| n.to_string())
    } else {
        "null".into()
    }
}

/// `part / whole` in percent, NaN when `whole` is 0.
pub fn percent(part: f64, whole: f64) -> f64 {
    if whole == 0.0 {
        f64::NAN
    } else {
        100.0 * part / whole
    }
}

/// The mean of `values`, NaN when empty.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Deserializes a JSON object into a tree in the object's key order.
impl<'de> serde::Deserialize<'de> for Scores {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Scores;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of metric values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Scores, A::Error> {
                let mut scores = Scores::new();
                while let Some(key) = map.next_key::<String>()? {
                    match map.next_value::<Entry>()? {
                        Entry::Number(v) => scores.insert(key, v),
                        Entry::Null => scores.insert(key, f64::NAN),
                        Entry::Group(g) => scores.insert_group(key, g),
                        Entry::Other(_) => {}
                    }
                }
                Ok(scores)
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Entry {
    Number(f64),
    Null,
    Group(Scores),
    Other(serde::de::IgnoredAny),
}
