//! Benchmark scoring for Magma, equal to each benchmark's official code, and a runner over
//! benchmark files.
//!
//! * [`metrics`]: one module per benchmark (AITW, Mind2Web, ScreenSpot, VQAv2, TextVQA,
//!   ChartQA, POPE, TAP-Vid, SimplerEnv, LIBERO);
//! * [`score_files`]: references + predictions (JSON Lines, the official field names) →
//!   a [`Scores`] tree keyed by split and metric, plus what did not pair up;
//! * [`report`]: several runs side by side, Markdown and an HTML page with bar charts.
//!
//! ```
//! use magma_eval::{score_text, Benchmark};
//!
//! let refs = r#"{"question_id": 1, "label": "yes", "category": "random", "text": "Is there a dog?"}
//! {"question_id": 2, "label": "no", "category": "random", "text": "Is there a cat?"}"#;
//! let preds = r#"{"question_id": 1, "text": "Yes, there is a dog."}
//! {"question_id": 2, "text": "no"}"#;
//! let eval = score_text(Benchmark::Pope, refs, Some(preds))?;
//! assert_eq!(eval.scores.get("random.accuracy"), Some(100.0)); // LLaVA parser
//! assert_eq!(eval.scores.get("random.lmms_accuracy"), Some(50.0)); // lmms-eval: exact yes/no
//! # Ok::<(), magma_eval::EvalError>(())
//! ```

mod error;
pub mod jsonl;
pub mod metrics;
pub mod report;
pub mod run;
mod scores;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use error::{EvalError, Result};
pub use scores::{format_value, is_count, mean, percent, Node, Scores};

use jsonl::{join, JsonlFile};
use metrics::*;

/// A benchmark this crate scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Benchmark {
    Aitw,
    Mind2Web,
    ScreenSpot,
    Vqav2,
    TextVqa,
    ChartQa,
    Pope,
    TapVid,
    SimplerEnv,
    Libero,
}

impl Benchmark {
    /// Every benchmark, in the order of the docs.
    pub const ALL: [Benchmark; 10] = [
        Self::Aitw,
        Self::Mind2Web,
        Self::ScreenSpot,
        Self::Vqav2,
        Self::TextVqa,
        Self::ChartQa,
        Self::Pope,
        Self::TapVid,
        Self::SimplerEnv,
        Self::Libero,
    ];

    /// The command-line names, in [`Self::ALL`] order.
    pub const NAMES: [&'static str; 10] = [
        "aitw",
        "mind2web",
        "screenspot",
        "vqav2",
        "textvqa",
        "chartqa",
        "pope",
        "tapvid",
        "simplerenv",
        "libero",
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|b| *b == self).unwrap_or(0)]
    }

    /// Whether scoring needs a references file (the robot benchmarks score episodes alone).
    pub fn needs_references(self) -> bool {
        !matches!(self, Self::SimplerEnv | Self::Libero)
    }

    /// Reference fields only this benchmark's format has (to catch mixed files).
    fn reference_signature(self) -> &'static [&'static str] {
        match self {
            Self::Aitw => &["results/action_type", "episode_id"],
            Self::Mind2Web => &["action_uid", "annotation_id"],
            Self::ScreenSpot => &["img_filename", "data_type"],
            Self::Vqav2 => &["answer_type", "multiple_choice_answer", "question_type"],
            Self::TextVqa => &["set_name", "ocr_tokens"],
            Self::ChartQa => &["imgname"],
            Self::Pope => &["label", "category"],
            Self::TapVid => &["video_id", "query_points"],
            Self::SimplerEnv => &["protocol"],
            Self::Libero => &["suite"],
        }
    }

    /// The benchmark a reference line's fields say it belongs to, if any says so clearly.
    pub fn detect(value: &serde_json::Value) -> Option<Benchmark> {
        let object = value.as_object()?;
        Self::ALL.into_iter().find(|b| {
            let sig = b.reference_signature();
            // all of the first field's group must be present: the first key is decisive
            object.contains_key(sig[0])
                && (sig.len() == 1 || sig[1..].iter().any(|k| object.contains_key(*k)))
        })
    }
}

impl std::str::FromStr for Benchmark {
    type Err = EvalError;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase().replace(['-', '_'], "");
        Self::ALL
            .into_iter()
            .find(|b| b.name() == lower)
            .ok_or_else(|| EvalError::UnknownBenchmark(s.to_string()))
    }
}

impl std::fmt::Display for Benchmark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of scoring one prediction file.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub benchmark: Benchmark,
    /// Metric values by split.
    pub scores: Scores,
    /// Number of references scored.
    pub references: usize,
    /// Number of prediction lines read.
    pub predictions: usize,
    /// Keys of references that had no prediction (scored as wrong / unparsable).
    pub missing: Vec<String>,
    /// Keys of predictions that match no reference (ignored).
    pub unknown: Vec<String>,
}

impl Evaluation {
    /// Human-readable warnings about missing and unknown predictions (empty when all paired).
    pub fn warnings(&self) -> Vec<String> {
        let sample = |keys: &[String]| {
            let shown: Vec<&str> = keys.iter().take(5).map(|k| k.as_str()).collect();
            let more = if keys.len() > 5 { ", …" } else { "" };
            format!("{}{more}", shown.join(", ").replace('\u{1f}', " | "))
        };
        let mut out = Vec::new();
        if !self.missing.is_empty() {
            out.push(format!(
                "{} of {} references have no prediction and count as wrong: {}",
                self.missing.len(),
                self.references,
                sample(&self.missing)
            ));
        }
        if !self.unknown.is_empty() {
            out.push(format!(
                "{} predictions match no reference id and were ignored: {}",
                self.unknown.len(),
                sample(&self.unknown)
            ));
        }
        out
    }

    /// The whole result as one JSON object: benchmark, counts, warnings and `metrics`.
    pub fn to_json(&self) -> String {
        let list = |v: &[String]| {
            serde_json::to_string(
                &v.iter()
                    .map(|k| k.replace('\u{1f}', " | "))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default()
        };
        format!(
            "{{\"benchmark\": \"{}\", \"references\": {}, \"predictions\": {}, \"missing\": {}, \"unknown\": {}, \"warnings\": {}, \"metrics\": {}}}",
            self.benchmark,
            self.references,
            self.predictions,
            list(&self.missing),
            list(&self.unknown),
            serde_json::to_string(&self.warnings()).unwrap_or_default(),
            self.scores.to_json()
        )
    }
}

/// Scores a predictions file against a references file (the robot benchmarks take the episodes
/// file as `predictions` and optional real-robot results as `references`).
pub fn score_files(
    benchmark: Benchmark,
    references: Option<&Path>,
    predictions: &Path,
) -> Result<Evaluation> {
    let preds = JsonlFile::read(predictions)?;
    let refs = references.map(JsonlFile::read).transpose()?;
    score_parsed(benchmark, refs, preds)
}

/// [`score_files`] on in-memory JSONL text (for tests and examples).
pub fn score_text(
    benchmark: Benchmark,
    references: &str,
    predictions: Option<&str>,
) -> Result<Evaluation> {
    let refs = JsonlFile::parse(PathBuf::from("references"), references)?;
    match predictions {
        Some(p) => score_parsed(
            benchmark,
            Some(refs),
            JsonlFile::parse(PathBuf::from("predictions"), p)?,
        ),
        None => score_parsed(benchmark, None, refs),
    }
}

fn check_not_mixed(benchmark: Benchmark, file: &JsonlFile) -> Result<()> {
    for line in &file.lines {
        if let Some(found) = Benchmark::detect(&line.value) {
            // VQAv2 and TextVQA references both have plain `answers`; POPE lines are detected by
            // label+category only.
            if found != benchmark {
                return Err(EvalError::MixedBenchmarks {
                    path: file.path.clone(),
                    line: line.number,
                    expected: benchmark.name(),
                    found: found.name(),
                });
            }
        }
    }
    Ok(())
}

fn joined<R: DeserializeOwned, P: DeserializeOwned>(
    refs: &JsonlFile,
    preds: &JsonlFile,
    ref_key: impl Fn(&R) -> String,
    pred_key: impl Fn(&P) -> String,
) -> Result<jsonl::Joined<R, P>> {
    join(
        refs.records()?,
        preds.records()?,
        &refs.path,
        &preds.path,
        ref_key,
        pred_key,
    )
}

fn score_parsed(
    benchmark: Benchmark,
    refs: Option<JsonlFile>,
    preds: JsonlFile,
) -> Result<Evaluation> {
    let predictions = preds.lines.len();
    if !benchmark.needs_references() {
        check_not_mixed(benchmark, &preds)?;
        if preds.lines.is_empty() {
            return Err(EvalError::Empty(format!(
                "{}: no episodes",
                preds.path.display()
            )));
        }
        let scores = match benchmark {
            Benchmark::SimplerEnv => {
                let episodes: Vec<robot::SimplerEpisode> =
                    preds.records()?.into_iter().map(|(_, e)| e).collect();
                let real: Vec<robot::RealResult> = match &refs {
                    Some(r) => r.records()?.into_iter().map(|(_, e)| e).collect(),
                    None => Vec::new(),
                };
                robot::score_simpler(&episodes, &real).map_err(EvalError::Invalid)?
            }
            _ => {
                let episodes: Vec<robot::LiberoEpisode> =
                    preds.records()?.into_iter().map(|(_, e)| e).collect();
                robot::score_libero(&episodes)
            }
        };
        return Ok(Evaluation {
            benchmark,
            scores,
            references: 0,
            predictions,
            missing: Vec::new(),
            unknown: Vec::new(),
        });
    }
    let refs = refs
        .ok_or_else(|| EvalError::Invalid(format!("benchmark `{benchmark}` needs --references")))?;
    check_not_mixed(benchmark, &refs)?;
    if refs.lines.is_empty() {
        return Err(EvalError::Empty(format!(
            "{}: no references",
            refs.path.display()
        )));
    }
    macro_rules! run {
        ($r:ty, $p:ty, $rk:expr, $pk:expr, $score:expr) => {{
            let j = joined::<$r, $p>(&refs, &preds, $rk, $pk)?;
            let scores = $score(&j.pairs);
            (scores, j.pairs.len(), j.missing, j.unknown)
        }};
    }
    let (scores, references, missing, unknown) = match benchmark {
        Benchmark::Aitw => run!(
            aitw::AitwReference,
            aitw::AitwPrediction,
            |r| r.key(),
            |p| p.key(),
            aitw::score
        ),
        Benchmark::Mind2Web => run!(
            mind2web::Mind2WebReference,
            mind2web::Mind2WebPrediction,
            |r| r.key(),
            |p| p.key(),
            mind2web::score
        ),
        Benchmark::ScreenSpot => run!(
            screenspot::ScreenSpotReference,
            screenspot::ScreenSpotPrediction,
            |r| screenspot::key(&r.img_filename, &r.instruction),
            |p| screenspot::key(&p.img_filename, &p.instruction),
            screenspot::score
        ),
        Benchmark::Vqav2 => run!(
            vqa::Vqav2Reference,
            vqa::VqaPrediction,
            |r| r.question_id.clone(),
            |p| p.question_id.clone(),
            vqa::score_vqav2
        ),
        Benchmark::TextVqa => run!(
            vqa::TextVqaReference,
            vqa::VqaPrediction,
            |r| r.question_id.clone(),
            |p| p.question_id.clone(),
            vqa::score_textvqa
        ),
        Benchmark::ChartQa => run!(
            chartqa::ChartQaReference,
            chartqa::ChartQaPrediction,
            |r| chartqa::key(&r.imgname, &r.query),
            |p| chartqa::key(&p.imgname, &p.query),
            chartqa::score
        ),
        Benchmark::Pope => run!(
            pope::PopeReference,
            pope::PopePrediction,
            |r| r.question_id.clone(),
            |p| p.question_id.clone(),
            pope::score
        ),
        Benchmark::TapVid => {
            let j = joined::<tapvid::TapVidReference, tapvid::TapVidPrediction>(
                &refs,
                &preds,
                |r| r.video_id.clone(),
                |p| p.video_id.clone(),
            )?;
            let scores = tapvid::score(&j.pairs).map_err(EvalError::Invalid)?;
            (scores, j.pairs.len(), j.missing, j.unknown)
        }
        Benchmark::SimplerEnv | Benchmark::Libero => unreachable!("handled above"),
    };
    Ok(Evaluation {
        benchmark,
        scores,
        references,
        predictions,
        missing,
        unknown,
    })
}
