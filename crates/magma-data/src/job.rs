//! Sharded, resumable jobs: a stage runs over the work items of a manifest, one output part per
//! item, so that any process can take any shard (`--shard i/n`) and a rerun only redoes what is
//! missing.
//!
//! For each item the job writes, in this order, each by rename from a temporary name:
//!
//! 1. `part-<key hash>.tar` — the records (WebDataset);
//! 2. `part-<key hash>.errors.jsonl` — one line per skipped record (file, locator, reason, message);
//! 3. `part-<key hash>.done.json` — the done marker with the item's survival funnel.
//!
//! An item counts as done only when its marker exists. A process killed at any point (kill -9)
//! leaves at most a `.tmp` file or a part without a marker; the rerun ignores the former and
//! rewrites the latter (record ids are deterministic, so the rewrite is the same records). Every
//! record therefore ends up in exactly one part, exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::magma_json::write_atomic;
use crate::record::Sample;
use crate::stage::{Funnel, Sink, Skipped, Stage, WorkItem};
use crate::webdataset::ShardWriter;
use crate::{DataError, Result};

/// Which share of the manifest this process runs: items `k` with `k % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Default for ShardSpec {
    fn default() -> Self {
        ShardSpec { index: 0, count: 1 }
    }
}

impl std::str::FromStr for ShardSpec {
    type Err = String;

    /// Parses `i/n` (e.g. `3/8`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?}: expected i/n, e.g. 0/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: bad index"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: bad count"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {s:?}: need 0 <= i < n"));
        }
        Ok(ShardSpec { index, count })
    }
}

impl ShardSpec {
    /// The items of `manifest` this shard owns.
    pub fn select(&self, manifest: &[WorkItem]) -> Vec<WorkItem> {
        manifest
            .iter()
            .enumerate()
            .filter(|(k, _)| k % self.count == self.index)
            .map(|(_, item)| item.clone())
            .collect()
    }
}

/// The done marker of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneMarker {
    /// The item's key.
    pub key: String,
    /// The input file.
    pub input: PathBuf,
    /// What the item produced and lost.
    pub funnel: Funnel,
    /// Seconds spent on the item.
    pub seconds: f64,
}

/// One line of a part's error log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRow {
    /// The stage.
    pub stage: String,
    /// The input file.
    pub input: PathBuf,
    /// The skipped record.
    #[serde(flatten)]
    pub skipped: Skipped,
}

/// Progress events of [`run_stage`], for progress bars.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The job starts: `pending` of `total` items remain (the rest were done before).
    Start {
        /// Items of this shard.
        total: usize,
        /// Items not done yet.
        pending: usize,
    },
    /// One more item is done.
    ItemDone {
        /// The item's key.
        key: String,
        /// Records it wrote.
        records: u64,
    },
}

/// The file stem of an item's outputs: `part-` and 16 hex digits of SHA-256 of its key.
pub fn part_stem(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut stem = String::from("part-");
    for b in &digest[..8] {
        stem.push_str(&format!("{b:02x}"));
    }
    stem
}

/// Paths of one item's outputs in `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartPaths {
    /// The WebDataset tar.
    pub tar: PathBuf,
    /// The index (JSON lines).
    pub index: PathBuf,
    /// The error log.
    pub errors: PathBuf,
    /// The done marker.
    pub done: PathBuf,
}

impl PartPaths {
    /// The outputs of `key` under `dir`.
    pub fn new(dir: &Path, key: &str) -> Self {
        let stem = part_stem(key);
        PartPaths {
            tar: dir.join(format!("{stem}.tar")),
            index: dir.join(format!("{stem}.index.jsonl")),
            errors: dir.join(format!("{stem}.errors.jsonl")),
            done: dir.join(format!("{stem}.done.json")),
        }
    }
}

/// Writes samples into an item's tar while counting the funnel.
struct PartSink {
    writer: ShardWriter,
    funnel: Funnel,
    skipped: Vec<Skipped>,
}

impl Sink for PartSink {
    fn emit(&mut self, sample: Sample) -> Result<()> {
        self.writer.write(&sample)?;
        self.funnel.records += 1;
        Ok(())
    }

    fn skip(&mut self, locator: &str, reason: &str, message: String) {
        *self.funnel.skipped.entry(reason.to_string()).or_default() += 1;
        self.skipped.push(Skipped {
            locator: locator.into(),
            reason: reason.into(),
            message,
        });
    }

    fn drop(&mut self, _locator: &str, reason: &str) {
        *self.funnel.dropped.entry(reason.to_string()).or_default() += 1;
    }
}

/// Reads a done marker, `None` when absent.
pub fn read_done(path: &Path) -> Result<Option<DoneMarker>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DataError::Json {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DataError::io(path, e)),
    }
}

/// Runs `stage` over `items` into `dir`, skipping items whose done marker exists. Returns the
/// stage's funnel over all `items` (earlier runs included). An item that fails as a whole is
/// logged in its error log, counted in `items_failed`, and marked done, so that reruns do not
/// retry a file that cannot be read; delete its marker to retry it.
pub fn run_stage(
    stage: &dyn Stage,
    items: &[WorkItem],
    dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Funnel> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut funnel = Funnel::default();
    let mut pending = Vec::new();
    for item in items {
        match read_done(&PartPaths::new(dir, &item.key).done)? {
            Some(marker) => funnel.add(&marker.funnel),
            None => pending.push(item),
        }
    }
    progress(Progress::Start {
        total: items.len(),
        pending: pending.len(),
    });
    for item in pending {
        let marker = run_item(stage, item, dir)?;
        funnel.add(&marker.funnel);
        progress(Progress::ItemDone {
            key: item.key.clone(),
            records: marker.funnel.records,
        });
    }
    Ok(funnel)
}

fn run_item(stage: &dyn Stage, item: &WorkItem, dir: &Path) -> Result<DoneMarker> {
    let started = Instant::now();
    let paths = PartPaths::new(dir, &item.key);
    let mut sink = PartSink {
        writer: ShardWriter::create(&paths.tar)?,
        funnel: Funnel {
            items: 1,
            ..Funnel::default()
        },
        skipped: Vec::new(),
    };
    if let Err(e) = stage.process(item, &mut sink) {
        sink.funnel.items_failed += 1;
        sink.skip("item", "item_failed", e.to_string());
    }
    let PartSink {
        writer,
        funnel,
        skipped,
    } = sink;
    let index = writer.finish()?;
    crate::index::write_jsonl(&paths.index, &index)?;
    #[cfg(feature = "parquet")]
    crate::index::write_parquet(&paths.index.with_extension("parquet"), &index)?;
    let mut log = Vec::new();
    for skipped in skipped {
        let row = ErrorRow {
            stage: stage.name().to_string(),
            input: item.path.clone(),
            skipped,
        };
        serde_json::to_writer(&mut log, &row).expect("serialisable");
        log.push(b'\n');
    }
    write_atomic(&paths.errors, &log)?;
    let marker = DoneMarker {
        key: item.key.clone(),
        input: item.path.clone(),
        funnel,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_atomic(
        &paths.done,
        &serde_json::to_vec_pretty(&marker).expect("serialisable"),
    )?;
    Ok(marker)
}

/// The parts of `dir` whose items are done (tar paths, sorted): the input of a following stage.
pub fn done_parts(dir: &Path) -> Result<Vec<WorkItem>> {
    let mut parts = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(parts),
        Err(e) => return Err(DataError::io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(stem) = name.strip_suffix(".done.json") {
            let tar = dir.join(format!("{stem}.tar"));
            parts.push(WorkItem {
                key: format!("{stem}.tar"),
                path: tar,
                meta: serde_json::Value::Null,
            });
        }
    }
    parts.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(parts)
}

/// Funnel counts per reason, for printing (`reason: count`).
pub fn reasons_line(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_manifest() {
        let items: Vec<WorkItem> = (0..7)
            .map(|k| WorkItem::file(Path::new(&format!("f{k}"))))
            .collect();
        let spec: ShardSpec = "1/3".parse().unwrap();
        let keys: Vec<String> = spec.select(&items).into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["f1", "f4"]);
        assert!("3/3".parse::<ShardSpec>().is_err());
        assert!("x".parse::<ShardSpec>().is_err());
    }
}
