//! Quantized inference: GGML block formats for the linear layers, load-time quantization of a
//! dense checkpoint, and a reusable GGUF file (`model.gguf`) written tensor by tensor.
//!
//! Only the weights of linear layers (decoder projections and MLPs, `lm_head`, the projector and
//! the ConvNeXt MLPs) are quantized; embeddings, norms, layer scales, convolutions and separators
//! keep their checkpoint dtype, so they are stored losslessly.
//!
//! A block format needs the inner (input) dimension to be a multiple of its block size (256 for
//! the K formats, 32 for Q8_0/Q5_0). When it is not, a tensor falls back like llama.cpp does
//! (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0), and stays dense when even 32 does not divide it.
//!
//! ```no_run
//! use magma_model::quant::{quantize_checkpoint, QuantFormat};
//! let format: QuantFormat = "q4k".parse()?;
//! let report = quantize_checkpoint("Magma-8B".as_ref(), "Magma-8B-q4k".as_ref(), format, &mut |_| {})?;
//! println!("{} of {} tensors quantized", report.quantized, report.tensors);
//! let model = magma_model::MagmaModel::load("Magma-8B-q4k".as_ref(), candle_core::DType::F32, &candle_core::Device::Cpu)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::config::{GenerationConfig, MagmaConfig};
use crate::error::{ModelError, Result};
use crate::model::MagmaModel;
use crate::pipeline::MagmaPipeline;
use crate::vision::TrunkGeometry;
use crate::weights::{checkpoint_files, Weights};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// Name of the quantized weights file inside a model folder.
pub const GGUF_FILE: &str = "model.gguf";
/// Metadata key holding the model's `config.json` text.
const CONFIG_KEY: &str = "magma.config_json";
/// Metadata key holding the requested format name.
const FORMAT_KEY: &str = "magma.quantization";
/// Alignment of tensor data in the file (GGUF's default).
const ALIGNMENT: u64 = 32;

/// What can go wrong while quantizing, writing or reading quantized weights.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// A format name that is not one of [`QuantFormat::NAMES`].
    #[error("unsupported quantization format `{name}`; supported: {}", QuantFormat::NAMES.join(", "))]
    UnsupportedFormat { name: String },
    /// The file is not a GGUF file, or its header is damaged.
    #[error("{path} is not a valid quantized Magma file: {reason}")]
    InvalidFile { path: PathBuf, reason: String },
    /// The file ends before the data of a tensor (interrupted copy or conversion?).
    #[error("{path} is truncated: tensor `{tensor}` needs bytes up to {needed}, the file has {found} (quantize again)")]
    Truncated {
        path: PathBuf,
        tensor: String,
        needed: u64,
        found: u64,
    },
    /// The file was quantized from a model with another `config.json` than its folder's.
    #[error("{path} was quantized from a different model: its embedded config differs from {config} in {field}")]
    ConfigMismatch {
        path: PathBuf,
        config: PathBuf,
        field: String,
    },
    /// A checkpoint tensor has a dtype the converter cannot read.
    #[error(
        "tensor `{name}` in {path} has dtype {dtype}; only F32, F16 and BF16 can be quantized"
    )]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A block quantization format for linear weights.
///
/// ```
/// use magma_model::quant::QuantFormat;
/// assert_eq!("q4k".parse::<QuantFormat>().unwrap(), QuantFormat::Q4K);
/// assert_eq!("Q8_0".parse::<QuantFormat>().unwrap().name(), "q8_0");
/// assert!("q3_x".parse::<QuantFormat>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantFormat {
    /// 8-bit, blocks of 32 (8.5 bits per weight).
    Q8_0,
    /// 4-bit K-quant, super-blocks of 256 (4.5 bits per weight).
    Q4K,
    /// 5-bit K-quant, super-blocks of 256 (5.5 bits per weight).
    Q5K,
    /// 6-bit K-quant, super-blocks of 256 (6.56 bits per weight).
    Q6K,
}

impl QuantFormat {
    /// The accepted names, as written by [`QuantFormat::name`].
    pub const NAMES: [&'static str; 4] = ["q4k", "q5k", "q6k", "q8_0"];

    /// Canonical lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4K => "q4k",
            Self::Q5K => "q5k",
            Self::Q6K => "q6k",
        }
    }

    /// The GGML block type of this format.
    pub fn ggml(self) -> GgmlDType {
        match self {
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4K => GgmlDType::Q4K,
            Self::Q5K => GgmlDType::Q5K,
            Self::Q6K => GgmlDType::Q6K,
        }
    }

    /// The block type used for a weight of `in_dim` inputs, and why it is not the requested one.
    ///
    /// ```
    /// use candle_core::quantized::GgmlDType;
    /// use magma_model::quant::QuantFormat;
    /// assert_eq!(QuantFormat::Q4K.block_type_for(4096).0, Some(GgmlDType::Q4K));
    /// // the tiny fixtures' 64-wide layers cannot hold 256-blocks
    /// assert_eq!(QuantFormat::Q4K.block_type_for(64).0, Some(GgmlDType::Q5_0));
    /// // 48 is not a multiple of 32 either: the weight stays dense
    /// assert_eq!(QuantFormat::Q8_0.block_type_for(48).0, None);
    /// ```
    pub fn block_type_for(self, in_dim: usize) -> (Option<GgmlDType>, Option<String>) {
        let wanted = self.ggml();
        // llama.cpp's fallbacks for rows that do not fit a 256-wide super-block, then Q8_0
        let chain: &[GgmlDType] = match self {
            Self::Q4K => &[GgmlDType::Q4K, GgmlDType::Q5_0, GgmlDType::Q8_0],
            Self::Q5K => &[GgmlDType::Q5K, GgmlDType::Q5_1, GgmlDType::Q8_0],
            Self::Q6K => &[GgmlDType::Q6K, GgmlDType::Q8_0],
            Self::Q8_0 => &[GgmlDType::Q8_0],
        };
        let fits = |block: GgmlDType| in_dim > 0 && in_dim.is_multiple_of(row_multiple(block));
        match chain.iter().copied().find(|&block| fits(block)) {
            Some(block) if block == wanted => (Some(block), None),
            Some(block) => {
                let reason = format!(
                    "input dim {in_dim} is not a multiple of {}, using {block:?}",
                    row_multiple(wanted)
                );
                (Some(block), Some(reason))
            }
            None => {
                let reason = format!("input dim {in_dim} is not a multiple of 32, kept dense");
                (None, Some(reason))
            }
        }
    }
}

/// What a row length must be a multiple of for `block`: its block size, or two blocks for the
/// formats whose candle CPU dot product walks blocks in pairs (Q4_1, Q5_0, Q5_1).
fn row_multiple(block: GgmlDType) -> usize {
    match block {
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => 2 * block.block_size(),
        _ => block.block_size(),
    }
}

impl FromStr for QuantFormat {
    type Err = QuantError;

    fn from_str(name: &str) -> std::result::Result<Self, QuantError> {
        match name.to_ascii_lowercase().replace('-', "_").as_str() {
            "q8_0" | "q8" => Ok(Self::Q8_0),
            "q4k" | "q4_k" | "q4_k_m" => Ok(Self::Q4K),
            "q5k" | "q5_k" => Ok(Self::Q5K),
            "q6k" | "q6_k" => Ok(Self::Q6K),
            _ => Err(QuantError::UnsupportedFormat {
                name: name.to_string(),
            }),
        }
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a checkpoint tensor is the weight of a layer that runs through [`crate::linear::Linear`].
///
/// ```
/// use magma_model::quant::is_linear_weight;
/// assert!(is_linear_weight("language_model.model.layers.0.mlp.down_proj.weight", 2));
/// assert!(is_linear_weight("vision_tower.clip_vision_model.trunk.stages.0.blocks.0.mlp.fc1.weight", 2));
/// assert!(!is_linear_weight("language_model.model.embed_tokens.weight", 2));
/// assert!(!is_linear_weight("vision_tower.clip_vision_model.head.proj.weight", 2)); // unused head
/// ```
pub fn is_linear_weight(name: &str, rank: usize) -> bool {
    let projector_layer = name.starts_with("multi_modal_projector.proj.");
    rank == 2
        && name.ends_with(".weight")
        && (projector_layer
            || name.ends_with("_proj.weight")
            || name.ends_with("lm_head.weight")
            || name.ends_with("mlp.fc1.weight")
            || name.ends_with("mlp.fc2.weight"))
}

/// Quantizes a dense `[out, in]` linear weight for load-time quantization; the dense tensor can be
/// dropped afterwards. Weights whose input dim fits no block stay dense (with a logged reason).
pub fn quantize_linear(name: &str, weight: &Tensor, format: QuantFormat) -> Result<QMatMul> {
    let in_dim = weight.dims().last().copied().unwrap_or(0);
    let (block, reason) = format.block_type_for(in_dim);
    if let Some(reason) = reason {
        tracing::warn!("{name}: {reason}");
    }
    match block {
        Some(block) => {
            let q = QTensor::quantize(&weight.to_dtype(DType::F32)?, block)?;
            Ok(QMatMul::QTensor(Arc::new(q)))
        }
        None => Ok(QMatMul::Tensor(weight.clone())),
    }
}

/// Loads a model folder and quantizes its linear layers while loading (one tensor at a time, so
/// no full f32 copy of the model is ever held). A folder that already holds a `model.gguf` is
/// loaded as it is.
pub fn load_quantized_model(
    dir: &Path,
    format: QuantFormat,
    device: &Device,
) -> Result<MagmaModel> {
    let config = MagmaConfig::from_file(&dir.join("config.json"))?;
    let weights = Weights::from_dir(dir, DType::F32, device)?.with_quantization(Some(format));
    let geometry = TrunkGeometry::infer(&weights)?;
    MagmaModel::from_weights(config, &weights, geometry)
}

/// [`load_quantized_model`] plus the processor and generation config of the folder.
pub fn load_quantized_pipeline(
    dir: &Path,
    format: QuantFormat,
    device: &Device,
) -> Result<MagmaPipeline> {
    let processor = magma_processor::Processor::from_dir(dir)?;
    let model = load_quantized_model(dir, format, device)?;
    let generation_config =
        GenerationConfig::from_file_or_default(&dir.join("generation_config.json"))?;
    Ok(MagmaPipeline::new(processor, model, generation_config))
}

// ---------------------------------------------------------------------------------------------
// Conversion: safetensors -> GGUF, one tensor at a time
// ---------------------------------------------------------------------------------------------

/// One tensor of a safetensors checkpoint, located but not read.
struct SourceTensor {
    file: PathBuf,
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in `file`.
    start: u64,
    end: u64,
}

/// How one tensor is stored in the output.
struct PlannedTensor {
    source: SourceTensor,
    /// `None`: written as it is (F32/F16/BF16).
    block: Option<GgmlDType>,
    stored: GgmlDType,
    bytes: u64,
}

/// Progress of [`quantize_checkpoint`], reported after each tensor.
#[derive(Debug, Clone)]
pub struct QuantizeProgress<'a> {
    pub tensor: &'a str,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// What [`quantize_checkpoint`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeReport {
    pub output: PathBuf,
    pub format: String,
    pub tensors: usize,
    /// Tensors stored in a block format (the requested one or a fallback).
    pub quantized: usize,
    /// Bytes of tensor data read from the checkpoint.
    pub source_bytes: u64,
    /// Size of `model.gguf`.
    pub output_bytes: u64,
    /// `tensor: reason` for every linear weight not stored in the requested format.
    pub fallbacks: Vec<String>,
    /// Non-weight files copied next to `model.gguf` (config, tokenizer, processor…).
    pub copied_files: Vec<String>,
}

/// Writes `out_dir/model.gguf` (linear weights in `format`, everything else as stored) plus the
/// folder's config, tokenizer and processor files, so `out_dir` runs on its own.
///
/// Tensors are read from the checkpoint and written one at a time: peak memory is about one f32
/// tensor plus its quantized copy, whatever the model size.
pub fn quantize_checkpoint(
    src_dir: &Path,
    out_dir: &Path,
    format: QuantFormat,
    progress: &mut dyn FnMut(QuantizeProgress<'_>),
) -> Result<QuantizeReport> {
    let config_path = src_dir.join("config.json");
    let config_text = crate::config::read_text(&config_path)?;
    MagmaConfig::from_json_str(&config_text, &config_path)?;
    let mut tensors = Vec::new();
    for file in checkpoint_files(src_dir)? {
        crate::weights::check_safetensors_file(&file)?;
        tensors.extend(read_safetensors_index(&file)?);
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut fallbacks = Vec::new();
    let planned = tensors
        .into_iter()
        .map(|source| plan(source, format, &mut fallbacks))
        .collect::<Vec<_>>();

    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| QuantError::Write { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(write_err(out_dir))?;
    let copied_files = copy_side_files(src_dir, out_dir)?;
    let output = out_dir.join(GGUF_FILE);
    // written under another name first, so an interrupted run never leaves a plausible model.gguf
    let partial = out_dir.join(format!("{GGUF_FILE}.partial"));
    let metadata = [
        ("general.architecture", "magma".to_string()),
        (FORMAT_KEY, format.name().to_string()),
        (CONFIG_KEY, config_text),
    ];
    let source_bytes: u64 = planned.iter().map(|p| p.source.end - p.source.start).sum();
    let file = File::create(&partial).map_err(write_err(&partial))?;
    let mut writer = GgufWriter::start(BufWriter::new(file), &metadata, &planned)
        .map_err(write_err(&partial))?;
    let mut done_bytes = 0;
    for tensor in &planned {
        let data = encode(tensor)?;
        writer.tensor(&data).map_err(write_err(&partial))?;
        done_bytes += tensor.source.end - tensor.source.start;
        progress(QuantizeProgress {
            tensor: &tensor.source.name,
            done_bytes,
            total_bytes: source_bytes,
        });
    }
    writer.finish().map_err(write_err(&partial))?;
    std::fs::rename(&partial, &output).map_err(write_err(&output))?;
    let output_bytes = std::fs::metadata(&output)
        .map_err(write_err(&output))?
        .len();
    Ok(QuantizeReport {
        output,
        format: format.name().to_string(),
        tensors: planned.len(),
        quantized: planned.iter().filter(|p| p.block.is_some()).count(),
        source_bytes,
        output_bytes,
        fallbacks,
        copied_files,
    })
}

fn plan(source: SourceTensor, format: QuantFormat, fallbacks: &mut Vec<String>) -> PlannedTensor {
    let elems: usize = source.shape.iter().product();
    let mut block = None;
    if is_linear_weight(&source.name, source.shape.len()) {
        let (chosen, reason) = format.block_type_for(source.shape.last().copied().unwrap_or(0));
        if let Some(reason) = reason {
            fallbacks.push(format!("{}: {reason}", source.name));
        }
        block = chosen;
    }
    let stored = match (block, source.dtype) {
        (Some(block), _) => block,
        (None, DType::F16) => GgmlDType::F16,
        (None, DType::BF16) => GgmlDType::BF16,
        (None, _) => GgmlDType::F32,
    };
    let bytes = (elems / stored.block_size() * stored.type_size()) as u64;
    PlannedTensor {
        source,
        block,
        stored,
        bytes,
    }
}

/// Reads one tensor from its checkpoint file and encodes it as planned.
fn encode(tensor: &PlannedTensor) -> Result<Vec<u8>> {
    let src = &tensor.source;
    let io_err = |source| ModelError::Io {
        path: src.file.clone(),
        source,
    };
    let mut file = File::open(&src.file).map_err(io_err)?;
    file.seek(SeekFrom::Start(src.start)).map_err(io_err)?;
    let mut raw = vec![0u8; (src.end - src.start) as usize];
    file.read_exact(&mut raw).map_err(io_err)?;
    let Some(block) = tensor.block else {
        // F32/F16/BF16 little-endian bytes are already GGUF's layout
        return Ok(raw);
    };
    let dense = Tensor::from_raw_buffer(&raw, src.dtype, &src.shape, &Device::Cpu)?;
    drop(raw);
    let quantized = QTensor::quantize(&dense.to_dtype(DType::F32)?, block)?;
    Ok(quantized.data()?.into_owned())
}

/// The dtype `name` is stored in by the checkpoint `files` (`None`: no such tensor).
pub(crate) fn stored_dtype(files: &[PathBuf], name: &str) -> Result<Option<DType>> {
    for file in files {
        if let Some(tensor) = read_safetensors_index(file)?
            .into_iter()
            .find(|t| t.name == name)
        {
            return Ok(Some(tensor.dtype));
        }
    }
    Ok(None)
}

/// The tensor table of a safetensors file (names, dtypes, shapes, byte ranges).
fn read_safetensors_index(path: &Path) -> Result<Vec<SourceTensor>> {
    let invalid = |reason: String| ModelError::InvalidSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let io_err = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io_err)?;
    let header_len = u64::from_le_bytes(len);
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io_err)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| invalid(format!("header: {e}")))?;
    let data_start = 8 + header_len;
    let mut tensors = Vec::new();
    for (name, entry) in header.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
        let field = |key: &str| {
            entry
                .get(key)
                .ok_or_else(|| invalid(format!("tensor `{name}` has no `{key}`")))
        };
        let dtype_name = field("dtype")?.as_str().unwrap_or_default().to_string();
        let dtype = match dtype_name.as_str() {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            _ => {
                return Err(QuantError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    dtype: dtype_name,
                }
                .into())
            }
        };
        let numbers = |key: &str| -> Result<Vec<u64>> {
            field(key)?
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_u64()).collect::<Option<Vec<_>>>())
                .ok_or_else(|| {
                    invalid(format!(
                        "tensor `{name}`: `{key}` is not a list of integers"
                    ))
                })
        };
        let shape: Vec<usize> = numbers("shape")?.into_iter().map(|d| d as usize).collect();
        let offsets = numbers("data_offsets")?;
        let (start, end) = match offsets.as_slice() {
            [start, end] if start <= end => (*start, *end),
            _ => {
                return Err(invalid(format!(
                    "tensor `{name}`: bad data_offsets {offsets:?}"
                )))
            }
        };
        let expected = shape.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64;
        if end - start != expected {
            return Err(invalid(format!(
                "tensor `{name}` holds {} bytes, shape {shape:?} of {dtype_name} needs {expected}",
                end - start
            )));
        }
        tensors.push(SourceTensor {
            file: path.to_path_buf(),
            name: name.clone(),
            dtype,
            shape,
            start: data_start + start,
            end: data_start + end,
        });
    }
    Ok(tensors)
}

/// Copies every file of `src_dir` that is not a weight file (config, tokenizer, processor,
/// chat template, custom code…).
fn copy_side_files(src_dir: &Path, out_dir: &Path) -> Result<Vec<String>> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| ModelError::Io { path, source }
    };
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(src_dir).map_err(io_err(src_dir))? {
        let path = entry.map_err(io_err(src_dir))?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let weight_file = [
            ".safetensors",
            ".gguf",
            ".gguf.partial",
            ".bin",
            ".pt",
            ".pth",
        ]
        .iter()
        .any(|ext| name.ends_with(ext))
            || name == "model.safetensors.index.json";
        if !path.is_file() || weight_file {
            continue;
        }
        let target = out_dir.join(&name);
        std::fs::copy(&path, &target).map_err(|source| QuantError::Write {
            path: target.clone(),
            source,
        })?;
        copied.push(name);
    }
    copied.sort();
    Ok(copied)
}

/// A GGUF v3 writer that takes the tensor table up front and the data one tensor at a time
/// (candle's `gguf_file::write` needs every tensor in memory at once).
struct GgufWriter<W: Write> {
    out: W,
    /// Expected byte size of each tensor still to come, in order.
    pending: std::collections::VecDeque<u64>,
}

impl<W: Write> GgufWriter<W> {
    fn start(
        mut out: W,
        metadata: &[(&str, String)],
        tensors: &[PlannedTensor],
    ) -> std::io::Result<Self> {
        let mut written = 0u64;
        let mut put = |out: &mut W, bytes: &[u8]| -> std::io::Result<()> {
            written += bytes.len() as u64;
            out.write_all(bytes)
        };
        put(&mut out, b"GGUF")?;
        put(&mut out, &3u32.to_le_bytes())?;
        put(&mut out, &(tensors.len() as u64).to_le_bytes())?;
        put(&mut out, &(metadata.len() as u64).to_le_bytes())?;
        for (key, value) in metadata {
            put(&mut out, &(key.len() as u64).to_le_bytes())?;
            put(&mut out, key.as_bytes())?;
            put(&mut out, &8u32.to_le_bytes())?; // value type: string
            put(&mut out, &(value.len() as u64).to_le_bytes())?;
            put(&mut out, value.as_bytes())?;
        }
        let mut offset = 0u64;
        for tensor in tensors {
            let name = &tensor.source.name;
            put(&mut out, &(name.len() as u64).to_le_bytes())?;
            put(&mut out, name.as_bytes())?;
            put(&mut out, &(tensor.source.shape.len() as u32).to_le_bytes())?;
            // GGUF lists dimensions innermost first
            for &dim in tensor.source.shape.iter().rev() {
                put(&mut out, &(dim as u64).to_le_bytes())?;
            }
            put(&mut out, &ggml_type_id(tensor.stored).to_le_bytes())?;
            put(&mut out, &offset.to_le_bytes())?;
            offset += tensor.bytes.div_ceil(ALIGNMENT) * ALIGNMENT;
        }
        let padding = written.div_ceil(ALIGNMENT) * ALIGNMENT - written;
        out.write_all(&vec![0u8; padding as usize])?;
        Ok(Self {
            out,
            pending: tensors.iter().map(|t| t.bytes).collect(),
        })
    }

    fn tensor(&mut self, data: &[u8]) -> std::io::Result<()> {
        let expected = self.pending.pop_front();
        if expected != Some(data.len() as u64) {
            return Err(std::io::Error::other(format!(
                "tensor data of {} bytes where the table promised {expected:?}",
                data.len()
            )));
        }
        self.out.write_all(data)?;
        let len = data.len() as u64;
        let padding = len.div_ceil(ALIGNMENT) * ALIGNMENT - len;
        self.out.write_all(&vec![0u8; padding as usize])
    }

    fn finish(mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            return Err(std::io::Error::other(format!(
                "{} tensors were not written",
                self.pending.len()
            )));
        }
        self.out.flush()
    }
}

/// GGML's on-disk type ids of the types this module writes.
fn ggml_type_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading model.gguf
// ---------------------------------------------------------------------------------------------

/// The tensors of a `model.gguf` written by [`quantize_checkpoint`], read on demand.
///
/// Quantized tensors are loaded as they are stored (no dense copy); the others are
/// converted to the requested dtype.
pub struct GgufTensors {
    path: PathBuf,
    content: Content,
    file: Mutex<File>,
}

impl std::fmt::Debug for GgufTensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTensors")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufTensors {
    /// Opens `dir/model.gguf`, checks that every tensor's data is in the file and that the
    /// embedded config equals `dir/config.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(GGUF_FILE);
        let invalid = |reason: String| QuantError::InvalidFile {
            path: path.clone(),
            reason,
        };
        let mut file = File::open(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        let content = Content::read(&mut file).map_err(|e| invalid(e.to_string()))?;
        let found = file
            .metadata()
            .map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        for (name, info) in &content.tensor_infos {
            // a damaged header can hold dimensions whose product (or byte range) overflows
            let overflow = || {
                invalid(format!(
                    "tensor `{name}`: shape {:?} at offset {} is too large",
                    info.shape.dims(),
                    info.offset
                ))
            };
            let elems = info
                .shape
                .dims()
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(overflow)?;
            let block = info.ggml_dtype.block_size();
            if !elems.is_multiple_of(block) {
                return Err(invalid(format!(
                    "tensor `{name}`: {elems} values do not fill blocks of {block}"
                ))
                .into());
            }
            let needed = (elems / block)
                .checked_mul(info.ggml_dtype.type_size())
                .and_then(|bytes| {
                    content
                        .tensor_data_offset
                        .checked_add(info.offset)?
                        .checked_add(bytes as u64)
                })
                .ok_or_else(overflow)?;
            if needed > found {
                return Err(QuantError::Truncated {
                    path: path.clone(),
                    tensor: name.clone(),
                    needed,
                    found,
                }
                .into());
            }
        }
        let embedded = match content.metadata.get(CONFIG_KEY) {
            Some(Value::String(text)) => text.clone(),
            _ => {
                return Err(invalid(format!(
                    "no `{CONFIG_KEY}` metadata: not written by `magma quantize`"
                ))
                .into())
            }
        };
        let folder_config = dir.join("config.json");
        let ours = MagmaConfig::from_json_str(&embedded, &path)?;
        let theirs = MagmaConfig::from_file(&folder_config)?;
        if let Some(field) = first_difference(&ours, &theirs) {
            return Err(QuantError::ConfigMismatch {
                path,
                config: folder_config,
                field,
            }
            .into());
        }
        Ok(Self {
            path,
            content,
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format name it was quantized with (`q4k`, …).
    pub fn format(&self) -> Option<&str> {
        match self.content.metadata.get(FORMAT_KEY) {
            Some(Value::String(name)) => Some(name),
            _ => None,
        }
    }

    /// Whether the file has this tensor.
    pub fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The shape of a stored tensor.
    pub fn shape_of(&self, name: &str) -> Result<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|info| info.shape.dims().to_vec())
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
            })
    }

    fn read(&self, name: &str, shape: &[usize], device: &Device) -> Result<QTensor> {
        let found = self.shape_of(name)?;
        if found != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found,
            });
        }
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tensor =
            self.content
                .tensor(&mut *file, name, device)
                .map_err(|e| QuantError::InvalidFile {
                    path: self.path.clone(),
                    reason: format!("tensor `{name}`: {e}"),
                })?;
        Ok(tensor)
    }

    /// A tensor as a dense one of `dtype` (dequantized if it is stored quantized).
    pub fn dense(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        Ok(self
            .read(name, shape, device)?
            .dequantize(device)?
            .to_dtype(dtype)?)
    }

    /// An embedding table: F16/BF16 as stored (its rows are converted when looked up), anything
    /// else dense in `dtype`.
    pub fn embedding_table(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let tensor = self.read(name, shape, device)?;
        let stored = match tensor.dtype() {
            GgmlDType::F16 => DType::F16,
            GgmlDType::BF16 => DType::BF16,
            _ => return Ok(tensor.dequantize(device)?.to_dtype(dtype)?),
        };
        Ok(Tensor::from_raw_buffer(
            &tensor.data()?,
            stored,
            shape,
            device,
        )?)
    }

    /// A linear weight: quantized as stored, or dense in `dtype`.
    pub fn linear(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<QMatMul> {
        let tensor = self.read(name, shape, device)?;
        match tensor.dtype() {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                Ok(QMatMul::Tensor(tensor.dequantize(device)?.to_dtype(dtype)?))
            }
            _ => Ok(QMatMul::QTensor(Arc::new(tensor))),
        }
    }
}

/// The first architecture field in which two configs differ, named as in `config.json`.
fn first_difference(a: &MagmaConfig, b: &MagmaConfig) -> Option<String> {
    let (ta, tb) = (&a.text, &b.text);
    let fields: [(&str, usize, usize); 7] = [
        ("hidden_size", ta.hidden_size, tb.hidden_size),
        (
            "intermediate_size",
            ta.intermediate_size,
            tb.intermediate_size,
        ),
        (
            "num_hidden_layers",
            ta.num_hidden_layers,
            tb.num_hidden_layers,
        ),
        (
            "num_attention_heads",
            ta.num_attention_heads,
            tb.num_attention_heads,
        ),
        ("num_key_value_heads", ta.kv_heads(), tb.kv_heads()),
        ("vocab_size", ta.vocab_size, tb.vocab_size),
        (
            "vision_config.mm_hidden_size",
            a.vision.mm_hidden_size,
            b.vision.mm_hidden_size,
        ),
    ];
    if let Some((field, x, y)) = fields.iter().find(|(_, x, y)| x != y) {
        return Some(format!("`{field}` ({x} in the file, {y} in the folder)"));
    }
    (a != b).then(|| "other settings (rope, eps, projector or anyres strategy)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_follow_block_sizes() {
        let q4k = QuantFormat::Q4K;
        assert_eq!(q4k.block_type_for(4096), (Some(GgmlDType::Q4K), None));
        // ConvNeXt-XXL stage 0 is 384 wide: not a multiple of 256, but of 32
        let (block, reason) = q4k.block_type_for(384);
        assert_eq!(block, Some(GgmlDType::Q5_0));
        assert!(reason.unwrap_or_default().contains("384"));
        assert_eq!(QuantFormat::Q6K.block_type_for(96).0, Some(GgmlDType::Q8_0));
        assert_eq!(
            QuantFormat::Q5K.block_type_for(128).0,
            Some(GgmlDType::Q5_1)
        );
        // candle's Q5_0/Q5_1 dot products need an even number of 32-blocks: 160 = 5 blocks
        assert_eq!(
            QuantFormat::Q4K.block_type_for(160).0,
            Some(GgmlDType::Q8_0)
        );
        assert_eq!(
            QuantFormat::Q8_0.block_type_for(64),
            (Some(GgmlDType::Q8_0), None)
        );
        assert_eq!(QuantFormat::Q8_0.block_type_for(40).0, None);
        assert_eq!(QuantFormat::Q4K.block_type_for(0).0, None);
    }

    #[test]
    fn format_names_round_trip_and_reject_unknown() {
        for name in QuantFormat::NAMES {
            assert_eq!(
                name.parse::<QuantFormat>().map(|f| f.name()).ok(),
                Some(name)
            );
        }
        let err = "q3_x".parse::<QuantFormat>().unwrap_err().to_string();
        assert!(
            err.contains("q3_x") && err.contains("q4k, q5k, q6k, q8_0"),
            "{err}"
        );
    }

    #[test]
    fn q4k_linear_stays_close_to_dense() -> Result<()> {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 0.05, (64, 512), &device)?;
        let x = Tensor::randn(0f32, 1.0, (3, 512), &device)?;
        let dense = x.matmul(&weight.t()?)?;
        let quantized =
            candle_core::Module::forward(&quantize_linear("w", &weight, QuantFormat::Q4K)?, &x)?;
        let err = (&quantized - &dense)?
            .sqr()?
            .mean_all()?
            .sqrt()?
            .to_scalar::<f32>()?;
        let scale = dense.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?;
        // 4.5-bit blocks on Gaussian weights: about 8 % relative RMS error (measured 0.080),
        // far from noise (100 %)
        assert!(err / scale < 0.12, "relative rms error {}", err / scale);
        assert!(err / scale > 1e-4, "the weight was not quantized at all");
        Ok(())
    }
}
