//! Runs side by side: a Markdown table and an HTML page with one bar chart (inline SVG) per
//! metric, with Magma-8B's published numbers as an anchor row.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::{format_value, is_count, Benchmark, EvalError, Result, Scores};

/// The paper's Magma-8B numbers (arXiv v1) on our key paths, per benchmark.
///
/// Tables 2 (zero-shot), 4 (Mind2Web, SeeClick protocol, column order Cross-Website |
/// Cross-Task | Cross-Domain), 5 (AITW), 7 (after SFT: ChartQA). Which POPE metric and parser
/// give 87.4 is not stated; it is shown against the LLaVA-parser accuracy.
pub fn paper_anchor(benchmark: Benchmark) -> Vec<(&'static str, f64)> {
    match benchmark {
        Benchmark::Aitw => vec![
            ("general.accuracy", 61.5),
            ("install.accuracy", 73.2),
            ("google_apps.accuracy", 62.7),
            ("single.accuracy", 77.5),
            ("web_shopping.accuracy", 61.7),
            ("accuracy", 67.3),
        ],
        Benchmark::Mind2Web => vec![
            ("test_website.seeclick_element_accuracy", 57.2),
            ("test_website.seeclick_operation_f1", 76.9),
            ("test_website.seeclick_step_success_rate", 45.4),
            ("test_task.seeclick_element_accuracy", 54.8),
            ("test_task.seeclick_operation_f1", 79.7),
            ("test_task.seeclick_step_success_rate", 43.4),
            ("test_domain.seeclick_element_accuracy", 55.7),
            ("test_domain.seeclick_operation_f1", 80.6),
            ("test_domain.seeclick_step_success_rate", 47.3),
        ],
        Benchmark::ScreenSpot => vec![
            ("mobile.text", 60.4),
            ("mobile.icon", 58.5),
            ("desktop.text", 75.3),
            ("desktop.icon", 52.9),
            ("web.text", 69.1),
            ("web.icon", 52.0),
            ("overall", 61.4),
        ],
        Benchmark::Vqav2 => vec![("accuracy", 80.0)],
        Benchmark::TextVqa => vec![("accuracy", 66.5)],
        Benchmark::ChartQa => vec![("relaxed_accuracy", 76.2)],
        Benchmark::Pope => vec![("accuracy", 87.4)],
        // Table 2: Google robot, the mean of the four tasks' (VA + VM) / 2.
        Benchmark::SimplerEnv => vec![("success_rate", 52.3)],
        Benchmark::TapVid | Benchmark::Libero => Vec::new(),
    }
}

/// One run: a label and its scores for one benchmark.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    pub benchmark: Benchmark,
    pub scores: Scores,
}

impl Run {
    /// Reads a run from a folder holding `scores.json` (as `magma eval run` writes it) or from
    /// such a JSON file itself (`magma eval score --json` output). The label is the folder name.
    pub fn load(path: &Path) -> Result<Self> {
        let file: PathBuf = if path.is_dir() {
            path.join("scores.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| EvalError::Io {
            path: file.clone(),
            source,
        })?;
        let invalid = |m: &str| EvalError::Invalid(format!("{}: {m}", file.display()));
        /// The metrics again, read in their written order.
        #[derive(serde::Deserialize)]
        struct Ordered {
            metrics: Scores,
        }
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(&format!("not JSON: {e}")))?;
        let ordered: Ordered = serde_json::from_str(&text)
            .map_err(|e| invalid(&format!("no `metrics` object: {e}")))?;
        let benchmark: Benchmark = value
            .get("benchmark")
            .and_then(|b| b.as_str())
            .ok_or_else(|| invalid("no `benchmark` field"))?
            .parse()?;
        let scores = ordered.metrics;
        let label = value
            .get("label")
            .and_then(|l| l.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let named = if path.is_dir() {
                    path
                } else {
                    path.parent().unwrap_or(path)
                };
                named.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            });
        Ok(Self {
            label,
            benchmark,
            scores,
        })
    }
}

/// Counts and spreads are left out of reports.
fn is_chartable(key: &str) -> bool {
    !is_count(key) && !key.ends_with("_std")
}

/// The per-split metrics a report shows (the full set is in each run's scores.json).
fn headline(benchmark: Benchmark) -> &'static [&'static str] {
    match benchmark {
        Benchmark::Aitw => &["accuracy"],
        Benchmark::Mind2Web => &[
            "seeclick_element_accuracy",
            "seeclick_operation_f1",
            "seeclick_step_success_rate",
            "element_accuracy",
            "step_success_rate",
        ],
        Benchmark::ScreenSpot => &["text", "icon"],
        Benchmark::Vqav2 => &["accuracy"],
        Benchmark::ChartQa => &["relaxed_accuracy"],
        Benchmark::TapVid => &["average_jaccard"],
        Benchmark::SimplerEnv | Benchmark::Libero => &["success_rate"],
        Benchmark::TextVqa | Benchmark::Pope => &[],
    }
}

/// Metrics shown for a benchmark: the anchor's keys first, then the runs' whole-benchmark
/// values and their headline per-split values, in first-seen order.
fn columns(benchmark: Benchmark, runs: &[&Run]) -> Vec<String> {
    let mut keys: Vec<String> = paper_anchor(benchmark)
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    for run in runs {
        for (k, _) in run.scores.flatten() {
            let shown = match k.rsplit_once('.') {
                None => true,
                Some((_, metric)) => headline(benchmark).contains(&metric),
            };
            if shown && is_chartable(&k) && !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

const ANCHOR_LABEL: &str = "Magma-8B (paper)";

/// Rows of one benchmark's table: every run, then the anchor.
fn rows(benchmark: Benchmark, runs: &[&Run], keys: &[String]) -> Vec<(String, Vec<Option<f64>>)> {
    let mut out: Vec<(String, Vec<Option<f64>>)> = runs
        .iter()
        .map(|r| {
            (
                r.label.clone(),
                keys.iter()
                    .map(|k| r.scores.get(k).filter(|v| v.is_finite()))
                    .collect(),
            )
        })
        .collect();
    let anchor = paper_anchor(benchmark);
    if !anchor.is_empty() {
        out.push((
            ANCHOR_LABEL.into(),
            keys.iter()
                .map(|k| anchor.iter().find(|(a, _)| a == k).map(|(_, v)| *v))
                .collect(),
        ));
    }
    out
}

fn benchmarks_of(runs: &[Run]) -> Vec<Benchmark> {
    let mut out = Vec::new();
    for r in runs {
        if !out.contains(&r.benchmark) {
            out.push(r.benchmark);
        }
    }
    out
}

/// Markdown: one table per benchmark, runs as rows, metrics as columns.
pub fn markdown(runs: &[Run]) -> String {
    let mut out = String::new();
    for benchmark in benchmarks_of(runs) {
        let selected: Vec<&Run> = runs.iter().filter(|r| r.benchmark == benchmark).collect();
        let keys = columns(benchmark, &selected);
        let _ = writeln!(out, "### {benchmark}\n");
        let _ = writeln!(out, "| run | {} |", keys.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(keys.len()));
        for (label, values) in rows(benchmark, &selected, &keys) {
            let cells: Vec<String> = values
                .iter()
                .map(|v| v.map_or_else(|| "–".into(), format_value))
                .collect();
            let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
        }
        out.push('\n');
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 6] = [
    "#2f6fb0", "#e07b28", "#3a9a5b", "#8a5cc2", "#c2455a", "#6b7785",
];
const ANCHOR_COLOR: &str = "#b8b8b8";

/// One horizontal bar chart (inline SVG): a bar per run, values in percent on a 0–100 axis
/// (wider when a value exceeds 100).
fn bar_chart(title: &str, bars: &[(String, Option<f64>, &str)]) -> String {
    let (label_w, bar_w, row_h) = (170.0, 300.0, 22.0);
    let max = bars.iter().filter_map(|b| b.1).fold(100.0f64, f64::max);
    let height = 30.0 + row_h * bars.len() as f64 + 8.0;
    let width = label_w + bar_w + 60.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{t}\">\
<text x=\"4\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{t}</text>",
        t = escape(title)
    );
    for (i, (label, value, color)) in bars.iter().enumerate() {
        let y = 26.0 + row_h * i as f64;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            label_w - 6.0,
            y + 14.0,
            escape(label)
        );
        match value {
            Some(v) => {
                let w = (v.max(0.0) / max * bar_w).max(1.0);
                let _ = write!(
                    svg,
                    "<rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{color}\"/>\
<text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}</text>",
                    row_h - 6.0,
                    label_w + w + 4.0,
                    y + 13.0,
                    format_value(*v)
                );
            }
            None => {
                let _ = write!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#888\">n/a</text>",
                    label_w + 4.0,
                    y + 13.0
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A self-contained HTML page: per benchmark the Markdown-equivalent table and one bar chart
/// per metric.
pub fn html(runs: &[Run]) -> String {
    let mut body = String::new();
    for benchmark in benchmarks_of(runs) {
        let selected: Vec<&Run> = runs.iter().filter(|r| r.benchmark == benchmark).collect();
        let keys = columns(benchmark, &selected);
        let table_rows = rows(benchmark, &selected, &keys);
        let _ = write!(
            body,
            "<h2>{benchmark}</h2><div class=\"wide\"><table><tr><th>run</th>"
        );
        for k in &keys {
            let _ = write!(body, "<th>{}</th>", escape(k));
        }
        body.push_str("</tr>");
        for (label, values) in &table_rows {
            let class = if label == ANCHOR_LABEL {
                " class=\"anchor\""
            } else {
                ""
            };
            let _ = write!(body, "<tr{class}><td>{}</td>", escape(label));
            for v in values {
                let _ = write!(
                    body,
                    "<td>{}</td>",
                    v.map_or_else(|| "–".into(), format_value)
                );
            }
            body.push_str("</tr>");
        }
        body.push_str("</table></div><div class=\"charts\">");
        for (k, key) in keys.iter().enumerate() {
            let bars: Vec<(String, Option<f64>, &str)> = table_rows
                .iter()
                .enumerate()
                .map(|(i, (label, values))| {
                    let color = if label == ANCHOR_LABEL {
                        ANCHOR_COLOR
                    } else {
                        COLORS[i % COLORS.len()]
                    };
                    (label.clone(), values[k], color)
                })
                .collect();
            if bars.iter().any(|b| b.1.is_some()) {
                body += &bar_chart(key, &bars);
            }
        }
        body.push_str("</div>");
    }
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>magma eval report</title><style>\
body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:8px 0 16px}}\
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
tr.anchor td{{color:#666;font-style:italic}}.charts{{display:flex;flex-wrap:wrap;gap:12px}}\
.charts svg{{border:1px solid #eee;background:#fcfcfc}}.wide{{overflow-x:auto}}</style></head><body><h1>magma eval report</h1>\
<p>Values in percent. Grey rows and bars: the paper's Magma-8B numbers (arXiv v1), for reference.</p>{body}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, accuracy: f64) -> Run {
        let mut general = Scores::new();
        general.insert("accuracy", accuracy);
        general.insert("steps", 10.0);
        let mut scores = Scores::new();
        scores.insert_group("general", general);
        scores.insert("accuracy", accuracy);
        Run {
            label: label.into(),
            benchmark: Benchmark::Aitw,
            scores,
        }
    }

    #[test]
    fn markdown_lists_runs_and_the_anchor() {
        let md = markdown(&[run("a", 50.0), run("b", 62.5)]);
        assert!(md.contains("| a | 50.00 | – | – | – | – | 50.00 |"), "{md}");
        assert!(
            md.contains("| Magma-8B (paper) | 61.50 | 73.20 | 62.70 | 77.50 | 61.70 | 67.30 |"),
            "{md}"
        );
        assert!(!md.contains("steps"));
    }

    #[test]
    fn a_run_loads_with_its_metrics_in_written_order() {
        let dir = std::env::temp_dir().join(format!("magma-eval-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("scores.json"),
            r#"{"benchmark": "screenspot", "metrics": {"web": {"text": 50.0, "icon": null}, "overall": 50.0}}"#,
        )
        .unwrap();
        let run = Run::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(run.benchmark, Benchmark::ScreenSpot);
        let keys: Vec<String> = run.scores.flatten().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["web.text", "web.icon", "overall"]);
        assert!(run.label.starts_with("magma-eval-report-"));
    }

    #[test]
    fn html_has_one_chart_per_metric_with_values() {
        let page = html(&[run("a", 50.0)]);
        // 6 anchor metrics (only general.accuracy and accuracy have run values too)
        assert_eq!(page.matches("<svg").count(), 6);
        assert!(page.contains(">62.70</text>"));
    }
}
