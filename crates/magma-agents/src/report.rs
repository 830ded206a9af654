//! The HTML report of a web-agent run: every step's marked screenshot with the executed action
//! drawn on it (a crosshair at the point, the acted-on element outlined), the prompt, the answer
//! and the outcome.

use crate::web::{Outcome, RunSummary, StepRecord};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the report (image paths relative to the report's folder).
pub fn render(records: &[StepRecord], summary: &RunSummary) -> String {
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>magma agent report</title><style>\
         body{font:14px system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}\
         .step{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px;margin:0 0 16px}\
         .shot{position:relative;display:inline-block;max-width:100%}\
         .shot img{display:block;max-width:100%;height:auto}\
         .shot svg{position:absolute;left:0;top:0;width:100%;height:100%}\
         .ok{color:#0a7d28}.bad{color:#b3261e}pre{white-space:pre-wrap;background:#f3f3f3;padding:6px;margin:4px 0}\
         </style>",
    );
    html += &format!(
        "<h1>magma agent</h1><p><b>{}</b> step(s), stop: {}, final URL <code>{}</code>{}</p>",
        summary.steps,
        escape(&summary.stop_reason),
        escape(&summary.final_url),
        summary
            .answer
            .as_ref()
            .map(|a| format!(", answer <b>{}</b>", escape(a)))
            .unwrap_or_default()
    );
    for r in records {
        let good = matches!(r.outcome, Outcome::Executed | Outcome::Stopped);
        let outcome = serde_json::to_string(&r.outcome).unwrap_or_default();
        html += &format!(
            "<div class=step><h2>Step {} <span class={}>{}</span></h2><p><code>{}</code></p>",
            r.step,
            if good { "ok" } else { "bad" },
            escape(outcome.trim_matches('"')),
            escape(&r.url)
        );
        if let Some(marked) = &r.marked_screenshot {
            let [w, h] = r.screenshot_size;
            html += &format!(
                "<div class=shot><img src=\"{}\" width={w} height={h}><svg viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\">",
                escape(marked)
            );
            if let Some(executed) = &r.executed {
                if let Some(e) = executed.mark.and_then(|m| r.elements.get(m)) {
                    let [x1, y1, x2, y2] = e.bbox;
                    html += &format!(
                        "<rect x=\"{x1}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#1e6bff\" stroke-width=\"4\" />",
                        x2 - x1,
                        y2 - y1
                    );
                }
                if let Some([x, y]) = executed.point {
                    let r0 = (f64::from(w.max(h)) / 80.0).max(8.0);
                    html += &format!(
                        "<circle cx=\"{x}\" cy=\"{y}\" r=\"{r0}\" fill=\"rgba(30,107,255,.35)\" stroke=\"#1e6bff\" stroke-width=\"3\" />\
                         <line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#1e6bff\" stroke-width=\"2\" />\
                         <line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#1e6bff\" stroke-width=\"2\" />",
                        x - 2.0 * r0,
                        x + 2.0 * r0,
                        y - 2.0 * r0,
                        y + 2.0 * r0
                    );
                }
            }
            html += "</svg></div>";
        }
        if let Some(executed) = &r.executed {
            html += &format!("<p>Executed: <b>{}</b></p>", escape(&executed.description));
        }
        if let Some(reason) = &r.reason {
            html += &format!("<p class=bad>{}</p>", escape(reason));
        }
        if let Some(note) = &r.settle_note {
            html += &format!("<p class=bad>{}</p>", escape(note));
        }
        if let Some(answer) = &r.raw_answer {
            html += &format!("<p>Answer:</p><pre>{}</pre>", escape(answer));
        }
        html += &format!(
            "<details><summary>prompt, {} element(s), timing</summary><pre>{}</pre><pre>{}</pre></details></div>",
            r.elements.len(),
            escape(&r.prompt),
            escape(&serde_json::to_string(&r.timing).unwrap_or_default())
        );
    }
    html
}
