//! Open-X-Embodiment / RLDS: TFDS folders (`features.json`, `dataset_info.json`,
//! `<name>-train.tfrecord-XXXXX-of-NNNNN`) with one `tf.train.Example` per episode whose step
//! features are flattened under `steps/…` (an image per step, `T × dim` action floats, one
//! instruction per step).
//!
//! Each step becomes a record with the primary camera image (stored as the original JPEG bytes,
//! no re-encode), the question `<image>\nWhat action should the robot take to {instruction in lower
//! case}?`, and the action: raw, BOUNDS_Q99-normalised with the given statistics, and as the
//! 256-bin token ids of `magma-actions` (the assistant turn holds one `<action>` placeholder per
//! dimension, as in the Magma-OXE-ToM path). Steps without an instruction are dropped (OpenVLA
//! requires language), steps whose image does not decode are skipped.

use std::path::{Path, PathBuf};

use magma_actions::robot::{ActionTokenizer, NormStats, StatisticsSet};
use serde_json::Value;

use crate::example::Example;
use crate::record::{Action, Record, Sample, Turn};
use crate::stage::{Sink, Stage, WorkItem};
use crate::tfrecord::TfRecordReader;
use crate::{DataError, Result};

/// Magma's base text vocabulary (`tokenizer_vocab_size` in `config.json`).
pub const MAGMA_BASE_VOCAB: u32 = 128_000;

/// A leaf of a TFDS `features.json` tree.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    /// Flattened key as in the serialised Example (`steps/observation/image`).
    pub key: String,
    /// Short class name (`Image`, `Tensor`, `Text`, `Scalar`).
    pub class: String,
    /// Static shape (`-1` for unknown dimensions); empty for scalars.
    pub shape: Vec<i64>,
    /// dtype (`uint8`, `float32`, …).
    pub dtype: String,
}

/// Reads the leaves of a TFDS `features.json`, flattening nested dicts and the `steps` dataset.
pub fn read_features(path: &Path) -> Result<Vec<FeatureSpec>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let root: Value = serde_json::from_str(&text).map_err(|e| DataError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    walk_features(&root, "", &mut out);
    if out.is_empty() {
        return Err(DataError::invalid(
            path.display().to_string(),
            "no features found (expected a TFDS FeaturesDict)",
        ));
    }
    Ok(out)
}

fn walk_features(node: &Value, prefix: &str, out: &mut Vec<FeatureSpec>) {
    if let Some(features) = node
        .pointer("/featuresDict/features")
        .and_then(Value::as_object)
    {
        for (name, child) in features {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            walk_features(child, &key, out);
        }
        return;
    }
    if let Some(inner) = node.pointer("/sequence/feature") {
        walk_features(inner, prefix, out);
        return;
    }
    let class = node
        .get("pythonClassName")
        .and_then(Value::as_str)
        .and_then(|c| c.rsplit('.').next())
        .unwrap_or("")
        .to_string();
    let body = ["image", "tensor", "text"]
        .iter()
        .find_map(|k| node.get(*k))
        .cloned()
        .unwrap_or(Value::Null);
    let shape = body
        .pointer("/shape/dimensions")
        .and_then(Value::as_array)
        .map(|dims| {
            dims.iter()
                .filter_map(|d| d.as_str().and_then(|s| s.parse().ok()).or(d.as_i64()))
                .collect()
        })
        .unwrap_or_default();
    let dtype = body
        .get("dtype")
        .and_then(Value::as_str)
        .unwrap_or(if class == "Text" { "string" } else { "" })
        .to_string();
    out.push(FeatureSpec {
        key: prefix.to_string(),
        class,
        shape,
        dtype,
    });
}

/// Options of the RLDS converter (each `None` is detected from `features.json`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RldsOptions {
    /// The camera: a flattened key such as `steps/observation/image_0` (default: the `Image`
    /// feature under `steps/observation` named `image`, else the first one).
    pub image_key: Option<String>,
    /// Action keys concatenated in order (default: `steps/action`). Datasets whose action is a
    /// dict list its parts, e.g. `steps/action/world_vector`, `steps/action/rotation_delta`,
    /// `steps/action/gripper_closedness_action`.
    pub action_keys: Option<Vec<String>>,
    /// The instruction (default: the first `Text` step feature whose name contains `instruction`).
    pub language_key: Option<String>,
    /// OpenVLA `dataset_statistics.json` for BOUNDS_Q99 normalisation and action tokens.
    pub statistics: Option<PathBuf>,
    /// Entry of the statistics file (default: the dataset name, else its only entry).
    pub statistics_key: Option<String>,
}

/// Converts the shards of one TFDS dataset folder.
#[derive(Debug, Clone)]
pub struct RldsConverter {
    name: String,
    dir: PathBuf,
    image_key: String,
    action_keys: Vec<String>,
    language_key: String,
    action_dim: usize,
    stats: Option<NormStats>,
    tokenizer: ActionTokenizer,
}

impl RldsConverter {
    /// Opens a TFDS dataset folder (`…/<name>/<version>/`) and resolves the feature keys.
    pub fn open(dir: &Path, options: &RldsOptions) -> Result<Self> {
        let features = read_features(&dir.join("features.json"))?;
        let info_path = dir.join("dataset_info.json");
        let info: Value = serde_json::from_str(
            &std::fs::read_to_string(&info_path).map_err(|e| DataError::io(&info_path, e))?,
        )
        .map_err(|e| DataError::Json {
            path: info_path.clone(),
            message: e.to_string(),
        })?;
        let name = info
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| DataError::invalid(info_path.display().to_string(), "missing `name`"))?
            .to_string();
        let ctx = dir.join("features.json").display().to_string();
        let find = |key: &str| features.iter().find(|f| f.key == key);
        let image_key = match &options.image_key {
            Some(k) => k.clone(),
            None => {
                let images: Vec<&FeatureSpec> = features
                    .iter()
                    .filter(|f| f.class == "Image" && f.key.starts_with("steps/observation/"))
                    .collect();
                images
                    .iter()
                    .find(|f| f.key == "steps/observation/image")
                    .or(images.first())
                    .map(|f| f.key.clone())
                    .ok_or_else(|| {
                        DataError::invalid(&ctx, "no Image feature under steps/observation")
                    })?
            }
        };
        let language_key = match &options.language_key {
            Some(k) => k.clone(),
            None => features
                .iter()
                .find(|f| {
                    f.class == "Text"
                        && f.key.starts_with("steps/")
                        && f.key.contains("instruction")
                })
                .map(|f| f.key.clone())
                .ok_or_else(|| {
                    DataError::invalid(&ctx, "no instruction Text feature under steps/")
                })?,
        };
        let action_keys = options
            .action_keys
            .clone()
            .unwrap_or_else(|| vec!["steps/action".to_string()]);
        let mut action_dim = 0;
        for key in &action_keys {
            let spec =
                find(key).ok_or_else(|| DataError::invalid(&ctx, format!("no feature `{key}`")))?;
            let dims: i64 = spec.shape.iter().product();
            if dims <= 0 {
                return Err(DataError::invalid(
                    &ctx,
                    format!("`{key}` has no static shape: {:?}", spec.shape),
                ));
            }
            action_dim += dims as usize;
        }
        let stats = match &options.statistics {
            None => None,
            Some(path) => {
                let set = StatisticsSet::from_file(path)
                    .map_err(|e| DataError::invalid(path.display().to_string(), e.to_string()))?;
                let key = options.statistics_key.clone().or_else(|| {
                    let keys: Vec<&str> = set.keys().collect();
                    if keys.contains(&name.as_str()) {
                        Some(name.clone())
                    } else {
                        None
                    }
                });
                let entry = set
                    .get(key.as_deref())
                    .map_err(|e| DataError::invalid(path.display().to_string(), e.to_string()))?;
                if entry.action.dim() != action_dim {
                    return Err(DataError::invalid(
                        path.display().to_string(),
                        format!(
                            "statistics have {} action dims, the dataset {action_dim}",
                            entry.action.dim()
                        ),
                    ));
                }
                Some(entry.action.clone())
            }
        };
        Ok(RldsConverter {
            name,
            dir: dir.to_path_buf(),
            image_key,
            action_keys,
            language_key,
            action_dim,
            stats,
            tokenizer: ActionTokenizer::new(MAGMA_BASE_VOCAB).expect("vocab ≥ 256"),
        })
    }

    /// The dataset name from `dataset_info.json`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TFRecord shards of the folder, sorted.
    pub fn shards(&self) -> Result<Vec<PathBuf>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| DataError::io(&self.dir, e))?;
        let mut shards: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(".tfrecord"))
            })
            .collect();
        shards.sort();
        Ok(shards)
    }

    fn episode(&self, file: &str, index: usize, ex: &Example, sink: &mut dyn Sink) -> Result<()> {
        let images = ex.bytes(&self.image_key)?;
        let steps = images.len();
        let mut actions = Vec::with_capacity(steps * self.action_dim);
        let mut parts: Vec<&[f32]> = Vec::new();
        for key in &self.action_keys {
            parts.push(ex.floats(key)?);
        }
        let per_step: Vec<usize> = parts.iter().map(|p| p.len() / steps.max(1)).collect();
        for (key, (part, n)) in self.action_keys.iter().zip(parts.iter().zip(&per_step)) {
            if part.len() != n * steps {
                return Err(DataError::Proto(format!(
                    "`{key}` has {} values for {steps} steps",
                    part.len()
                )));
            }
        }
        for t in 0..steps {
            for (part, n) in parts.iter().zip(&per_step) {
                actions.extend(part[t * n..(t + 1) * n].iter().map(|&v| v as f64));
            }
        }
        if actions.len() != steps * self.action_dim {
            return Err(DataError::Proto(format!(
                "{} action values for {steps} steps of {} dims",
                actions.len(),
                self.action_dim
            )));
        }
        let languages = ex.bytes(&self.language_key)?;
        let source = format!("rlds:{}", self.name);
        for (t, jpeg) in images.iter().enumerate() {
            let locator = format!("record {index} step {t}");
            let instruction = languages
                .get(t)
                .or(languages.first())
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .unwrap_or_default();
            if instruction.is_empty() {
                sink.drop(&locator, "no_instruction");
                continue;
            }
            let image = match super::decode_image(jpeg, &locator) {
                Ok(img) => img,
                Err(e) => {
                    sink.skip(&locator, "undecodable_image", e.to_string());
                    continue;
                }
            };
            let raw = actions[t * self.action_dim..(t + 1) * self.action_dim].to_vec();
            let (normalized, tokens) = match &self.stats {
                Some(stats) => {
                    let normalized = stats
                        .normalize(&raw)
                        .map_err(|e| DataError::invalid(&locator, e.to_string()))?;
                    let tokens = match self.tokenizer.encode(&normalized) {
                        Ok(t) => t,
                        Err(e) => {
                            sink.skip(&locator, "bad_action", e.to_string());
                            continue;
                        }
                    };
                    (Some(normalized), Some(tokens))
                }
                None => (None, None),
            };
            let mut record = Record::new(&source, &format!("{file}#{index}#{t}"));
            record.provenance.converter = format!("rlds {}", env!("CARGO_PKG_VERSION"));
            record.provenance.input = file.to_string();
            record.provenance.locator = locator;
            // The reference lower-cases the instruction inside the prompt (`lang.lower()`).
            record.conversations = vec![
                Turn::human(magma_actions::prompts::robot_action(
                    &instruction.to_lowercase(),
                )),
                Turn::gpt("<action>".repeat(self.action_dim)),
            ];
            record.actions.push(Action::Robot {
                raw,
                normalized,
                tokens,
            });
            let mut sample = Sample::new(record);
            sample.push_image(jpeg.clone(), "jpg", image.width(), image.height());
            sink.emit(sample)?;
        }
        Ok(())
    }
}

impl Stage for RldsConverter {
    fn name(&self) -> &str {
        "rlds"
    }

    fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()> {
        let file = item.key.clone();
        for (index, frame) in TfRecordReader::open(&item.path)?.enumerate() {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    let reason = super::frame_error_reason(&e);
                    sink.skip(&format!("record {index}"), reason, e.to_string());
                    continue;
                }
            };
            let episode = Example::decode(&frame.payload)
                .and_then(|ex| self.episode(&file, index, &ex, sink));
            if let Err(e) = episode {
                sink.skip(
                    &format!("record {index} (offset {})", frame.offset),
                    "bad_episode",
                    format!("{}: {e}", item.path.display()),
                );
            }
        }
        Ok(())
    }
}
