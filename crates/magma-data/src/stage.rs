//! The stage API: a stage is a function over one work item of a manifest (a TFRecord file, a JSON
//! file, a video clip list, or the records a previous stage wrote) that emits [`Sample`]s.
//!
//! Stages never crash a job on bad input: a record that cannot be made is reported to the
//! [`Sink`] with [`Sink::skip`] (it lands in the job's error log and the survival funnel), and a
//! record a filter rejects is reported with [`Sink::drop`]. Only an error that makes the whole item
//! unreadable is returned as `Err`, and the job logs it and goes on with the next item.
//!
//! ```
//! use magma_data::record::{Record, Sample, Turn};
//! use magma_data::stage::{CollectSink, Sink, Stage, WorkItem};
//! use magma_data::Result;
//!
//! /// Makes one text-only record per line of a text file.
//! struct Lines;
//!
//! impl Stage for Lines {
//!     fn name(&self) -> &str {
//!         "lines"
//!     }
//!     fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()> {
//!         let text = std::fs::read_to_string(&item.path)
//!             .map_err(|e| magma_data::DataError::io(&item.path, e))?;
//!         for (n, line) in text.lines().enumerate() {
//!             if line.is_empty() {
//!                 sink.skip(&format!("line {n}"), "empty_line", "nothing to say".into());
//!                 continue;
//!             }
//!             let mut record = Record::new("lines", &format!("{}#{n}", item.key));
//!             record.conversations = vec![Turn::human("Say it."), Turn::gpt(line)];
//!             sink.emit(Sample::new(record))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("a.txt");
//! std::fs::write(&path, "hello\n\nworld\n").unwrap();
//! let mut sink = CollectSink::default();
//! Lines.process(&WorkItem::file(&path), &mut sink)?;
//! assert_eq!(sink.samples.len(), 2);
//! assert_eq!(sink.skipped[0].reason, "empty_line");
//! # Ok::<(), magma_data::DataError>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::Sample;
use crate::Result;

/// One unit of work of a manifest: what a stage processes at once and what a job marks done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// Stable name of the item, unique in its manifest (used for done markers and record ids).
    pub key: String,
    /// The input file.
    pub path: PathBuf,
    /// Extra per-item fields from the manifest (a clip list's segments, an image root, …).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub meta: serde_json::Value,
}

impl WorkItem {
    /// An item for a file, keyed by its file name.
    pub fn file(path: &Path) -> Self {
        WorkItem {
            key: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            path: path.to_path_buf(),
            meta: serde_json::Value::Null,
        }
    }
}

/// A record a stage could not make or chose not to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Where in the item (`record 3`, `episode 2 step 7`, `offset 1234`).
    pub locator: String,
    /// A short machine-readable reason (`crc_mismatch`, `box_outside_image`, …): the funnel key.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

/// Where a stage sends its output.
pub trait Sink {
    /// Stores one sample.
    fn emit(&mut self, sample: Sample) -> Result<()>;
    /// Reports a record that could not be made (bad input): logged to the error log.
    fn skip(&mut self, locator: &str, reason: &str, message: String);
    /// Reports a record a filter rejected on purpose (counted in the funnel, not an error).
    fn drop(&mut self, locator: &str, reason: &str);
}

/// A stage of a pipeline.
pub trait Stage: Send + Sync {
    /// Name used in logs, funnels and output folders.
    fn name(&self) -> &str;
    /// Processes one work item. `Err` means the item as a whole was unusable (unreadable file).
    fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()>;
}

/// A [`Sink`] that keeps everything in memory (tests, `magma data convert` of small inputs).
#[derive(Debug, Default)]
pub struct CollectSink {
    /// Emitted samples in order.
    pub samples: Vec<Sample>,
    /// Skipped records.
    pub skipped: Vec<Skipped>,
    /// Dropped records per reason.
    pub dropped: BTreeMap<String, u64>,
}

impl Sink for CollectSink {
    fn emit(&mut self, sample: Sample) -> Result<()> {
        self.samples.push(sample);
        Ok(())
    }

    fn skip(&mut self, locator: &str, reason: &str, message: String) {
        self.skipped.push(Skipped {
            locator: locator.into(),
            reason: reason.into(),
            message,
        });
    }

    fn drop(&mut self, _locator: &str, reason: &str) {
        *self.dropped.entry(reason.into()).or_default() += 1;
    }
}

/// How many items and records one stage saw, kept, and lost (and why).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Funnel {
    /// Work items processed (done) by this run or earlier runs.
    pub items: u64,
    /// Work items that failed as a whole.
    pub items_failed: u64,
    /// Records written.
    pub records: u64,
    /// Records skipped for bad input, per reason.
    pub skipped: BTreeMap<String, u64>,
    /// Records dropped by filters, per reason.
    pub dropped: BTreeMap<String, u64>,
}

impl Funnel {
    /// Adds another funnel's counts to this one.
    pub fn add(&mut self, other: &Funnel) {
        self.items += other.items;
        self.items_failed += other.items_failed;
        self.records += other.records;
        for (k, v) in &other.skipped {
            *self.skipped.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.dropped {
            *self.dropped.entry(k.clone()).or_default() += v;
        }
    }
}
