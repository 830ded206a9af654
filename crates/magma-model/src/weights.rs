//! Checked access to a checkpoint's tensors (memory-mapped safetensors), or random ones for benches.

use crate::error::{ModelError, Result};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where tensors come from.
enum Source {
    /// Memory-mapped safetensors and the files they come from.
    Checkpoint(VarBuilder<'static>, Vec<PathBuf>),
    /// Random tensors of sensible scale, created on demand (timing benches only).
    Random,
    /// A `model.gguf` written by `magma quantize`.
    Gguf(crate::quant::GgufTensors),
}

/// A named-tensor store that checks every tensor's presence and shape before handing it out.
pub struct Weights {
    source: Source,
    dtype: DType,
    device: Device,
    /// Block format linear weights are quantized to as they are loaded.
    quantize: Option<crate::quant::QuantFormat>,
    /// A LoRA adapter merged into tensors as they are handed out (see [`crate::adapter`]).
    pub(crate) adapter: Option<std::sync::Arc<crate::adapter::LoraAdapter>>,
}

impl Weights {
    /// Memory-maps `model.safetensors` or every shard listed in `model.safetensors.index.json`.
    ///
    /// Each file is checked first, so a truncated download is reported with its file name.
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        if dir.join(crate::quant::GGUF_FILE).is_file() {
            return Ok(Self {
                source: Source::Gguf(crate::quant::GgufTensors::open_dir(dir)?),
                dtype,
                device: device.clone(),
                quantize: None,
                adapter: None,
            });
        }
        let files = checkpoint_files(dir)?;
        for file in &files {
            check_safetensors_file(file)?;
        }
        // SAFETY: the files are memory-mapped read-only; like every mmap-based loader we rely on
        // them not being modified while the model is alive.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
        Ok(Self {
            source: Source::Checkpoint(vb, files),
            dtype,
            device: device.clone(),
            quantize: None,
            adapter: None,
        })
    }

    /// A store that invents random tensors of the requested shapes (for benches without weights).
    pub fn random(dtype: DType, device: &Device) -> Self {
        Self {
            source: Source::Random,
            dtype,
            device: device.clone(),
            quantize: None,
            adapter: None,
        }
    }

    /// Whether the tensors come from safetensors files (not a `model.gguf` or random).
    pub(crate) fn is_checkpoint(&self) -> bool {
        matches!(self.source, Source::Checkpoint(..))
    }

    /// The dtype tensors are converted to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device tensors are placed on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the checkpoint has a tensor of this name (always false for random weights).
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Checkpoint(vb, _) => vb.contains_tensor(name),
            Source::Random => false,
            Source::Gguf(file) => file.contains(name),
        }
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get_as(name, shape, self.dtype)
    }

    /// Like [`Weights::get`] but converted to `dtype` (norm weights stay f32, for example).
    pub fn get_as(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        match &self.source {
            Source::Checkpoint(vb, _) => {
                let tensor = self.load_unchecked(vb, name)?;
                let tensor = match &self.adapter {
                    Some(adapter) => adapter.apply(name, tensor)?,
                    None => tensor,
                };
                if tensor.dims() != shape {
                    return Err(ModelError::ShapeMismatch {
                        name: name.to_string(),
                        expected: shape.to_vec(),
                        found: tensor.dims().to_vec(),
                    });
                }
                Ok(tensor.to_dtype(dtype)?)
            }
            Source::Random => Ok(random_tensor(name, shape, &self.device)?.to_dtype(dtype)?),
            Source::Gguf(file) => file.dense(name, shape, dtype, &self.device),
        }
    }

    /// The first of `names` that exists (aliases), which must have `shape`.
    pub fn get_alias(&self, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        let found = names.iter().find(|n| self.contains(n));
        match (found, &self.source) {
            (Some(name), _) => self.get(name, shape),
            (None, Source::Random) => self.get(names.first().copied().unwrap_or(""), shape),
            (None, Source::Checkpoint(..) | Source::Gguf(_)) => Err(ModelError::MissingTensor {
                name: names.join("` or `"),
            }),
        }
    }

    /// The shape of a stored tensor (loads it; meant for small tensors while inferring geometry).
    pub fn shape_of(&self, name: &str) -> Result<Vec<usize>> {
        match &self.source {
            Source::Checkpoint(vb, _) => Ok(self.load_unchecked(vb, name)?.dims().to_vec()),
            Source::Random => Err(ModelError::MissingTensor {
                name: name.to_string(),
            }),
            Source::Gguf(file) => file.shape_of(name),
        }
    }

    /// Quantizes linear weights to `format` as they are loaded (`None`: keep them dense).
    /// A `model.gguf` is used as stored.
    pub fn with_quantization(mut self, format: Option<crate::quant::QuantFormat>) -> Self {
        self.quantize = format;
        self
    }

    /// The `[out, in]` weight of a linear layer: as stored in a `model.gguf`, quantized now
    /// (one tensor at a time, see [`Weights::with_quantization`]), or dense.
    pub fn linear_weight(&self, name: &str, shape: &[usize]) -> Result<QMatMul> {
        match (&self.source, self.quantize) {
            (Source::Gguf(file), _) => file.linear(name, shape, self.dtype, &self.device),
            (Source::Random, Some(format)) => random_linear(name, shape, format, &self.device),
            (_, Some(format)) => {
                crate::quant::quantize_linear(name, &self.get_as(name, shape, DType::F32)?, format)
            }
            (_, None) => Ok(QMatMul::Tensor(self.get(name, shape)?)),
        }
    }

    /// An embedding table, kept in its stored dtype when the linear layers are quantized (a
    /// quantized run's point is memory) and converted to [`Weights::dtype`] otherwise.
    ///
    /// Random tables of quantized runs are bf16, the dtype of the released checkpoints.
    pub fn embedding_table(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let half = |dtype: DType| matches!(dtype, DType::BF16 | DType::F16);
        match (&self.source, self.quantize) {
            (Source::Gguf(file), _) => file.embedding_table(name, shape, self.dtype, &self.device),
            (Source::Random, Some(_)) => Ok(crate::random::dense(
                shape,
                random_std(shape),
                DType::BF16,
                crate::random::seed_of(name),
                &self.device,
            )?),
            (Source::Checkpoint(_, files), Some(_)) => {
                match crate::quant::stored_dtype(files, name)? {
                    Some(stored) if half(stored) => self.get_as(name, shape, stored),
                    _ => self.get(name, shape),
                }
            }
            (_, None) => self.get(name, shape),
        }
    }

    fn load_unchecked(&self, vb: &VarBuilder<'static>, name: &str) -> Result<Tensor> {
        if !vb.contains_tensor(name) {
            return Err(ModelError::MissingTensor {
                name: name.to_string(),
            });
        }
        Ok(vb.get_unchecked(name)?)
    }
}

/// Random values: biases 0, other vectors 1 (norm scales, layer scales), matrices N(0, 1/fan_in).
fn random_tensor(name: &str, shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
    if name.ends_with("bias") {
        return Tensor::zeros(shape, DType::F32, device);
    }
    if shape.len() <= 1 {
        return Tensor::ones(shape, DType::F32, device);
    }
    Tensor::randn(0f32, random_std(shape), shape, device)
}

/// The standard deviation of a random matrix: 1/√fan_in.
fn random_std(shape: &[usize]) -> f32 {
    let fan_in: usize = shape.iter().skip(1).product();
    (1.0 / (fan_in.max(1) as f64).sqrt()) as f32
}

/// A random `[out, in]` linear weight built directly in `format`'s block type (dense f32 when
/// no block fits its input dim), without an f32 copy.
fn random_linear(
    name: &str,
    shape: &[usize],
    format: crate::quant::QuantFormat,
    device: &Device,
) -> Result<QMatMul> {
    let (&[rows, cols], Device::Cpu) = (shape, device) else {
        let dense = random_tensor(name, shape, device)?;
        return crate::quant::quantize_linear(name, &dense, format);
    };
    let std = random_std(shape);
    match format.block_type_for(cols).0 {
        Some(block) => {
            let q = crate::random::quantized(block, rows, cols, std, crate::random::seed_of(name))?;
            Ok(QMatMul::QTensor(std::sync::Arc::new(q)))
        }
        None => Ok(QMatMul::Tensor(random_tensor(name, shape, device)?)),
    }
}

/// The safetensors files of a model folder: one file, or the shards of an index.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(ModelError::NoWeights {
            dir: dir.to_path_buf(),
        });
    }
    let text = crate::config::read_text(&index)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: index.clone(),
            source,
        })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::Config {
            path: index.clone(),
            message: "no `weight_map` object".into(),
        })?;
    let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
    Ok(shards.into_iter().map(|s| dir.join(s)).collect())
}

/// Checks that a safetensors file is as long as its header says.
pub fn check_safetensors_file(path: &Path) -> Result<()> {
    let io_err = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |reason: String| ModelError::InvalidSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut len_bytes = [0u8; 8];
    if file_len < 8 {
        return Err(ModelError::TruncatedSafetensors {
            path: path.to_path_buf(),
            expected: 8,
            found: file_len,
        });
    }
    file.read_exact(&mut len_bytes).map_err(io_err)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > 100_000_000 {
        return Err(invalid(format!(
            "header length {header_len} is implausible"
        )));
    }
    if 8 + header_len > file_len {
        return Err(ModelError::TruncatedSafetensors {
            path: path.to_path_buf(),
            expected: 8 + header_len,
            found: file_len,
        });
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io_err)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| invalid(format!("header is not JSON: {e}")))?;
    let entries = header
        .as_object()
        .ok_or_else(|| invalid("header is not a JSON object".into()))?;
    let data_end = entries
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    let expected = 8 + header_len + data_end;
    if file_len < expected {
        return Err(ModelError::TruncatedSafetensors {
            path: path.to_path_buf(),
            expected,
            found: file_len,
        });
    }
    Ok(())
}
