//! The index of a part: one [`IndexRow`] per record (id, source, byte offset in the tar, sizes,
//! counts, CLIP score), written as JSON lines (`part-*.index.jsonl`) and, with the `parquet`
//! feature, as Parquet (`part-*.index.parquet`, arrow-rs) for column scans over millions of
//! records.

use std::path::Path;

use crate::magma_json::write_atomic;
use crate::webdataset::IndexRow;
use crate::{DataError, Result};

/// Writes `rows` as JSON lines to `path` (atomically).
pub fn write_jsonl(path: &Path, rows: &[IndexRow]) -> Result<()> {
    let mut out = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut out, row).expect("serialisable");
        out.push(b'\n');
    }
    write_atomic(path, &out)
}

/// Reads a JSON-lines index.
pub fn read_jsonl(path: &Path) -> Result<Vec<IndexRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| DataError::Json {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", n + 1),
            })
        })
        .collect()
}

/// Writes `rows` as a Parquet file (atomically): columns `id`, `source`, `shard` (utf8),
/// `offset` (u64), `media`, `width`, `height`, `turns`, `marks`, `traces`, `actions` (u32) and
/// `clip_score` (nullable f64).
#[cfg(feature = "parquet")]
pub fn write_parquet(path: &Path, rows: &[IndexRow]) -> Result<()> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};

    let strings = |f: fn(&IndexRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let counts = |f: fn(&IndexRow) -> u32| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(f)))
    };
    let batch = RecordBatch::try_from_iter([
        ("id", strings(|r| &r.id)),
        ("source", strings(|r| &r.source)),
        ("shard", strings(|r| &r.shard)),
        (
            "offset",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.offset))) as ArrayRef,
        ),
        ("media", counts(|r| r.media)),
        ("width", counts(|r| r.width)),
        ("height", counts(|r| r.height)),
        ("turns", counts(|r| r.turns)),
        ("marks", counts(|r| r.marks)),
        ("traces", counts(|r| r.traces)),
        ("actions", counts(|r| r.actions)),
        (
            "clip_score",
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.clip_score).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
    ])
    .map_err(|e| DataError::invalid(path.display().to_string(), e.to_string()))?;
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None)
        .map_err(|e| DataError::invalid(path.display().to_string(), e.to_string()))?;
    writer
        .write(&batch)
        .and_then(|_| writer.close().map(|_| ()))
        .map_err(|e| DataError::invalid(path.display().to_string(), e.to_string()))?;
    write_atomic(path, &out)
}

#[cfg(all(test, feature = "parquet"))]
mod tests {
    use super::*;

    #[test]
    fn parquet_index_reads_back_with_arrow() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Float64Type, UInt64Type};
        use arrow_array::Array;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let rows: Vec<IndexRow> = (0..3)
            .map(|n| IndexRow {
                id: format!("r{n}"),
                source: "aitw".into(),
                shard: "part-x.tar".into(),
                offset: 1536 * n,
                media: 1,
                width: 72,
                height: 128,
                turns: 2,
                marks: n as u32,
                traces: 0,
                actions: 1,
                clip_score: (n == 1).then_some(0.31),
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.parquet");
        write_parquet(&path, &rows).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batch = reader.next().unwrap().unwrap();
        assert_eq!(batch.num_rows(), 3);
        let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
        assert_eq!(ids.value(2), "r2");
        let offsets = batch
            .column_by_name("offset")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!(offsets.value(2), 3072);
        let clip = batch
            .column_by_name("clip_score")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert!(clip.is_null(0));
        assert_eq!(clip.value(1), 0.31);
    }
}
