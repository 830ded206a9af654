//! TFRecord files (the container of TFDS/RLDS shards and AITW), read without TensorFlow.
//!
//! A file is a sequence of frames: `u64` little-endian payload length, `u32` masked CRC32C of the
//! eight length bytes, the payload, `u32` masked CRC32C of the payload, where
//! `mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`. GZIP-compressed files (AITW ships them) are
//! recognised by their magic bytes and decompressed on the fly.
//!
//! Errors name the file and the byte offset of the bad frame. A payload CRC mismatch leaves the
//! framing intact, so the reader reports it and goes on with the next frame; a bad length CRC or a
//! truncated frame ends the file.
//!
//! ```
//! use magma_data::tfrecord::{write_frame, TfRecordReader};
//!
//! let mut bytes = Vec::new();
//! write_frame(&mut bytes, b"hello");
//! write_frame(&mut bytes, b"world");
//! let frames: Vec<_> = TfRecordReader::new(&bytes[..], "mem.tfrecord")
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(frames[1].offset, 8 + 4 + 5 + 4);
//! assert_eq!(frames[1].payload, b"world");
//! # Ok::<(), magma_data::DataError>(())
//! ```

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::{DataError, Result};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) lookup table.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82F6_3B78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// CRC-32C of `bytes`.
///
/// ```
/// assert_eq!(magma_data::tfrecord::crc32c(b"123456789"), 0xE306_9283);
/// ```
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC32C_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masked CRC: `((c >> 15) | (c << 17)) + 0xa282ead8` (wrapping).
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one framed record to `out`.
pub fn write_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
}

/// One record of a TFRecord file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Byte offset of the frame (in the decompressed stream for GZIP files).
    pub offset: u64,
    /// The payload (a serialised protobuf for TFDS and AITW).
    pub payload: Vec<u8>,
}

/// Iterates over the frames of a TFRecord stream.
pub struct TfRecordReader<R> {
    reader: R,
    path: PathBuf,
    offset: u64,
    finished: bool,
}

impl TfRecordReader<Box<dyn Read + Send>> {
    /// Opens a TFRecord file, plain or GZIP-compressed (detected from the first two bytes).
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = BufReader::new(File::open(path).map_err(|e| DataError::io(path, e))?);
        let mut magic = [0u8; 2];
        let n = read_up_to(&mut file, &mut magic).map_err(|e| DataError::io(path, e))?;
        let head = std::io::Cursor::new(magic[..n].to_vec());
        let stream = head.chain(file);
        let reader: Box<dyn Read + Send> = if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(stream)))
        } else {
            Box::new(stream)
        };
        Ok(TfRecordReader::new(reader, path))
    }
}

impl<R: Read> TfRecordReader<R> {
    /// Reads frames from `reader`; `path` is used in error messages.
    pub fn new(reader: R, path: impl Into<PathBuf>) -> Self {
        TfRecordReader {
            reader,
            path: path.into(),
            offset: 0,
            finished: false,
        }
    }

    fn error(&self, offset: u64, message: String) -> DataError {
        DataError::TfRecord {
            path: self.path.clone(),
            offset,
            message,
        }
    }

    fn next_frame(&mut self) -> Option<Result<Frame>> {
        let start = self.offset;
        let mut header = [0u8; 12];
        let got = match read_up_to(&mut self.reader, &mut header) {
            Ok(n) => n,
            Err(e) => return Some(Err(self.error(start, format!("read failed: {e}")))),
        };
        if got == 0 {
            return None;
        }
        if got < 12 {
            self.finished = true;
            return Some(Err(self.error(
                start,
                format!("truncated frame header ({got} of 12 bytes)"),
            )));
        }
        let len_bytes: [u8; 8] = header[..8].try_into().expect("8 bytes");
        let len_crc = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
        if masked_crc32c(&len_bytes) != len_crc {
            self.finished = true;
            return Some(Err(self.error(
                start,
                "length CRC mismatch (corrupt or not a TFRecord file)".into(),
            )));
        }
        let len = u64::from_le_bytes(len_bytes);
        let mut payload = Vec::new();
        let read = (&mut self.reader)
            .take(len)
            .read_to_end(&mut payload)
            .map_err(|e| self.error(start, format!("read failed: {e}")));
        if let Err(e) = read {
            self.finished = true;
            return Some(Err(e));
        }
        let mut crc = [0u8; 4];
        let crc_got = read_up_to(&mut self.reader, &mut crc).unwrap_or(0);
        if (payload.len() as u64) < len || crc_got < 4 {
            self.finished = true;
            return Some(Err(self.error(
                start,
                format!(
                    "truncated record: length {len}, only {} payload bytes and {crc_got} of 4 CRC bytes",
                    payload.len()
                ),
            )));
        }
        self.offset = start + 12 + len + 4;
        if masked_crc32c(&payload) != u32::from_le_bytes(crc) {
            return Some(Err(self.error(start, "payload CRC mismatch".into())));
        }
        Some(Ok(Frame {
            offset: start,
            payload,
        }))
    }
}

impl<R: Read> Iterator for TfRecordReader<R> {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = self.next_frame();
        if item.is_none() {
            self.finished = true;
        }
        item
    }
}

/// Fills as much of `buf` as the reader has (short only at end of stream).
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_frames() -> Vec<u8> {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, b"first payload");
        write_frame(&mut bytes, b"second");
        bytes
    }

    #[test]
    fn payload_crc_mismatch_is_reported_and_reading_goes_on() {
        let mut bytes = two_frames();
        bytes[12] ^= 0xff; // first payload byte
        let items: Vec<_> = TfRecordReader::new(&bytes[..], "x.tfrecord").collect();
        assert_eq!(items.len(), 2);
        let err = items[0].as_ref().unwrap_err().to_string();
        assert_eq!(
            err,
            "x.tfrecord: TFRecord at byte offset 0: payload CRC mismatch"
        );
        assert_eq!(items[1].as_ref().unwrap().payload, b"second");
    }

    #[test]
    fn truncation_names_the_offset_of_the_cut_frame() {
        let bytes = two_frames();
        let cut = &bytes[..bytes.len() - 3];
        let items: Vec<_> = TfRecordReader::new(cut, "y.tfrecord").collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        let err = items[1].as_ref().unwrap_err().to_string();
        assert!(
            err.starts_with("y.tfrecord: TFRecord at byte offset 29: truncated record"),
            "{err}"
        );
    }

    #[test]
    fn gzip_files_are_read_transparently() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.tfrecord.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&two_frames()).unwrap();
        std::fs::write(&path, enc.finish().unwrap()).unwrap();
        let frames: Vec<_> = TfRecordReader::open(&path)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].payload, b"first payload");
    }
}
