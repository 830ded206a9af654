//! A tiny `.npy` (NumPy format v1.0/2.0) reader and writer: little-endian, C order.
//!
//! ```
//! use magma_processor::npy;
//! let bytes = npy::to_bytes_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
//! let array = npy::from_bytes(&bytes, "example")?;
//! assert_eq!(array.shape, vec![2, 3]);
//! assert_eq!(array.to_f32(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! # Ok::<(), magma_processor::ProcessorError>(())
//! ```

use std::io::Write;
use std::path::Path;

use crate::ProcessorError;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element data of an array, by dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

impl NpyArray {
    /// The elements converted to `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            NpyData::F32(v) => v.clone(),
            NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::U8(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The elements as `i64`, or `None` for floating-point data.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match &self.data {
            NpyData::I64(v) => Some(v.clone()),
            NpyData::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            NpyData::U8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            NpyData::F32(_) | NpyData::F64(_) => None,
        }
    }
}

/// Serialises a float32 array as `.npy` v1.0 bytes. `data.len()` must equal the product of `shape`.
pub fn to_bytes_f32(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let shape_text = match shape {
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a float32 `.npy` file atomically: to a temporary file next to `path`, then renamed.
pub fn write_f32(path: &Path, data: &[f32], shape: &[usize]) -> Result<(), ProcessorError> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(ProcessorError::Npy {
            path: path.to_path_buf(),
            message: format!("shape {shape:?} does not hold {} values", data.len()),
        });
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "array.npy".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&to_bytes_f32(data, shape))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ProcessorError::io(path, e)
    })
}

/// Reads a `.npy` file (dtypes `<f4`, `<f8`, `<i8`, `<i4`, `|u1`; C order).
pub fn read(path: &Path) -> Result<NpyArray, ProcessorError> {
    let bytes = std::fs::read(path).map_err(|e| ProcessorError::io(path, e))?;
    from_bytes(&bytes, &path.display().to_string())
}

/// Parses `.npy` bytes; `what` names the source in errors.
pub fn from_bytes(bytes: &[u8], what: &str) -> Result<NpyArray, ProcessorError> {
    let bad = |message: String| ProcessorError::Npy {
        path: what.into(),
        message,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic".into()));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported format version {v}"))),
    };
    let header = bytes
        .get(header_start..header_start + header_len)
        .ok_or_else(|| bad("header runs past the end of the file".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let descr = dict_value(header, "descr")
        .and_then(|v| {
            let quote = v.chars().next().filter(|c| *c == '\'' || *c == '"')?;
            v[1..].split(quote).next()
        })
        .ok_or_else(|| bad("header has no 'descr' string".into()))?;
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("Fortran-order arrays are not supported".into()));
    }
    let shape_text =
        dict_value(header, "shape").ok_or_else(|| bad("header has no 'shape'".into()))?;
    let shape = shape_text
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("bad shape {shape_text}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // a damaged header can hold dimensions whose product overflows
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let body = &bytes[header_start + header_len..];
    let width = match descr {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "|u1" | "<u1" => 1,
        other => return Err(bad(format!("unsupported dtype {other}"))),
    };
    match count.and_then(|count| count.checked_mul(width)) {
        Some(needed) if needed == body.len() => {}
        Some(needed) => {
            return Err(bad(format!(
                "shape {shape:?} of {descr} needs {needed} bytes of data, found {}",
                body.len()
            )))
        }
        None => return Err(bad(format!("shape {shape:?} of {descr} is too large"))),
    }
    let data = match descr {
        "<f4" => NpyData::F32(
            body.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        "<i4" => NpyData::I32(
            body.chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        "<f8" => NpyData::F64(
            body.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        "<i8" => NpyData::I64(
            body.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        _ => NpyData::U8(body.to_vec()),
    };
    Ok(NpyArray { shape, data })
}

/// The raw text after `'key':` in a NumPy header dict, up to the end of the header.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let at = quoted
        .iter()
        .find_map(|q| header.find(q.as_str()).map(|i| i + q.len()))?;
    let rest = header[at..].trim_start().strip_prefix(':')?;
    Some(rest.trim_start())
}
