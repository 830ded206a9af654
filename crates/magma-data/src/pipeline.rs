//! `PIPELINE.toml`: stages, their inputs and options, run by [`job::run_stage`](crate::job::run_stage).
//!
//! ```toml
//! out = "out"                      # relative to this file
//!
//! [[stage]]
//! name = "robot"
//! kind = "rlds"                    # rlds | aitw | mind2web | seeclick | llava | filter
//! input = "data/tiny_robot/1.0.0"  # TFDS folder (rlds), or a file, folder or glob
//! statistics = "data/dataset_statistics.json"
//!
//! [[stage]]
//! name = "robot_kept"
//! kind = "filter"
//! from = "robot"                   # the done parts of an earlier stage
//! min_scores = { clip = 0.25 }     # keep records whose stored score reaches the threshold
//! ```
//!
//! Each stage writes `out/<name>/part-*.{tar,errors.jsonl,done.json}` and
//! `out/<name>/_funnel.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::convert::aitw::Aitw;
use crate::convert::llava::Llava;
use crate::convert::rlds::{RldsConverter, RldsOptions};
use crate::convert::ui::{Mind2Web, SeeClick};
use crate::job::{done_parts, run_stage, Progress, ShardSpec};
use crate::stage::{Funnel, Sink, Stage, WorkItem};
use crate::webdataset::read_shard;
use crate::{DataError, Result};

/// A parsed pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Output folder (relative paths are relative to the pipeline file).
    pub out: PathBuf,
    /// Stages in order.
    #[serde(rename = "stage")]
    pub stages: Vec<StageSpec>,
    /// The pipeline file's folder (set by [`Pipeline::from_file`]).
    #[serde(skip)]
    pub base: PathBuf,
}

/// One `[[stage]]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Name (its output folder).
    pub name: String,
    /// What it runs.
    pub kind: String,
    /// Input file, folder or glob (converters).
    #[serde(default)]
    pub input: Option<String>,
    /// An earlier stage whose records this stage reads (`filter`).
    #[serde(default)]
    pub from: Option<String>,
    /// `rlds`: statistics JSON for BOUNDS_Q99 and action tokens.
    #[serde(default)]
    pub statistics: Option<PathBuf>,
    /// `rlds`: entry of the statistics file.
    #[serde(default)]
    pub statistics_key: Option<String>,
    /// `rlds`: the camera key (`steps/observation/image_0`).
    #[serde(default)]
    pub image_key: Option<String>,
    /// `rlds`: action keys to concatenate.
    #[serde(default)]
    pub action_keys: Option<Vec<String>>,
    /// `rlds`: the instruction key.
    #[serde(default)]
    pub language_key: Option<String>,
    /// `seeclick`, `llava`: the image folder; `mind2web`: the screenshot folder.
    #[serde(default)]
    pub images: Option<PathBuf>,
    /// `mind2web`: most marks per screenshot (30).
    #[serde(default)]
    pub max_marks: Option<usize>,
    /// `seeclick`: most elements per page (10).
    #[serde(default)]
    pub max_turns: Option<usize>,
    /// `filter`: minimum stored scores.
    #[serde(default)]
    pub min_scores: BTreeMap<String, f64>,
    /// `filter`: drop records without Set-of-Mark boxes.
    #[serde(default)]
    pub require_marks: bool,
}

impl Pipeline {
    /// Reads and checks a pipeline file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let mut pipeline: Pipeline = toml::from_str(&text).map_err(|e| DataError::Pipeline {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        pipeline.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut seen = Vec::new();
        for stage in &pipeline.stages {
            let bad = |message: String| DataError::Pipeline {
                path: path.to_path_buf(),
                message: format!("stage `{}`: {message}", stage.name),
            };
            if seen.contains(&stage.name.as_str()) {
                return Err(bad("duplicate name".into()));
            }
            if let Some(from) = &stage.from {
                if !seen.contains(&from.as_str()) {
                    return Err(bad(format!(
                        "`from = \"{from}\"` must name an earlier stage"
                    )));
                }
            }
            match (stage.kind.as_str(), &stage.input, &stage.from) {
                ("filter", _, None) => return Err(bad("a filter needs `from`".into())),
                ("filter", _, _) => {}
                ("rlds" | "aitw" | "mind2web" | "seeclick" | "llava", None, _) => {
                    return Err(bad("a converter needs `input`".into()))
                }
                ("rlds" | "aitw" | "mind2web" | "seeclick" | "llava", _, _) => {}
                (other, _, _) => return Err(bad(format!("unknown kind `{other}`"))),
            }
            seen.push(&stage.name);
        }
        Ok(pipeline)
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// The output folder of a stage.
    pub fn stage_dir(&self, stage: &StageSpec) -> PathBuf {
        self.resolve(&self.out).join(&stage.name)
    }

    /// Builds the stage object and its full manifest (all shards).
    pub fn build(&self, spec: &StageSpec) -> Result<(Box<dyn Stage>, Vec<WorkItem>)> {
        let need = |what: &str, v: &Option<PathBuf>| {
            v.as_ref()
                .map(|p| self.resolve(p))
                .ok_or_else(|| DataError::Pipeline {
                    path: self.base.clone(),
                    message: format!("stage `{}` needs `{what}`", spec.name),
                })
        };
        if spec.kind == "filter" {
            let from = spec.from.as_deref().expect("checked");
            let dir = self.resolve(&self.out).join(from);
            let filter = Filter {
                min_scores: spec.min_scores.clone(),
                require_marks: spec.require_marks,
            };
            return Ok((Box::new(filter), done_parts(&dir)?));
        }
        let input = self.resolve(Path::new(spec.input.as_deref().expect("checked")));
        let stage: Box<dyn Stage> = match spec.kind.as_str() {
            "rlds" => {
                let options = RldsOptions {
                    image_key: spec.image_key.clone(),
                    action_keys: spec.action_keys.clone(),
                    language_key: spec.language_key.clone(),
                    statistics: spec.statistics.as_ref().map(|p| self.resolve(p)),
                    statistics_key: spec.statistics_key.clone(),
                };
                let conv = RldsConverter::open(&input, &options)?;
                let items = conv.shards()?.iter().map(|p| WorkItem::file(p)).collect();
                return Ok((Box::new(conv), items));
            }
            "aitw" => Box::new(Aitw),
            "mind2web" => Box::new(Mind2Web {
                screenshots: need("images", &spec.images)?,
                max_marks: spec.max_marks.unwrap_or(30),
            }),
            "seeclick" => Box::new(SeeClick {
                images: need("images", &spec.images)?,
                max_turns: spec.max_turns.unwrap_or(10),
            }),
            "llava" => Box::new(Llava {
                images: need("images", &spec.images)?,
            }),
            other => unreachable!("kind `{other}` was checked"),
        };
        Ok((stage, input_files(&input)?))
    }
}

/// Work items for a file, a folder (its files, sorted, not recursive) or a glob pattern.
pub fn input_files(input: &Path) -> Result<Vec<WorkItem>> {
    let text = input.to_string_lossy();
    let mut paths: Vec<PathBuf> = if text.contains(['*', '?', '[']) {
        glob::glob(&text)
            .map_err(|e| DataError::invalid(text.to_string(), e.to_string()))?
            .filter_map(|p| p.ok())
            .collect()
    } else if input.is_dir() {
        std::fs::read_dir(input)
            .map_err(|e| DataError::io(input, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else if input.is_file() {
        vec![input.to_path_buf()]
    } else {
        return Err(DataError::io(
            input,
            std::io::Error::new(std::io::ErrorKind::NotFound, "input not found"),
        ));
    };
    paths.sort();
    Ok(paths.iter().map(|p| WorkItem::file(p)).collect())
}

/// Keeps records that reach every `min_scores` threshold (a missing score fails) and, with
/// `require_marks`, have marks. Thresholds live here, not in the scoring stage, so they can change
/// without recomputing scores.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Score name → minimum.
    pub min_scores: BTreeMap<String, f64>,
    /// Drop records without marks.
    pub require_marks: bool,
}

impl Stage for Filter {
    fn name(&self) -> &str {
        "filter"
    }

    fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()> {
        'samples: for sample in read_shard(&item.path)? {
            let id = sample.record.id.clone();
            for (name, min) in &self.min_scores {
                match sample.record.scores.get(name) {
                    Some(score) if score >= min => {}
                    Some(_) => {
                        sink.drop(&id, &format!("{name}_below_{min}"));
                        continue 'samples;
                    }
                    None => {
                        sink.drop(&id, &format!("no_{name}_score"));
                        continue 'samples;
                    }
                }
            }
            if self.require_marks && sample.record.marks.is_empty() {
                sink.drop(&id, "no_marks");
                continue;
            }
            sink.emit(sample)?;
        }
        Ok(())
    }
}

/// Options of [`run`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// This process's shard.
    pub shard: ShardSpec,
    /// Only list what would run.
    pub dry_run: bool,
}

/// What a stage did or would do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    /// Stage name.
    pub stage: String,
    /// Output folder.
    pub dir: PathBuf,
    /// Items of this shard.
    pub items: usize,
    /// Items already done before this run.
    pub done_before: usize,
    /// The funnel (empty on a dry run).
    pub funnel: Funnel,
}

/// Runs every stage of `pipeline` for one shard, in order, calling `progress(stage, event)`.
/// Stage funnels are also written to `out/<stage>/_funnel.json` (for the whole shard set seen
/// by this process; each shard writes its own `_funnel.<i>-of-<n>.json`).
pub fn run(
    pipeline: &Pipeline,
    options: &RunOptions,
    progress: &mut dyn FnMut(&str, Progress),
) -> Result<Vec<StageReport>> {
    let mut reports = Vec::new();
    for spec in &pipeline.stages {
        let dir = pipeline.stage_dir(spec);
        let (stage, manifest) = pipeline.build(spec)?;
        let items = options.shard.select(&manifest);
        let done_before = items
            .iter()
            .filter(|i| crate::job::PartPaths::new(&dir, &i.key).done.exists())
            .count();
        let funnel = if options.dry_run {
            Funnel::default()
        } else {
            let funnel = run_stage(stage.as_ref(), &items, &dir, &mut |p| {
                progress(&spec.name, p)
            })?;
            let name = format!(
                "_funnel.{}-of-{}.json",
                options.shard.index, options.shard.count
            );
            crate::magma_json::write_atomic(
                &dir.join(name),
                &serde_json::to_vec_pretty(&funnel).expect("serialisable"),
            )?;
            funnel
        };
        reports.push(StageReport {
            stage: spec.name.clone(),
            dir,
            items: items.len(),
            done_before,
            funnel,
        });
    }
    Ok(reports)
}
