//! `magma eval run`: build Magma's prompt for every benchmark record, ask a model, parse the
//! answer with `magma-actions` into the benchmark's prediction format, append it to
//! `predictions.jsonl` (resumable: a rerun skips what is done), then score.
//!
//! The model is anything implementing [`Answerer`] (the CLI adapts the local runtime and
//! OpenAI-compatible endpoints), so this crate stays free of the model runtime.
//!
//! Prompts per benchmark (the wording of the code each benchmark's Magma numbers come from):
//!
//! | benchmark | image | prompt | tokens |
//! |---|---|---|---|
//! | screenspot | `img_filename`, Set-of-Mark from `som_boxes` when given | UI agent's `ui_grounding` | 128 |
//! | aitw | `image` or `{episode_id}_{step_id}.png`, Set-of-Mark from the UI annotations | Magma-AITW-SoM step prompt, ground-truth history | 128 |
//! | mind2web | `image` or `{annotation_id}-{action_uid}.jpg` | SeeClick's `mind2web_test.py` prompt, last 4 ground-truth actions | 128 |
//! | vqav2 | `image` or `COCO_val2014_{image_id:012}.jpg` | lmms-eval `{question}\nAnswer the question using a single word or phrase.` | 16 |
//! | textvqa | `image` or `{image_id}.jpg` | lmms-eval, the question `capitalize()`d, same suffix | 1024 (Magma's adapter default) |
//! | chartqa | `imgname` | lmms-eval `{query}\nAnswer the question with a single word.` | 16 |
//! | pope | `image` | lmms-eval `{text}\nAnswer the question using a single word or phrase.` | 128 |

use std::collections::HashSet;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use image::RgbImage;
use magma_actions::prompts::{ui_grounding, AitwStep, IMAGE_TOKEN};
use magma_actions::ui::{resolve_click, AitwAction, MarkBoxes, Mind2WebAction, Mind2WebOp};
use magma_marks::{mark_screenshot, CandidateBox, SomOptions};
use serde_json::{json, Value};

use crate::jsonl::JsonlFile;
use crate::metrics::{aitw, mind2web, screenspot};
use crate::{Benchmark, EvalError, Evaluation, Result};

/// One question to the model: a user text whose `<image>` placeholders stand for `images`.
#[derive(Debug, Clone)]
pub struct Request {
    pub text: String,
    pub images: Vec<RgbImage>,
    pub max_new_tokens: usize,
}

/// A model that answers [`Request`]s (the local runtime, an endpoint, or a test double).
pub trait Answerer {
    /// The raw answer text, or an error message (recorded, and the record scored as wrong).
    fn answer(&mut self, request: &Request) -> std::result::Result<String, String>;
}

/// Options of [`run`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only the first `limit` records of the data file.
    pub limit: Option<usize>,
    /// Overrides every benchmark's token budget.
    pub max_new_tokens: Option<usize>,
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Records in scope (after `--limit`).
    pub total: usize,
    /// Records already in `predictions.jsonl` and skipped.
    pub resumed: usize,
    /// Records answered in this run.
    pub answered: usize,
    /// Answers the model failed to give (errors), recorded as unparsable predictions.
    pub failed: usize,
    /// The scores of all predictions in scope.
    pub evaluation: Evaluation,
}

/// Progress of a run, reported after each record.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

/// A record turned into a request, plus what parsing its answer needs.
struct Prepared {
    key: String,
    request: Request,
    parse: ParseContext,
}

enum ParseContext {
    ScreenSpot {
        boxes: MarkBoxes,
        width: u32,
        height: u32,
    },
    /// `(y, x, h, w)` normalised boxes of the marks, in mark order.
    Aitw {
        marks: Vec<[f64; 4]>,
    },
    /// Candidate `backend_node_id`s by rank (mark k = k-th ranked candidate).
    Mind2Web {
        candidates: Vec<String>,
    },
    Text,
}

fn invalid(path: &Path, line: usize, message: String) -> EvalError {
    EvalError::Malformed {
        path: path.to_path_buf(),
        line,
        message,
    }
}

fn load_image(images: &Path, name: &str, data: &Path, line: usize) -> Result<RgbImage> {
    let path = images.join(name);
    image::open(&path)
        .map(|i| i.to_rgb8())
        .map_err(|e| invalid(data, line, format!("image {}: {e}", path.display())))
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Python's `str.capitalize()`: first character upper-case, the rest lower-case.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// The SeeClick string of a Mind2Web ground-truth step (its `action2step`), for the history.
fn seeclick_history_step(r: &mind2web::Mind2WebReference) -> String {
    let point = match (r.bbox, r.img_size) {
        (Some(b), Some([w, h])) => {
            let x = format!("{:.3}", (b.x + b.width / 2.0) / w)
                .parse::<f64>()
                .unwrap_or(0.0);
            let y = format!("{:.3}", (b.y + b.height / 2.0) / h)
                .parse::<f64>()
                .unwrap_or(0.0);
            format!("({x:.2},{y:.2})")
        }
        _ => "(0.00,0.00)".into(),
    };
    let op = r
        .operation
        .original_op
        .as_deref()
        .unwrap_or(&r.operation.op);
    match op {
        "SELECT" => format!(
            "{{\"action_type\": 2, \"click_point\": {point}, \"value\": \"{}\"}}",
            r.operation.value
        ),
        "TYPE" => format!(
            "{{\"action_type\": 3, \"click_point\": {point}, \"value\": \"{}\"}}",
            r.operation.value
        ),
        _ => format!("{{\"action_type\": 4, \"click_point\": {point}}}"),
    }
}

/// A ground-truth AITW step written as Magma's JSON action, for the history.
fn aitw_history_step(r: &aitw::AitwReference) -> String {
    use aitw::action_type::*;
    let action = match r.action_type {
        DUAL_POINT if aitw::is_tap(r.yx_touch, r.yx_lift) => AitwAction::TapPoint {
            x: (r.yx_touch[1] * 100.0).round() / 100.0,
            y: (r.yx_touch[0] * 100.0).round() / 100.0,
            key: magma_actions::ui::aitw::CoordinateKey::NormalizedCoordinate,
        },
        DUAL_POINT => {
            let direction = magma_actions::ui::aitw::swipe_direction(r.yx_touch, r.yx_lift);
            AitwAction::Swipe {
                direction: direction.into(),
            }
        }
        TYPE => AitwAction::Type {
            text: r.type_action.clone(),
        },
        PRESS_BACK | PRESS_HOME | PRESS_ENTER => AitwAction::Navigate {
            button: match r.action_type {
                PRESS_BACK => "BACK",
                PRESS_HOME => "HOME",
                _ => "ENTER",
            }
            .into(),
            key: magma_actions::ui::aitw::NavigateKey::Navigate,
        },
        STATUS_TASK_IMPOSSIBLE => AitwAction::SetTaskStatus {
            status: "IMPOSSIBLE".into(),
        },
        _ => AitwAction::SetTaskStatus {
            status: "COMPLETE".into(),
        },
    };
    action.format()
}

fn mark_boxes(image: &RgbImage, boxes_xyxy_norm: &[[f64; 4]]) -> Result<(RgbImage, MarkBoxes)> {
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let candidates: Vec<CandidateBox> = boxes_xyxy_norm
        .iter()
        .map(|b| CandidateBox::from_xyxy(b[0] * w, b[1] * h, b[2] * w, b[3] * h))
        .collect();
    let som = mark_screenshot(image, &candidates, &SomOptions::default())
        .map_err(|e| EvalError::Invalid(format!("Set-of-Mark drawing failed: {e}")))?;
    let boxes = som
        .marks
        .iter()
        .map(|m| (m.id as u32, m.bbox_normalized))
        .collect();
    Ok((som.image, boxes))
}

/// Builds the request for record `index` of `records` (earlier records give the history).
fn prepare(
    benchmark: Benchmark,
    records: &[(usize, Value)],
    index: usize,
    images: &Path,
    data: &Path,
) -> Result<Prepared> {
    let (line, value) = (records[index].0, &records[index].1);
    let parse_as = |e: serde_json::Error| invalid(data, line, e.to_string());
    let vqa_suffix = "\nAnswer the question using a single word or phrase.";
    let text_request = |key: String, image: RgbImage, text: String, tokens: usize| Prepared {
        key,
        request: Request {
            text: format!("{IMAGE_TOKEN}\n{text}"),
            images: vec![image],
            max_new_tokens: tokens,
        },
        parse: ParseContext::Text,
    };
    Ok(match benchmark {
        Benchmark::ScreenSpot => {
            let r: screenspot::ScreenSpotReference = serde_json::from_value(value.clone()).map_err(parse_as)?;
            let image = load_image(images, &r.img_filename, data, line)?;
            let (width, height) = image.dimensions();
            let som: Option<Vec<[f64; 4]>> = value
                .get("som_boxes")
                .map(|b| serde_json::from_value(b.clone()).map_err(parse_as))
                .transpose()?;
            let (image, boxes) = match som {
                Some(b) => mark_boxes(&image, &b)?,
                None => (image, MarkBoxes::new()),
            };
            Prepared {
                key: screenspot::key(&r.img_filename, &r.instruction),
                request: Request {
                    text: ui_grounding(&r.instruction),
                    images: vec![image],
                    max_new_tokens: 128,
                },
                parse: ParseContext::ScreenSpot { boxes, width, height },
            }
        }
        Benchmark::Aitw => {
            let r: aitw::AitwReference = serde_json::from_value(value.clone()).map_err(parse_as)?;
            let name = str_field(value, "image")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}_{}.png", r.episode_id, r.step_id));
            let image = load_image(images, &name, data, line)?;
            let marks = r.boxes();
            let xyxy: Vec<[f64; 4]> = marks.iter().map(|&[y, x, h, w]| [x, y, x + w, y + h]).collect();
            let (image, _) = mark_boxes(&image, &xyxy)?;
            let history: Vec<String> = records[..index]
                .iter()
                .filter_map(|(_, v)| serde_json::from_value::<aitw::AitwReference>(v.clone()).ok())
                .filter(|p| p.episode_id == r.episode_id && p.step_id < r.step_id)
                .map(|p| aitw_history_step(&p))
                .collect();
            let text = AitwStep {
                task: &r.goal_info,
                previous_actions: &history,
                step: r.step_id as usize,
                num_marks: marks.len(),
            }
            .render();
            Prepared {
                key: r.key(),
                request: Request { text, images: vec![image], max_new_tokens: 128 },
                parse: ParseContext::Aitw { marks },
            }
        }
        Benchmark::Mind2Web => {
            let r: mind2web::Mind2WebReference = serde_json::from_value(value.clone()).map_err(parse_as)?;
            let name = str_field(value, "image")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}-{}.jpg", r.annotation_id, r.action_uid));
            let image = load_image(images, &name, data, line)?;
            let earlier: Vec<String> = records[..index]
                .iter()
                .filter_map(|(_, v)| serde_json::from_value::<mind2web::Mind2WebReference>(v.clone()).ok())
                .filter(|p| p.annotation_id == r.annotation_id)
                .map(|p| seeclick_history_step(&p))
                .collect();
            let start = earlier.len().saturating_sub(4);
            let history: String = earlier[start..]
                .iter()
                .enumerate()
                .map(|(i, a)| format!("Step{i}: {a}. "))
                .collect();
            let mut candidates: Vec<&mind2web::Candidate> =
                r.pos_candidates.iter().chain(&r.neg_candidates).collect();
            candidates.sort_by_key(|c| c.rank);
            Prepared {
                key: r.key(),
                request: Request {
                    text: format!(
                        "{IMAGE_TOKEN}\nPlease generate the next move according to the ui screenshot, instruction and previous actions. Instruction: {}. Previous actions: {history}",
                        r.confirmed_task
                    ),
                    images: vec![image],
                    max_new_tokens: 128,
                },
                parse: ParseContext::Mind2Web {
                    candidates: candidates.iter().map(|c| c.backend_node_id.clone()).collect(),
                },
            }
        }
        Benchmark::Vqav2 => {
            let id = value.get("image_id").and_then(Value::as_i64).unwrap_or(0);
            let name = str_field(value, "image").map(str::to_string).unwrap_or_else(|| format!("COCO_val2014_{id:012}.jpg"));
            let key = crate::jsonl::id_string(value.get("question_id").unwrap_or(&Value::Null)).map_err(parse_as)?;
            let q = str_field(value, "question").unwrap_or("");
            text_request(key, load_image(images, &name, data, line)?, format!("{q}{vqa_suffix}"), 16)
        }
        Benchmark::TextVqa => {
            let id = value.get("image_id").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default();
            let name = str_field(value, "image").map(str::to_string).unwrap_or_else(|| format!("{id}.jpg"));
            let key = crate::jsonl::id_string(value.get("question_id").unwrap_or(&Value::Null)).map_err(parse_as)?;
            let q = capitalize(str_field(value, "question").unwrap_or(""));
            text_request(key, load_image(images, &name, data, line)?, format!("{q}{vqa_suffix}"), 1024)
        }
        Benchmark::ChartQa => {
            let (img, q) = (str_field(value, "imgname").unwrap_or(""), str_field(value, "query").unwrap_or(""));
            let key = crate::metrics::chartqa::key(img, q);
            text_request(key, load_image(images, img, data, line)?, format!("{q}\nAnswer the question with a single word."), 16)
        }
        Benchmark::Pope => {
            let key = crate::jsonl::id_string(value.get("question_id").unwrap_or(&Value::Null)).map_err(parse_as)?;
            let img = str_field(value, "image").unwrap_or("");
            let q = str_field(value, "text").unwrap_or("").trim();
            text_request(key, load_image(images, img, data, line)?, format!("{q}{vqa_suffix}"), 128)
        }
        Benchmark::TapVid | Benchmark::SimplerEnv | Benchmark::Libero => {
            return Err(EvalError::Invalid(format!(
                "`magma eval run` asks a chat model about images; `{benchmark}` needs a point tracker or a simulator (score its results with `magma eval score`)"
            )))
        }
    })
}

/// The prediction line of a record from the model's answer (`None` = the model failed).
fn prediction(
    benchmark: Benchmark,
    record: &Value,
    parse: &ParseContext,
    answer: Option<&str>,
) -> Value {
    let raw = answer.unwrap_or("");
    let mut line = match benchmark {
        Benchmark::ScreenSpot => {
            let point = match parse {
                ParseContext::ScreenSpot {
                    boxes,
                    width,
                    height,
                } => answer
                    .and_then(|a| resolve_click(a, boxes, *width, *height).ok())
                    .map(|c| c.normalized),
                _ => None,
            };
            json!({"img_filename": record["img_filename"], "instruction": record["instruction"], "point": point})
        }
        Benchmark::Aitw => {
            let marks = match parse {
                ParseContext::Aitw { marks } => marks.as_slice(),
                _ => &[],
            };
            let fields = answer
                .and_then(|a| AitwAction::parse(a).ok())
                .and_then(|a| aitw_fields(&a, marks));
            let (t, touch, lift, text) = match fields {
                Some((t, touch, lift, text)) => (json!(t), json!(touch), json!(lift), json!(text)),
                None => (Value::Null, Value::Null, Value::Null, Value::Null),
            };
            json!({"episode_id": record["episode_id"], "step_id": record["step_id"],
                   "results/action_type": t, "results/yx_touch": touch, "results/yx_lift": lift, "results/type_action": text})
        }
        Benchmark::Mind2Web => {
            let candidates = match parse {
                ParseContext::Mind2Web { candidates } => candidates.as_slice(),
                _ => &[],
            };
            let (operation, point, element) = answer
                .map_or((Value::Null, Value::Null, Value::Null), |a| {
                    parse_mind2web(a, candidates)
                });
            json!({"annotation_id": record["annotation_id"], "action_uid": record["action_uid"],
                   "element_id": element, "operation": operation, "click_point": point})
        }
        Benchmark::Vqav2 | Benchmark::TextVqa => {
            json!({"question_id": record["question_id"], "answer": answer})
        }
        Benchmark::ChartQa => {
            json!({"imgname": record["imgname"], "query": record["query"], "prediction": answer})
        }
        Benchmark::Pope => {
            json!({"question_id": record["question_id"], "prompt": record["text"], "text": answer})
        }
        Benchmark::TapVid | Benchmark::SimplerEnv | Benchmark::Libero => json!({}),
    };
    line["raw_output"] = json!(raw);
    line
}

/// AITW fields of a parsed action: (type, touch, lift, text). Swipes use SeeClick's fixed
/// vectors (only their axis matters for matching); a mark without a box is unparsable.
fn aitw_fields(
    action: &AitwAction,
    marks: &[[f64; 4]],
) -> Option<(i64, [f64; 2], [f64; 2], String)> {
    use aitw::action_type::*;
    let none = [-1.0, -1.0];
    Some(match action {
        AitwAction::TapMark { mark } => {
            let [y, x, h, w] = *marks.get(*mark as usize)?;
            let c = [y + h / 2.0, x + w / 2.0];
            (DUAL_POINT, c, c, String::new())
        }
        AitwAction::TapPoint { x, y, .. } => (DUAL_POINT, [*y, *x], [*y, *x], String::new()),
        AitwAction::Swipe { direction } => {
            let (touch, lift) = match direction.to_ascii_uppercase().as_str() {
                "UP" => ([0.8, 0.5], [0.2, 0.5]),
                "DOWN" => ([0.2, 0.5], [0.8, 0.5]),
                "LEFT" => ([0.5, 0.8], [0.5, 0.2]),
                "RIGHT" => ([0.5, 0.2], [0.5, 0.8]),
                _ => return None,
            };
            (DUAL_POINT, touch, lift, String::new())
        }
        AitwAction::Navigate { button, .. } => (
            match button.to_ascii_uppercase().as_str() {
                "BACK" => PRESS_BACK,
                "HOME" => PRESS_HOME,
                "ENTER" => PRESS_ENTER,
                _ => return None,
            },
            none,
            none,
            String::new(),
        ),
        AitwAction::Type { text } => (TYPE, none, none, text.clone()),
        AitwAction::SetTaskStatus { status } => (
            if status.eq_ignore_ascii_case("IMPOSSIBLE") {
                STATUS_TASK_IMPOSSIBLE
            } else {
                STATUS_TASK_COMPLETE
            },
            none,
            none,
            String::new(),
        ),
    })
}

/// Mind2Web answer → (operation, click point, element id). Accepts SeeClick's
/// `{"action_type": …}` form and Mind2Web's `… -> TYPE: v` (via `magma-actions`), and the
/// Magma-Mind2Web-SoM form `{"ACTION": "TYPE", "MARK": 11, "VALUE": "…"}`; a mark names the
/// k-th candidate by rank.
fn parse_mind2web(answer: &str, candidates: &[String]) -> (Value, Value, Value) {
    let element = |mark: Option<u64>| {
        mark.and_then(|m| candidates.get(m as usize))
            .map_or(Value::Null, |c| json!(c))
    };
    if let Some(start) = answer.find('{') {
        if let Some(end) = answer.rfind('}') {
            if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(&answer[start..=end]) {
                if let Some(op) = o.get("ACTION").and_then(Value::as_str) {
                    let value = o.get("VALUE").and_then(Value::as_str).unwrap_or("");
                    return (
                        json!({"op": op.to_ascii_uppercase(), "value": value}),
                        Value::Null,
                        element(o.get("MARK").and_then(Value::as_u64)),
                    );
                }
            }
        }
    }
    match Mind2WebAction::parse(answer) {
        Ok(a) => {
            let (op, value) = match &a.operation {
                Mind2WebOp::Click => ("CLICK", String::new()),
                Mind2WebOp::Type(v) => ("TYPE", v.clone()),
                Mind2WebOp::Select(v) => ("SELECT", v.clone()),
            };
            (
                json!({"op": op, "value": value}),
                json!(a.click_point),
                element(a.mark.map(u64::from)),
            )
        }
        Err(_) => (Value::Null, Value::Null, Value::Null),
    }
}

/// Reads the keys already in `predictions.jsonl`. A last line cut short by a kill (no newline,
/// or not JSON) is dropped and the file truncated to the last complete line, so appending
/// continues cleanly.
fn resume(path: &Path, benchmark: Benchmark) -> Result<HashSet<String>> {
    let io = |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(io(e)),
    };
    let mut keep = 0;
    let mut done = HashSet::new();
    for (i, chunk) in text.split_inclusive('\n').enumerate() {
        if !chunk.ends_with('\n') {
            break;
        }
        let Ok(value) = serde_json::from_str::<Value>(chunk) else {
            if keep + chunk.len() == text.len() {
                break;
            }
            return Err(invalid(
                path,
                i + 1,
                "not valid JSON (not the last line: not a cut-off write)".into(),
            ));
        };
        done.insert(prediction_key(benchmark, &value).map_err(|m| invalid(path, i + 1, m))?);
        keep += chunk.len();
    }
    if keep < text.len() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io)?;
        file.set_len(keep as u64).map_err(io)?;
    }
    Ok(done)
}

fn prediction_key(benchmark: Benchmark, v: &Value) -> std::result::Result<String, String> {
    let e = |e: serde_json::Error| e.to_string();
    Ok(match benchmark {
        Benchmark::Aitw => serde_json::from_value::<aitw::AitwPrediction>(v.clone())
            .map_err(e)?
            .key(),
        Benchmark::Mind2Web => serde_json::from_value::<mind2web::Mind2WebPrediction>(v.clone())
            .map_err(e)?
            .key(),
        Benchmark::ScreenSpot => screenspot::key(
            str_field(v, "img_filename").unwrap_or(""),
            str_field(v, "instruction").unwrap_or(""),
        ),
        Benchmark::ChartQa => crate::metrics::chartqa::key(
            str_field(v, "imgname").unwrap_or(""),
            str_field(v, "query").unwrap_or(""),
        ),
        _ => crate::jsonl::id_string(v.get("question_id").unwrap_or(&Value::Null)).map_err(e)?,
    })
}

/// `OUT/.lock` holding the writer's pid while a run appends to `OUT`: a second run on the same
/// folder would interleave duplicate lines. A lock left by a killed run (its pid gone) is taken
/// over.
struct RunLock(PathBuf);

impl RunLock {
    fn acquire(out: &Path) -> Result<Self> {
        let path = out.join(".lock");
        let io = |source| EvalError::Io {
            path: path.clone(),
            source,
        };
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(std::process::id().to_string().as_bytes())
                        .map_err(io)?;
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&path).unwrap_or_default();
                    let pid = pid.trim();
                    if !pid.is_empty() && Path::new("/proc").join(pid).exists() {
                        return Err(EvalError::Invalid(format!(
                            "{}: another run (pid {pid}) is writing to {} (remove the lock file if that is wrong)",
                            path.display(),
                            out.display()
                        )));
                    }
                    std::fs::remove_file(&path).map_err(io)?;
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(EvalError::Invalid(format!(
            "{}: cannot take the run lock",
            path.display()
        )))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `bytes` to `path` atomically (temporary file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Runs `answerer` over the records of `data` (a references file of `benchmark`), appending to
/// `out/predictions.jsonl`, then scores every prediction in scope and writes
/// `out/scores.json`. A rerun skips the records whose prediction is already there.
pub fn run(
    benchmark: Benchmark,
    data: &Path,
    images: &Path,
    out: &Path,
    answerer: &mut dyn Answerer,
    options: &RunOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunSummary> {
    let file = JsonlFile::read(data)?;
    let limit = options.limit.unwrap_or(usize::MAX).min(file.lines.len());
    let records: Vec<(usize, Value)> = file.lines[..limit]
        .iter()
        .map(|l| (l.number, l.value.clone()))
        .collect();
    if records.is_empty() {
        return Err(EvalError::Empty(format!("{}: no records", data.display())));
    }
    std::fs::create_dir_all(out).map_err(|source| EvalError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let _lock = RunLock::acquire(out)?;
    let pred_path = out.join("predictions.jsonl");
    let done = resume(&pred_path, benchmark)?;
    let io = |source| EvalError::Io {
        path: pred_path.clone(),
        source,
    };
    let mut writer = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&pred_path)
        .map_err(io)?;
    writer.seek(std::io::SeekFrom::End(0)).map_err(io)?;
    let (mut resumed, mut answered, mut failed) = (0, 0, 0);
    for index in 0..records.len() {
        let prepared = prepare(benchmark, &records, index, images, data)?;
        if done.contains(&prepared.key) {
            resumed += 1;
            progress(Progress {
                done: index + 1,
                total: records.len(),
            });
            continue;
        }
        let mut request = prepared.request;
        if let Some(n) = options.max_new_tokens {
            request.max_new_tokens = n;
        }
        let answer = answerer.answer(&request);
        if answer.is_err() {
            failed += 1;
        }
        let mut line = prediction(
            benchmark,
            &records[index].1,
            &prepared.parse,
            answer.as_deref().ok(),
        );
        if let Err(message) = &answer {
            line["error"] = json!(message);
        }
        // One line per write, flushed to disk, so a kill loses at most the line being written.
        writer
            .write_all(format!("{line}\n").as_bytes())
            .map_err(io)?;
        writer.sync_data().map_err(io)?;
        answered += 1;
        progress(Progress {
            done: index + 1,
            total: records.len(),
        });
    }
    let refs = JsonlFile {
        path: data.to_path_buf(),
        lines: file.lines[..limit].to_vec(),
    };
    let evaluation = crate::score_parsed(benchmark, Some(refs), JsonlFile::read(&pred_path)?)?;
    write_atomic(
        &out.join("scores.json"),
        format!("{}\n", evaluation.to_json()).as_bytes(),
    )?;
    Ok(RunSummary {
        total: records.len(),
        resumed,
        answered,
        failed,
        evaluation,
    })
}

/// The data file's folder when `images` is not given.
pub fn default_images_dir(data: &Path) -> PathBuf {
    data.parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
