//! A job killed with SIGKILL in the middle of an item resumes with every record exactly once.
//!
//! The parent test starts this same test binary as a child running the job (selected by an
//! environment variable), waits until the child has finished some items and is inside another,
//! kills it (`Child::kill` is SIGKILL on Unix), reruns the job in-process and reads all parts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use magma_data::job::run_stage;
use magma_data::record::{Record, Sample, Turn};
use magma_data::stage::{Sink, Stage, WorkItem};
use magma_data::webdataset::read_shard;
use magma_data::Result;

const ITEMS: usize = 6;
const RECORDS_PER_ITEM: usize = 5;

/// A test double for a slow converter: each item yields `RECORDS_PER_ITEM` records, sleeping
/// between them when `slow` so that a kill lands inside an item.
struct Numbers {
    slow: bool,
}

impl Stage for Numbers {
    fn name(&self) -> &str {
        "numbers"
    }

    fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()> {
        for n in 0..RECORDS_PER_ITEM {
            if self.slow {
                std::thread::sleep(Duration::from_millis(60));
            }
            let mut record = Record::new("numbers", &format!("{}#{n}", item.key));
            record.conversations = vec![Turn::human("n?"), Turn::gpt(format!("{}-{n}", item.key))];
            sink.emit(Sample::new(record))?;
        }
        Ok(())
    }
}

fn manifest() -> Vec<WorkItem> {
    (0..ITEMS)
        .map(|k| WorkItem::file(Path::new(&format!("input-{k}.txt"))))
        .collect()
}

fn count(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

/// The child: runs the slow job until killed. Does nothing unless started by the parent.
#[test]
fn child_job() {
    let Ok(dir) = std::env::var("MAGMA_DATA_RESUME_CHILD_DIR") else {
        return;
    };
    run_stage(
        &Numbers { slow: true },
        &manifest(),
        Path::new(&dir),
        &mut |_| {},
    )
    .unwrap();
}

#[test]
fn killed_job_resumes_without_loss_or_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("numbers");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_job", "--nocapture", "--test-threads=1"])
        .env("MAGMA_DATA_RESUME_CHILD_DIR", &dir)
        .spawn()
        .unwrap();
    // Wait for two finished items and the third one's temporary tar.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(count(&dir, ".done.json") >= 2 && count(&dir, ".tar.tmp") == 1) {
        assert!(Instant::now() < deadline, "child made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "child finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_at_kill = count(&dir, ".done.json");
    assert!(done_at_kill < ITEMS, "killed mid-job");
    assert_eq!(
        count(&dir, ".tar.tmp"),
        1,
        "a half-written part was left behind"
    );

    let mut resumed = Vec::new();
    let funnel = run_stage(&Numbers { slow: false }, &manifest(), &dir, &mut |p| {
        resumed.push(p)
    })
    .unwrap();
    assert_eq!(
        resumed.len(),
        1 + ITEMS - done_at_kill,
        "only the missing items ran again"
    );
    assert_eq!(funnel.items as usize, ITEMS);
    assert_eq!(
        count(&dir, ".tmp"),
        0,
        "the rerun replaced the half-written part"
    );
    assert_eq!(funnel.records as usize, ITEMS * RECORDS_PER_ITEM);

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "tar") {
            for sample in read_shard(&path).unwrap() {
                *seen
                    .entry(sample.record.conversations[1].value.clone())
                    .or_default() += 1;
            }
        }
    }
    let expected: Vec<String> = (0..ITEMS)
        .flat_map(|k| (0..RECORDS_PER_ITEM).map(move |n| format!("input-{k}.txt-{n}")))
        .collect();
    assert_eq!(seen.len(), expected.len(), "every record is present");
    for value in expected {
        assert_eq!(seen.get(&value), Some(&1), "{value} exactly once");
    }
    // A second rerun has nothing to do and changes nothing.
    let mut again = Vec::new();
    run_stage(&Numbers { slow: false }, &manifest(), &dir, &mut |p| {
        again.push(p)
    })
    .unwrap();
    assert_eq!(again.len(), 1);
}
