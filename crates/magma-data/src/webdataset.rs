//! WebDataset tar shards: a sample is the files that share a key (`<id>.json` with the
//! [`Record`], `<id>.0.jpg`… with its images), written in order so that readers stream them.
//!
//! A shard is written to `<name>.tmp` and renamed into place only by [`ShardWriter::finish`], so a
//! killed job never leaves a half-written shard under the final name.
//!
//! ```
//! use magma_data::record::{Record, Sample, Turn};
//! use magma_data::webdataset::{read_shard, ShardWriter};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("data-000000.tar");
//! let mut sample = Sample::new(Record::new("demo", "a"));
//! sample.record.conversations = vec![Turn::human("<image>\nHi"), Turn::gpt("Hello")];
//! sample.push_image(vec![0xff, 0xd8, 0xff], "jpg", 4, 3);
//! let mut writer = ShardWriter::create(&path)?;
//! writer.write(&sample)?;
//! let index = writer.finish()?;
//! assert_eq!(index[0].id, sample.record.id);
//! let back = read_shard(&path)?;
//! assert_eq!(back, vec![sample]);
//! # Ok::<(), magma_data::DataError>(())
//! ```

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::{Asset, Record, Sample};
use crate::{DataError, Result};

/// One row of a shard's index: where a record is and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexRow {
    /// Record id (the WebDataset key).
    pub id: String,
    /// Source tag.
    pub source: String,
    /// Shard file name.
    pub shard: String,
    /// Byte offset of the record's `.json` member header in the tar.
    pub offset: u64,
    /// Number of images / video references.
    pub media: u32,
    /// Width of the first image (0 without media).
    pub width: u32,
    /// Height of the first image (0 without media).
    pub height: u32,
    /// Conversation turns.
    pub turns: u32,
    /// Set-of-Mark boxes.
    pub marks: u32,
    /// Traces.
    pub traces: u32,
    /// Actions.
    pub actions: u32,
    /// The `clip` score, when a curation stage stored one.
    pub clip_score: Option<f64>,
}

impl IndexRow {
    fn new(record: &Record, shard: &str, offset: u64) -> Self {
        let (width, height) = record.media.first().map(|m| m.size()).unwrap_or((0, 0));
        IndexRow {
            id: record.id.clone(),
            source: record.source.clone(),
            shard: shard.to_string(),
            offset,
            media: record.media.len() as u32,
            width,
            height,
            turns: record.conversations.len() as u32,
            marks: record.marks.len() as u32,
            traces: record.traces.len() as u32,
            actions: record.actions.len() as u32,
            clip_score: record.scores.get("clip").copied(),
        }
    }
}

/// Writes one tar shard atomically (temporary file, then rename).
pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    builder: tar::Builder<BufWriter<File>>,
    offset: u64,
    index: Vec<IndexRow>,
}

impl ShardWriter {
    /// Starts `path` (written as `path.tmp` until [`finish`](Self::finish)).
    pub fn create(path: &Path) -> Result<Self> {
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        Ok(ShardWriter {
            path: path.to_path_buf(),
            tmp,
            builder: tar::Builder::new(BufWriter::new(file)),
            offset: 0,
            index: Vec::new(),
        })
    }

    /// Appends a sample: its record as `<id>.json`, then its assets under their names.
    pub fn write(&mut self, sample: &Sample) -> Result<()> {
        let json = serde_json::to_vec(&sample.record).map_err(|e| DataError::Json {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let shard = file_name(&self.path);
        self.index
            .push(IndexRow::new(&sample.record, &shard, self.offset));
        self.append(&format!("{}.json", sample.record.id), &json)?;
        for asset in &sample.assets {
            self.append(&asset.name, &asset.bytes)?;
        }
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        // A fixed mtime keeps shards byte-identical across reruns.
        header.set_mtime(0);
        self.builder
            .append_data(&mut header, name, bytes)
            .map_err(|e| DataError::io(&self.tmp, e))?;
        // ustar: one 512-byte header (plus a GNU long-name block for names over 100 bytes),
        // then the data padded to 512.
        let name_blocks = if name.len() > 100 {
            512 + (name.len() as u64 + 1).div_ceil(512) * 512
        } else {
            0
        };
        self.offset += name_blocks + 512 + (bytes.len() as u64).div_ceil(512) * 512;
        Ok(())
    }

    /// Number of samples written so far.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no sample was written yet.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Finishes the tar, syncs it and renames it into place; returns the index rows.
    pub fn finish(self) -> Result<Vec<IndexRow>> {
        let ShardWriter {
            path,
            tmp,
            builder,
            index,
            ..
        } = self;
        let mut writer = builder.into_inner().map_err(|e| DataError::io(&tmp, e))?;
        writer.flush().map_err(|e| DataError::io(&tmp, e))?;
        let file = writer
            .into_inner()
            .map_err(|e| DataError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))?;
        Ok(index)
    }
}

/// Reads every sample of a shard, grouping members by key (the name up to its first dot).
/// Members without a `<key>.json` record are an error naming the shard and the key.
pub fn read_shard(path: &Path) -> Result<Vec<Sample>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut samples: Vec<Sample> = Vec::new();
    let entries = archive.entries().map_err(|e| DataError::io(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| DataError::io(path, e))?;
        let name = entry
            .path()
            .map_err(|e| DataError::io(path, e))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::io(path, e))?;
        let key = name.split('.').next().unwrap_or_default().to_string();
        if name == format!("{key}.json") {
            let record: Record = serde_json::from_slice(&bytes).map_err(|e| DataError::Json {
                path: path.to_path_buf(),
                message: format!("member {name}: {e}"),
            })?;
            samples.push(Sample::new(record));
        } else {
            match samples.last_mut() {
                Some(last) if last.record.id == key => last.assets.push(Asset { name, bytes }),
                _ => {
                    return Err(DataError::invalid(
                        path.display().to_string(),
                        format!("member {name} does not follow its record {key}.json"),
                    ))
                }
            }
        }
    }
    Ok(samples)
}

/// `path` with `.tmp` appended (the name written before the atomic rename).
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Turn;

    #[test]
    fn index_offsets_point_at_each_record_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.tar");
        let mut writer = ShardWriter::create(&path).unwrap();
        let mut samples = Vec::new();
        for n in 0..3 {
            let mut s = Sample::new(Record::new("t", &n.to_string()));
            s.record.conversations = vec![Turn::human("q"), Turn::gpt("a".repeat(n * 700))];
            s.push_image(vec![n as u8; 1000 + n], "png", 2, 2);
            writer.write(&s).unwrap();
            samples.push(s);
        }
        assert!(!path.exists(), "only the .tmp exists before finish");
        let index = writer.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for (row, s) in index.iter().zip(&samples) {
            let header = &bytes[row.offset as usize..row.offset as usize + 100];
            let name = format!("{}.json", s.record.id);
            assert_eq!(&header[..name.len()], name.as_bytes());
        }
        assert_eq!(read_shard(&path).unwrap(), samples);
    }
}
