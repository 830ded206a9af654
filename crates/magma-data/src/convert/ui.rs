//! Web UI sources: Mind2Web raw task JSON with screenshots, and SeeClick's web/mobile grounding
//! JSON. Both become Set-of-Mark records (Magma's red 0-based marks drawn on the screenshot).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{box_inside, draw_marks, encode_png, read_image, round2};
use crate::record::{Action, MarkBox, Record, Sample, Turn};
use crate::stage::{Sink, Stage, WorkItem};
use crate::{DataError, Result};

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| DataError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Mind2Web (`osunlp/Mind2Web` `data/train/*.json`): a list of tasks with `actions`, each with
/// `operation {op, value}` and `pos_candidates` / `neg_candidates` whose `attributes` JSON string
/// holds `bounding_box_rect` = `"x,y,width,height"` (page pixels; `-1,-1,-1,-1` when not rendered).
///
/// One record per action whose screenshot `{annotation_id}-{action_uid}.jpg` (SeeClick's naming)
/// is in `screenshots`: marks on the positive and up to `max_marks − 1` negative candidates, in an
/// order seeded by the record id (so the target's mark number carries no information); the question
/// holds the task and the last 4 actions (`action_reprs`, SeeClick's history length), the answer is
/// `{"ACTION": "CLICK", "MARK": k}` or with `"VALUE": "…"` for TYPE/SELECT (Magma-Mind2Web-SoM's
/// keys as quoted in microsoft/Magma#80; the exact released string is not public [unverified]).
/// HOVER and ENTER become CLICK (SeeClick). A positive box outside the screenshot skips the action
/// (`box_outside_image`).
#[derive(Debug, Clone)]
pub struct Mind2Web {
    /// Folder with `{annotation_id}-{action_uid}.jpg`.
    pub screenshots: PathBuf,
    /// At most this many marks (Magma used the ranker's top 30).
    pub max_marks: usize,
}

#[derive(Deserialize)]
struct M2wTask {
    annotation_id: String,
    confirmed_task: String,
    #[serde(default)]
    action_reprs: Vec<String>,
    actions: Vec<M2wAction>,
}

#[derive(Deserialize)]
struct M2wAction {
    action_uid: String,
    operation: M2wOperation,
    #[serde(default)]
    pos_candidates: Vec<M2wCandidate>,
    #[serde(default)]
    neg_candidates: Vec<M2wCandidate>,
}

#[derive(Deserialize)]
struct M2wOperation {
    op: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct M2wCandidate {
    backend_node_id: String,
    attributes: String,
}

impl M2wCandidate {
    /// The candidate's box as `[x1, y1, x2, y2]`, `None` when not rendered (`-1,-1,-1,-1`).
    fn bbox(&self) -> std::result::Result<Option<[f64; 4]>, String> {
        let attrs: serde_json::Value =
            serde_json::from_str(&self.attributes).map_err(|e| format!("attributes: {e}"))?;
        let rect = attrs
            .get("bounding_box_rect")
            .and_then(|v| v.as_str())
            .ok_or("attributes lack bounding_box_rect")?;
        let v: Vec<f64> = rect
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("bounding_box_rect {rect:?}"))
            })
            .collect::<std::result::Result<_, _>>()?;
        if v.len() != 4 {
            return Err(format!("bounding_box_rect {rect:?}"));
        }
        if v == [-1.0; 4] {
            return Ok(None);
        }
        Ok(Some([v[0], v[1], v[0] + v[2], v[1] + v[3]]))
    }
}

/// A stable pseudo-random order key for `name` within record `id`.
fn seeded_key(id: &str, name: &str) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(id)
        .chain_update([0])
        .chain_update(name)
        .finalize();
    digest[..8].try_into().expect("8 bytes")
}

impl Mind2Web {
    fn action(&self, task: &M2wTask, n: usize, file: &str, sink: &mut dyn Sink) -> Result<()> {
        let action = &task.actions[n];
        let locator = format!(
            "task {} action {n} ({})",
            task.annotation_id, action.action_uid
        );
        let shot = self
            .screenshots
            .join(format!("{}-{}.jpg", task.annotation_id, action.action_uid));
        if !shot.exists() {
            sink.skip(
                &locator,
                "missing_image",
                format!("{} not found", shot.display()),
            );
            return Ok(());
        }
        let (_, image) = match read_image(&shot) {
            Ok(v) => v,
            Err(e) => {
                sink.skip(&locator, "undecodable_image", e.to_string());
                return Ok(());
            }
        };
        let (w, h) = image.dimensions();
        let Some(positive) = action.pos_candidates.first() else {
            sink.drop(&locator, "no_positive_candidate");
            return Ok(());
        };
        let target = match positive.bbox() {
            Ok(Some(b)) if box_inside(b, w, h) => b,
            Ok(Some(b)) => {
                sink.skip(
                    &locator,
                    "box_outside_image",
                    format!("target box {b:?} outside the {w}x{h} screenshot"),
                );
                return Ok(());
            }
            Ok(None) => {
                sink.drop(&locator, "target_not_rendered");
                return Ok(());
            }
            Err(e) => {
                sink.skip(&locator, "bad_candidate", e);
                return Ok(());
            }
        };
        let id = crate::record::record_id(
            "mind2web",
            &format!("{}#{}", task.annotation_id, action.action_uid),
        );
        let mut boxes: Vec<(String, [f64; 4])> = vec![(positive.backend_node_id.clone(), target)];
        for cand in &action.neg_candidates {
            // Negatives that are not rendered or fall outside the screenshot are not marked.
            if let Ok(Some(b)) = cand.bbox() {
                if box_inside(b, w, h) {
                    boxes.push((cand.backend_node_id.clone(), b));
                }
            }
        }
        let (pos, mut negs) = (boxes[0].clone(), boxes.split_off(1));
        negs.sort_by_key(|(node, _)| seeded_key(&id, node));
        negs.truncate(self.max_marks.saturating_sub(1));
        let mut all = negs;
        all.push(pos.clone());
        all.sort_by_key(|(node, _)| seeded_key(&id, node));
        let mark = all
            .iter()
            .position(|(node, _)| *node == pos.0)
            .expect("positive is marked") as u32;
        let op = match action.operation.op.as_str() {
            "CLICK" | "HOVER" | "ENTER" => "CLICK",
            "TYPE" => "TYPE",
            "SELECT" => "SELECT",
            other => {
                sink.skip(
                    &locator,
                    "unknown_action_type",
                    format!("operation {other:?}"),
                );
                return Ok(());
            }
        };
        let mut answer = format!("{{\"ACTION\": \"{op}\", \"MARK\": {mark}");
        let value = (op != "CLICK").then(|| action.operation.value.clone());
        if let Some(v) = &value {
            answer += &format!(", \"VALUE\": {}", serde_json::Value::String(v.clone()));
        }
        answer.push('}');
        let history: Vec<&str> = task.action_reprs[..n.min(task.action_reprs.len())]
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(String::as_str)
            .collect();
        let history = if history.is_empty() {
            "None".to_string()
        } else {
            history.join("\n")
        };
        let question = format!(
            "<image>\nYou are navigating a website. Task: {}\nPrevious actions:\n{history}\nThe screenshot is labeled with {} numeric marks. What is the next action? Answer with the action, the mark and the value if any.",
            task.confirmed_task,
            all.len()
        );
        let marked = draw_marks(&image, &all.iter().map(|(_, b)| *b).collect::<Vec<_>>())?;
        let mut record = Record::new(
            "mind2web",
            &format!("{}#{}", task.annotation_id, action.action_uid),
        );
        record.provenance.converter = format!("mind2web {}", env!("CARGO_PKG_VERSION"));
        record.provenance.input = file.to_string();
        record.provenance.locator = locator;
        record.conversations = vec![Turn::human(question), Turn::gpt(answer)];
        record.marks = all
            .iter()
            .enumerate()
            .map(|(k, (node, b))| MarkBox {
                index: k as u32,
                bbox: *b,
                text: None,
                kind: Some(format!("backend_node_id={node}")),
            })
            .collect();
        let centre = [
            round2((target[0] + target[2]) / 2.0 / w as f64),
            round2((target[1] + target[3]) / 2.0 / h as f64),
        ];
        record.actions.push(Action::Ui {
            op: op.into(),
            point: Some(centre),
            mark: Some(mark),
            value,
        });
        let mut sample = Sample::new(record);
        sample.push_image(encode_png(&marked)?, "png", w, h);
        sink.emit(sample)
    }
}

impl Stage for Mind2Web {
    fn name(&self) -> &str {
        "mind2web"
    }

    fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()> {
        let tasks: Vec<M2wTask> = read_json(&item.path)?;
        for task in &tasks {
            for n in 0..task.actions.len() {
                self.action(task, n, &item.key, sink)?;
            }
        }
        Ok(())
    }
}

/// SeeClick's grounding data (`njucckevin/SeeClick` `readme_data.md`):
/// web `[{img_filename, url, elements: [{instruction, bbox [l, t, r, b] in [0, 1], data_type}]}]`
/// and mobile widget grounding `[{img_filename, instruction, bbox}]`, images under `images`.
///
/// A web page becomes one multi-turn record: its elements are marked (0-based, in file order) and
/// each element is a turn pair `ui_grounding(instruction)` → `Coordinate: (x, y). Mark: k` (bbox
/// centre, two decimals; the first question carries the `<image>`; magma-spec §4.1). A mobile item
/// becomes a single turn with the same answer and one mark. Elements whose box leaves the image are
/// left out and logged (`box_outside_image`).
#[derive(Debug, Clone)]
pub struct SeeClick {
    /// Folder the `img_filename`s are relative to.
    pub images: PathBuf,
    /// At most this many elements (turns) per page.
    pub max_turns: usize,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SeeClickItem {
    Web {
        img_filename: String,
        elements: Vec<SeeClickElement>,
    },
    Mobile {
        img_filename: String,
        instruction: String,
        bbox: [f64; 4],
    },
}

#[derive(Deserialize)]
struct SeeClickElement {
    instruction: String,
    bbox: [f64; 4],
}

impl SeeClick {
    fn page(
        &self,
        n: usize,
        img: &str,
        elements: Vec<(String, [f64; 4])>,
        file: &str,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let locator = format!("item {n} ({img})");
        let path = self.images.join(img);
        let (_, image) = match read_image(&path) {
            Ok(v) => v,
            Err(DataError::Io { .. }) => {
                sink.skip(
                    &locator,
                    "missing_image",
                    format!("{} not found", path.display()),
                );
                return Ok(());
            }
            Err(e) => {
                sink.skip(&locator, "undecodable_image", e.to_string());
                return Ok(());
            }
        };
        let (w, h) = image.dimensions();
        let mut kept = Vec::new();
        for (k, (instruction, ratio)) in elements.into_iter().enumerate() {
            let bbox = [
                ratio[0] * w as f64,
                ratio[1] * h as f64,
                ratio[2] * w as f64,
                ratio[3] * h as f64,
            ];
            if !box_inside(bbox, w, h) {
                sink.skip(
                    &format!("{locator} element {k}"),
                    "box_outside_image",
                    format!("bbox {ratio:?} leaves the image; element left out"),
                );
                continue;
            }
            if kept.len() < self.max_turns {
                kept.push((instruction, ratio, bbox));
            }
        }
        if kept.is_empty() {
            sink.drop(&locator, "no_elements");
            return Ok(());
        }
        let mut record = Record::new("seeclick", &format!("{file}#{n}"));
        record.provenance.converter = format!("seeclick {}", env!("CARGO_PKG_VERSION"));
        record.provenance.input = file.to_string();
        record.provenance.locator = locator;
        for (k, (instruction, ratio, bbox)) in kept.iter().enumerate() {
            let (x, y) = (
                round2((ratio[0] + ratio[2]) / 2.0),
                round2((ratio[1] + ratio[3]) / 2.0),
            );
            let mut question = magma_actions::prompts::ui_grounding(instruction);
            if k > 0 {
                question = question.trim_start_matches("<image>\n").to_string();
            }
            record.conversations.push(Turn::human(question));
            record.conversations.push(Turn::gpt(format!(
                "Coordinate: ({x:.2}, {y:.2}). Mark: {k}"
            )));
            record.marks.push(MarkBox {
                index: k as u32,
                bbox: *bbox,
                text: Some(instruction.clone()),
                kind: None,
            });
            record.actions.push(Action::Ui {
                op: "CLICK".into(),
                point: Some([x, y]),
                mark: Some(k as u32),
                value: None,
            });
        }
        let marked = draw_marks(
            &image,
            &record.marks.iter().map(|m| m.bbox).collect::<Vec<_>>(),
        )?;
        let mut sample = Sample::new(record);
        sample.push_image(encode_png(&marked)?, "png", w, h);
        sink.emit(sample)
    }
}

impl Stage for SeeClick {
    fn name(&self) -> &str {
        "seeclick"
    }

    fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()> {
        let items: Vec<serde_json::Value> = read_json(&item.path)?;
        for (n, value) in items.into_iter().enumerate() {
            match serde_json::from_value::<SeeClickItem>(value) {
                Ok(SeeClickItem::Web {
                    img_filename,
                    elements,
                }) => {
                    let els = elements
                        .into_iter()
                        .map(|e| (e.instruction, e.bbox))
                        .collect();
                    self.page(n, &img_filename, els, &item.key, sink)?
                }
                Ok(SeeClickItem::Mobile {
                    img_filename,
                    instruction,
                    bbox,
                }) => self.page(n, &img_filename, vec![(instruction, bbox)], &item.key, sink)?,
                Err(e) => sink.skip(&format!("item {n}"), "bad_item", e.to_string()),
            }
        }
        Ok(())
    }
}
