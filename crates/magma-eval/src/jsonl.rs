//! JSON Lines input: numbered lines, typed records with errors that name the line and field, and
//! the join of predictions to references by key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::{EvalError, Result};

/// One non-blank line of a JSONL file, parsed as JSON.
#[derive(Debug, Clone)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    /// The parsed object.
    pub value: serde_json::Value,
}

/// The lines of a JSONL file (blank lines skipped).
#[derive(Debug, Clone)]
pub struct JsonlFile {
    /// Where the lines came from (for error messages).
    pub path: PathBuf,
    /// The lines in file order.
    pub lines: Vec<Line>,
}

impl JsonlFile {
    /// Reads and parses every line; a line that is not a JSON object is an error naming it.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let text = std::fs::read_to_string(&path).map_err(|source| EvalError::Io {
            path: path.clone(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses JSONL text; `path` only labels errors.
    ///
    /// ```
    /// use magma_eval::jsonl::JsonlFile;
    ///
    /// let err = JsonlFile::parse("preds.jsonl".into(), "{\"a\": 1}\n\n{oops\n").unwrap_err();
    /// assert!(err.to_string().starts_with("preds.jsonl:3: "));
    /// ```
    pub fn parse(path: PathBuf, text: &str) -> Result<Self> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let malformed = |message: String| EvalError::Malformed {
                path: path.clone(),
                line: i + 1,
                message,
            };
            let value: serde_json::Value =
                serde_json::from_str(raw).map_err(|e| malformed(format!("not valid JSON: {e}")))?;
            if !value.is_object() {
                return Err(malformed("expected a JSON object".into()));
            }
            lines.push(Line {
                number: i + 1,
                value,
            });
        }
        Ok(Self { path, lines })
    }

    /// Every line as a `T`, with the line number; a missing or mistyped field is an error naming
    /// the line and the field.
    pub fn records<T: DeserializeOwned>(&self) -> Result<Vec<(usize, T)>> {
        self.lines
            .iter()
            .map(|line| {
                T::deserialize(&line.value)
                    .map(|record| (line.number, record))
                    .map_err(|e| EvalError::Malformed {
                        path: self.path.clone(),
                        line: line.number,
                        message: e.to_string(),
                    })
            })
            .collect()
    }
}

/// References paired with their predictions (`None` = missing), plus what did not pair.
#[derive(Debug, Clone)]
pub struct Joined<R, P> {
    /// Every reference in file order with its prediction, if any.
    pub pairs: Vec<(R, Option<P>)>,
    /// Keys of references without a prediction line.
    pub missing: Vec<String>,
    /// Keys of predictions that match no reference (ignored in the scores).
    pub unknown: Vec<String>,
}

/// Joins predictions to references by key. Duplicate keys in either file are an error.
pub fn join<R, P>(
    refs: Vec<(usize, R)>,
    preds: Vec<(usize, P)>,
    ref_path: &Path,
    pred_path: &Path,
    ref_key: impl Fn(&R) -> String,
    pred_key: impl Fn(&P) -> String,
) -> Result<Joined<R, P>> {
    let mut by_key: HashMap<String, (usize, P)> = HashMap::with_capacity(preds.len());
    let mut pred_order = Vec::with_capacity(preds.len());
    for (line, pred) in preds {
        let key = pred_key(&pred);
        if let Some((first, _)) = by_key.get(&key) {
            return Err(EvalError::DuplicateKey {
                path: pred_path.to_path_buf(),
                line,
                first: *first,
                key,
            });
        }
        pred_order.push(key.clone());
        by_key.insert(key, (line, pred));
    }
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(refs.len());
    let mut pairs = Vec::with_capacity(refs.len());
    let mut missing = Vec::new();
    for (line, r) in refs {
        let key = ref_key(&r);
        if let Some(first) = seen.insert(key.clone(), line) {
            return Err(EvalError::DuplicateKey {
                path: ref_path.to_path_buf(),
                line,
                first,
                key,
            });
        }
        let pred = by_key.remove(&key).map(|(_, p)| p);
        if pred.is_none() {
            missing.push(key);
        }
        pairs.push((r, pred));
    }
    let unknown = pred_order
        .into_iter()
        .filter(|k| by_key.contains_key(k))
        .collect();
    Ok(Joined {
        pairs,
        missing,
        unknown,
    })
}

/// Deserializes an id given as a JSON string or integer (`"12"` and `12` are the same key).
pub fn id_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Int(i64),
    }
    Ok(match Id::deserialize(d)? {
        Id::Text(s) => s,
        Id::Int(i) => i.to_string(),
    })
}
