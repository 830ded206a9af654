//! Magma's own conversation JSON: the LLaVA-style items the reference loader (`data/dataset.py`)
//! and magma-rs's trainer (`magma_processor::training::read_items`) read.
//!
//! An image item is `{"id", "image": "path" | ["path", …], "conversations": [{"from", "value"}]}`,
//! with image paths relative to the loader's `IMAGE_FOLDER`. A robot step adds
//! `"rlds": true, "language_instruction", "action_token_ids", "actions_normalized"`, which the
//! trainer turns into the RLDS prompt and action labels. [`write_dir`] writes the items as one JSON
//! list (`conversations.json`) and the carried images under `images/`, so the output folder is the
//! `IMAGE_FOLDER`.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::record::{Action, Media, Record, Sample, Turn};
use crate::{DataError, Result};

/// The item the reference loader reads for `record`. Image paths are `image_prefix` + the media
/// path (`images/` for records whose bytes [`write_dir`] stores).
///
/// ```
/// use magma_data::magma_json::to_item;
/// use magma_data::record::{Record, Sample, Turn};
///
/// let mut s = Sample::new(Record::new("demo", "x"));
/// s.record.conversations = vec![Turn::human("<image>\nWhat is it?"), Turn::gpt("A cat.")];
/// s.push_image(vec![1, 2, 3], "jpg", 64, 48);
/// let item = to_item(&s.record, "images/");
/// assert_eq!(item["image"], format!("images/{}.0.jpg", s.record.id));
/// assert_eq!(item["conversations"][1]["value"], "A cat.");
/// ```
pub fn to_item(record: &Record, image_prefix: &str) -> Value {
    let mut item = Map::new();
    item.insert("id".into(), Value::String(record.id.clone()));
    let images: Vec<String> = record
        .media
        .iter()
        .filter_map(|m| match m {
            Media::Image { path, .. } => Some(format!("{image_prefix}{path}")),
            Media::VideoFrames { .. } => None,
        })
        .collect();
    match images.len() {
        0 => {}
        1 => {
            item.insert("image".into(), Value::String(images[0].clone()));
        }
        _ => {
            item.insert("image".into(), json!(images));
        }
    }
    if let Some(Media::VideoFrames { video, frames, .. }) = record
        .media
        .iter()
        .find(|m| matches!(m, Media::VideoFrames { .. }))
    {
        item.insert("video".into(), Value::String(video.clone()));
        item.insert("frame_index".into(), json!(frames));
    }
    item.insert(
        "conversations".into(),
        serde_json::to_value(&record.conversations).unwrap_or(Value::Null),
    );
    if let Some(Action::Robot {
        normalized, tokens, ..
    }) = record.actions.first()
    {
        item.insert("rlds".into(), Value::Bool(true));
        if let Some(instruction) = robot_instruction(record) {
            item.insert("language_instruction".into(), Value::String(instruction));
        }
        if let Some(tokens) = tokens {
            item.insert("action_token_ids".into(), json!(tokens));
        }
        if let Some(normalized) = normalized {
            item.insert("actions_normalized".into(), json!(normalized));
        }
    }
    Value::Object(item)
}

/// The instruction of a robot record, recovered from its question
/// (`<image>\nWhat action should the robot take to {task}?`).
fn robot_instruction(record: &Record) -> Option<String> {
    let question = record.conversations.iter().find(|t| t.is_user())?;
    let task = question
        .value
        .split_once("What action should the robot take to ")?
        .1;
    Some(task.strip_suffix('?').unwrap_or(task).to_string())
}

/// Writes `dir/conversations.json` (a JSON list of [`to_item`]s) and every carried asset under
/// `dir/images/`; both atomically (temporary name, then rename). Returns the JSON path.
pub fn write_dir(dir: &Path, samples: &[Sample]) -> Result<PathBuf> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|e| DataError::io(&images, e))?;
    for asset in samples.iter().flat_map(|s| &s.assets) {
        write_atomic(&images.join(&asset.name), &asset.bytes)?;
    }
    let items: Vec<Value> = samples
        .iter()
        .map(|s| {
            let prefix = if s.assets.is_empty() { "" } else { "images/" };
            to_item(&s.record, prefix)
        })
        .collect();
    let path = dir.join("conversations.json");
    let text = serde_json::to_vec_pretty(&items).map_err(|e| DataError::Json {
        path: path.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&path, &text)?;
    Ok(path)
}

/// Reads Magma/LLaVA items (a JSON list, an object with an `items` list, or JSON lines) as
/// records of `source`. Ids are kept when present, else derived from the file and index.
pub fn read_items(path: &Path, source: &str) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let bad = |at: String, message: String| DataError::Json {
        path: path.to_path_buf(),
        message: format!("{at}: {message}"),
    };
    let values: Vec<Value> = if path.extension().is_some_and(|e| e == "jsonl") {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).map_err(|e| bad(format!("line {}", n + 1), e.to_string()))
            })
            .collect::<Result<_>>()?
    } else {
        match serde_json::from_str::<Value>(&text)
            .map_err(|e| bad("document".into(), e.to_string()))?
        {
            Value::Array(items) => items,
            Value::Object(mut obj) => match obj.remove("items") {
                Some(Value::Array(items)) => items,
                _ => vec![Value::Object(obj)],
            },
            other => {
                return Err(bad(
                    "document".into(),
                    format!("expected a list of items, got {other}"),
                ))
            }
        }
    };
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    values
        .iter()
        .enumerate()
        .map(|(n, v)| item_to_record(v, source, &file, n).map_err(|m| bad(format!("item {n}"), m)))
        .collect()
}

/// One LLaVA item as a record (images keep their relative paths; sizes are 0 until checked).
pub fn item_to_record(
    item: &Value,
    source: &str,
    file: &str,
    index: usize,
) -> Result<Record, String> {
    let obj = item.as_object().ok_or("an item must be a JSON object")?;
    let given_id = match obj.get("id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut record = Record::new(
        source,
        &format!(
            "{file}#{}",
            given_id.as_deref().unwrap_or(&index.to_string())
        ),
    );
    record.provenance.locator = match &given_id {
        Some(id) => format!("item {index} (id {id})"),
        None => format!("item {index}"),
    };
    record.provenance.input = file.to_string();
    record.provenance.converter = source.to_string();
    let turns = obj.get("conversations").ok_or("missing `conversations`")?;
    record.conversations = serde_json::from_value::<Vec<Turn>>(turns.clone())
        .map_err(|e| format!("`conversations`: {e}"))?;
    let images: Vec<String> = match obj.get("image") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or("`image` list entries must be strings")
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`image` must be a string or a list, got {other}")),
    };
    record.media = images
        .into_iter()
        .map(|path| Media::Image {
            path,
            width: 0,
            height: 0,
        })
        .collect();
    Ok(record)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = crate::webdataset::tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_trainer_fixture_items() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/magma-train/magma-tiny-crop/conversations.json");
        let records = read_items(&path, "fixture").unwrap();
        assert_eq!(
            records[0].conversations[1].value,
            "Coordinate: (0.42, 0.17). Mark: 7"
        );
    }

    #[test]
    fn robot_records_carry_the_rlds_fields() {
        let mut r = Record::new("rlds:x", "0");
        r.conversations = vec![
            Turn::human("<image>\nWhat action should the robot take to pick up the can?"),
            Turn::gpt("<action><action><action><action><action><action><action>"),
        ];
        r.actions.push(Action::Robot {
            raw: vec![0.0; 7],
            normalized: Some(vec![0.5; 7]),
            tokens: Some(vec![127_808; 7]),
        });
        let item = to_item(&r, "");
        assert_eq!(item["rlds"], true);
        assert_eq!(item["language_instruction"], "pick up the can");
        assert_eq!(item["action_token_ids"][0], 127_808);
    }
}
