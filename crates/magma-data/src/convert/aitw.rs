//! Android in the Wild: GZIP TFRecords with one `tf.train.Example` per step, as
//! google-research `android_in_the_wild` releases them: `episode_id`, `step_id`, `goal_info`,
//! `image/encoded` (raw `height × width × channels` uint8 pixels, not a compressed image),
//! `image/ui_annotations_positions` (flat normalised `(y, x, h, w)`, y first),
//! `image/ui_annotations_{text,ui_types}`, `results/{action_type, yx_touch, yx_lift, type_action}`.
//!
//! Each step becomes a Set-of-Mark record: the screenshot with Magma's red 0-based marks on the
//! UI annotations (stored as PNG), the Magma-AITW prompt (paper Fig. 15, `magma-actions`
//! [`AitwStep`](magma_actions::prompts::AitwStep)) with the episode's earlier actions, and the
//! one-key JSON action:
//!
//! * `DUAL_POINT` (4) with touch and lift within 0.04 (AITW's `is_tap_action`) is a tap at the
//!   touch/lift midpoint (SeeClick's click point): `{"TAP": {"MARK": k}}` when it falls in a mark
//!   (the smallest containing box), else `{"TAP": {"NORMALIZED_COORDINATE": [y, x]}}` (y first,
//!   two decimals); a longer gesture is `{"SWIPE": dir}` in the direction the finger moved
//!   (the direction convention of the released data is not public [unverified]);
//! * `TYPE` (3) → `{"TYPE": text}`; `PRESS_BACK/HOME/ENTER` (5/6/7) → `{"NAVIGATE": …}`;
//!   `STATUS_TASK_COMPLETE/IMPOSSIBLE` (10/11) → `{"SET_TASK_STATUS": …}`;
//! * any other type (AITW's unused 0/1/2/8/9 or garbage) is skipped as `unknown_action_type`.
//!
//! Annotation boxes outside the screenshot are left out of the marks and logged
//! (`box_outside_image`); the step is kept.

use std::collections::HashMap;

use image::RgbImage;
use magma_actions::prompts::AitwStep;
use magma_actions::ui::aitw::{CoordinateKey, NavigateKey};
use magma_actions::ui::AitwAction;

use super::{box_inside, draw_marks, encode_png, round2};
use crate::example::Example;
use crate::record::{Action, MarkBox, Record, Sample, Turn};
use crate::stage::{Sink, Stage, WorkItem};
use crate::tfrecord::TfRecordReader;
use crate::{DataError, Result};

/// AITW's tap threshold on the touch–lift distance in normalised units (`is_tap_action`).
pub const TAP_DISTANCE: f64 = 0.04;

/// The AITW converter (stateless; the episode history is kept per file).
#[derive(Debug, Clone, Copy, Default)]
pub struct Aitw;

/// The action of one step, with its record form.
fn step_action(
    ex: &Example,
    marks: &[MarkBox],
    width: u32,
    height: u32,
) -> Result<(AitwAction, Action), String> {
    let get_f = |k: &str| ex.floats(k).map(|v| v.to_vec()).map_err(|e| e.to_string());
    let action_type = *ex
        .ints("results/action_type")
        .map_err(|e| e.to_string())?
        .first()
        .ok_or("empty results/action_type")?;
    let ui =
        |op: &str, point: Option<[f64; 2]>, mark: Option<u32>, value: Option<String>| Action::Ui {
            op: op.into(),
            point,
            mark,
            value,
        };
    Ok(match action_type {
        4 => {
            let touch = get_f("results/yx_touch")?;
            let lift = get_f("results/yx_lift")?;
            if touch.len() != 2 || lift.len() != 2 {
                return Err("yx_touch / yx_lift must hold 2 values".into());
            }
            let (ty, tx, ly, lx) = (
                touch[0] as f64,
                touch[1] as f64,
                lift[0] as f64,
                lift[1] as f64,
            );
            let distance = ((ty - ly).powi(2) + (tx - lx).powi(2)).sqrt();
            if distance <= TAP_DISTANCE {
                let (x, y) = ((tx + lx) / 2.0, (ty + ly) / 2.0);
                let (px, py) = (x * width as f64, y * height as f64);
                let hit = marks
                    .iter()
                    .filter(|m| {
                        px >= m.bbox[0] && px <= m.bbox[2] && py >= m.bbox[1] && py <= m.bbox[3]
                    })
                    .min_by(|a, b| area(a.bbox).total_cmp(&area(b.bbox)));
                match hit {
                    Some(mark) => (
                        AitwAction::TapMark { mark: mark.index },
                        ui("TAP", Some([x, y]), Some(mark.index), None),
                    ),
                    None => (
                        AitwAction::TapPoint {
                            x: round2(x),
                            y: round2(y),
                            key: CoordinateKey::NormalizedCoordinate,
                        },
                        ui("TAP", Some([x, y]), None, None),
                    ),
                }
            } else {
                let direction = magma_actions::ui::aitw::swipe_direction([ty, tx], [ly, lx]);
                (
                    AitwAction::Swipe {
                        direction: direction.into(),
                    },
                    ui(&format!("SWIPE_{direction}"), Some([tx, ty]), None, None),
                )
            }
        }
        3 => {
            let text = ex
                .string("results/type_action", 0)
                .map_err(|e| e.to_string())?;
            (
                AitwAction::Type { text: text.clone() },
                ui("TYPE", None, None, Some(text)),
            )
        }
        5..=7 => {
            let button = ["BACK", "HOME", "ENTER"][(action_type - 5) as usize];
            (
                AitwAction::Navigate {
                    button: button.into(),
                    key: NavigateKey::Navigate,
                },
                ui(&format!("PRESS_{button}"), None, None, None),
            )
        }
        10 | 11 => {
            let status = if action_type == 10 {
                "COMPLETE"
            } else {
                "IMPOSSIBLE"
            };
            (
                AitwAction::SetTaskStatus {
                    status: status.into(),
                },
                ui(&format!("STATUS_{status}"), None, None, None),
            )
        }
        other => return Err(format!("unknown_action_type:{other}")),
    })
}

fn area(b: [f64; 4]) -> f64 {
    (b[2] - b[0]) * (b[3] - b[1])
}

impl Aitw {
    fn step(
        &self,
        file: &str,
        ex: &Example,
        history: &mut HashMap<String, Vec<String>>,
        locator: &str,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let episode = ex.string("episode_id", 0)?;
        let step_id = *ex
            .ints("step_id")?
            .first()
            .ok_or_else(|| DataError::Proto("empty step_id".into()))?;
        let goal = ex.string("goal_info", 0)?;
        let dims = |k: &str| -> Result<u32> {
            let v = *ex
                .ints(k)?
                .first()
                .ok_or_else(|| DataError::Proto(format!("empty {k}")))?;
            u32::try_from(v).map_err(|_| DataError::Proto(format!("{k} = {v}")))
        };
        let (height, width, channels) = (
            dims("image/height")?,
            dims("image/width")?,
            dims("image/channels")?,
        );
        let raw = ex
            .bytes("image/encoded")?
            .first()
            .ok_or_else(|| DataError::Proto("empty image/encoded".into()))?;
        let expected = height as usize * width as usize * channels as usize;
        if raw.len() != expected || !(channels == 3 || channels == 4) {
            sink.skip(
                locator,
                "undecodable_image",
                format!(
                    "image/encoded has {} bytes, {height}x{width}x{channels} needs {expected}",
                    raw.len()
                ),
            );
            return Ok(());
        }
        let image = RgbImage::from_fn(width, height, |x, y| {
            let at = (y as usize * width as usize + x as usize) * channels as usize;
            image::Rgb([raw[at], raw[at + 1], raw[at + 2]])
        });
        let positions = ex.floats("image/ui_annotations_positions").unwrap_or(&[]);
        let texts = ex.bytes("image/ui_annotations_text").unwrap_or(&[]);
        let types = ex.bytes("image/ui_annotations_ui_types").unwrap_or(&[]);
        let mut marks = Vec::new();
        for (k, yxhw) in positions.chunks_exact(4).enumerate() {
            let (y, x, h, w) = (
                yxhw[0] as f64,
                yxhw[1] as f64,
                yxhw[2] as f64,
                yxhw[3] as f64,
            );
            let bbox = [
                x * width as f64,
                y * height as f64,
                (x + w) * width as f64,
                (y + h) * height as f64,
            ];
            if !box_inside(bbox, width, height) {
                sink.skip(
                    &format!("{locator} box {k}"),
                    "box_outside_image",
                    format!("box {bbox:?} outside {width}x{height}; box left out"),
                );
                continue;
            }
            let text = texts
                .get(k)
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .filter(|t| !t.is_empty());
            let kind = types
                .get(k)
                .map(|t| String::from_utf8_lossy(t).into_owned());
            marks.push(MarkBox {
                index: marks.len() as u32,
                bbox,
                text,
                kind,
            });
        }
        let (answer, action) = match step_action(ex, &marks, width, height) {
            Ok(a) => a,
            Err(message) => {
                let reason = if message.starts_with("unknown_action_type") {
                    "unknown_action_type"
                } else {
                    "bad_action"
                };
                sink.skip(locator, reason, message);
                return Ok(());
            }
        };
        let previous = history.entry(episode.clone()).or_default();
        let prompt = AitwStep {
            task: &goal,
            previous_actions: previous,
            step: step_id as usize,
            num_marks: marks.len(),
        }
        .render();
        let answer_text = answer.format();
        previous.push(answer_text.clone());
        let marked = draw_marks(&image, &marks.iter().map(|m| m.bbox).collect::<Vec<_>>())?;
        let mut record = Record::new("aitw", &format!("{episode}#{step_id}"));
        record.provenance.converter = format!("aitw {}", env!("CARGO_PKG_VERSION"));
        record.provenance.input = file.to_string();
        record.provenance.locator = format!("{locator} (episode {episode} step {step_id})");
        record.conversations = vec![Turn::human(prompt), Turn::gpt(answer_text)];
        record.marks = marks;
        record.actions.push(action);
        let mut sample = Sample::new(record);
        sample.push_image(encode_png(&marked)?, "png", width, height);
        sink.emit(sample)
    }
}

impl Stage for Aitw {
    fn name(&self) -> &str {
        "aitw"
    }

    fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()> {
        let mut history = HashMap::new();
        for (index, frame) in TfRecordReader::open(&item.path)?.enumerate() {
            let locator = format!("record {index}");
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    let reason = super::frame_error_reason(&e);
                    sink.skip(&locator, reason, e.to_string());
                    continue;
                }
            };
            let step = Example::decode(&frame.payload)
                .and_then(|ex| self.step(&item.key, &ex, &mut history, &locator, sink));
            if let Err(e) = step {
                sink.skip(
                    &locator,
                    "bad_step",
                    format!("{}: offset {}: {e}", item.path.display(), frame.offset),
                );
            }
        }
        Ok(())
    }
}
