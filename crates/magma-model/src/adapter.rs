//! PEFT LoRA adapters: load an unmerged adapter folder and merge it into the weights as they are
//! loaded, or write one in PEFT's layout.
//!
//! An adapter folder holds `adapter_config.json` and `adapter_model.safetensors`, exactly as
//! PEFT's `save_pretrained` writes them (PEFT 0.12):
//!
//! * LoRA pairs `base_model.model.{module}.lora_A.weight` `[r, in]` and `….lora_B.weight`
//!   `[out, r]` (no adapter name inside the key). The layer computes `W·x + s·B·(A·x)` with
//!   `s = lora_alpha / r` (`lora_alpha / √r` with `use_rslora`); `rank_pattern` /
//!   `alpha_pattern` override `r` / `lora_alpha` for modules whose name ends with a pattern key.
//! * `modules_to_save` (e.g. the projector) as full tensors under their plain path,
//!   `base_model.model.{checkpoint name}`; they replace the base tensors.
//!
//! Merging adds `(B·A)·s` to `W` in float32, in PEFT's order (`merge_and_unload`), then casts
//! back to the weights' dtype. Every adapter tensor is checked against the base checkpoint
//! (present, 2-D, shapes agreeing) before anything is loaded; a wrong or truncated adapter is
//! an error that names the file and the tensor.
//!
//! ```no_run
//! use candle_core::{DType, Device};
//! use magma_model::{adapter::LoraAdapter, MagmaModel};
//! let dir = std::path::Path::new("Magma-8B");
//! let adapter = LoraAdapter::load(std::path::Path::new("runs/x/adapter"))?;
//! let model = MagmaModel::load_with_adapter(dir, &adapter, DType::BF16, &Device::Cpu)?;
//! # Ok::<(), magma_model::ModelError>(())
//! ```
//!
//! For trainers: [`save_peft_adapter`] writes a folder that `peft.PeftModel.from_pretrained`
//! loads (same key names, config fields and safetensors metadata as PEFT), atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::{GenerationConfig, MagmaConfig};
use crate::error::{ModelError, Result};
use crate::model::MagmaModel;
use crate::pipeline::MagmaPipeline;
use crate::quant::QuantFormat;
use crate::vision::TrunkGeometry;
use crate::weights::{check_safetensors_file, Weights};

/// The adapter's config file name.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's tensor file name.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The prefix PEFT puts in front of every module name of a saved adapter.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// `target_modules` of a PEFT config: a list of names (a module matches one if its name equals
/// it or ends with `.name`) or one regex string (PEFT full-matches it against module names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    Regex(String),
}

/// `adapter_config.json` of a LoRA adapter, with every field PEFT 0.12 writes (unknown fields
/// of newer PEFT versions are kept in `extra` and written back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    pub alpha_pattern: BTreeMap<String, f64>,
    pub auto_mapping: Option<serde_json::Value>,
    /// Where the base model is (PEFT writes what it was given: a hub id or a path).
    pub base_model_name_or_path: Option<String>,
    /// `none` (others train biases, not supported when merging).
    pub bias: String,
    pub fan_in_fan_out: bool,
    pub inference_mode: bool,
    /// `true`, `false` or an init scheme name (`"gaussian"`, ...).
    pub init_lora_weights: serde_json::Value,
    pub layer_replication: Option<serde_json::Value>,
    pub layers_pattern: Option<serde_json::Value>,
    pub layers_to_transform: Option<serde_json::Value>,
    pub loftq_config: serde_json::Value,
    #[serde(serialize_with = "integral_as_int")]
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub megatron_config: Option<serde_json::Value>,
    pub megatron_core: Option<String>,
    /// Modules trained in full and saved whole (e.g. `["multi_modal_projector"]`).
    pub modules_to_save: Option<Vec<String>>,
    pub peft_type: String,
    pub r: usize,
    pub rank_pattern: BTreeMap<String, usize>,
    pub revision: Option<String>,
    pub target_modules: Option<TargetModules>,
    pub task_type: Option<String>,
    pub use_dora: bool,
    pub use_rslora: bool,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Default for LoraConfig {
    /// PEFT 0.12's `LoraConfig()` defaults (r 8, alpha 8, task type `CAUSAL_LM` as Magma uses).
    fn default() -> Self {
        Self {
            alpha_pattern: BTreeMap::new(),
            auto_mapping: None,
            base_model_name_or_path: None,
            bias: "none".into(),
            fan_in_fan_out: false,
            inference_mode: true,
            init_lora_weights: serde_json::Value::Bool(true),
            layer_replication: None,
            layers_pattern: None,
            layers_to_transform: None,
            loftq_config: serde_json::json!({}),
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            megatron_config: None,
            megatron_core: Some("megatron.core".into()),
            modules_to_save: None,
            peft_type: "LORA".into(),
            r: 8,
            rank_pattern: BTreeMap::new(),
            revision: None,
            target_modules: None,
            task_type: Some("CAUSAL_LM".into()),
            use_dora: false,
            use_rslora: false,
            extra: BTreeMap::new(),
        }
    }
}

fn integral_as_int<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    // PEFT writes `lora_alpha` as the int it was given; keep `8`, not `8.0`.
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

impl LoraConfig {
    /// The rank PEFT gives module `module` (`rank_pattern` or `r`).
    pub fn rank_of(&self, module: &str) -> usize {
        pattern_value(&self.rank_pattern, module).unwrap_or(self.r)
    }

    /// The alpha PEFT gives module `module` (`alpha_pattern` or `lora_alpha`).
    pub fn alpha_of(&self, module: &str) -> f64 {
        pattern_value(&self.alpha_pattern, module).unwrap_or(self.lora_alpha)
    }

    /// The scaling of module `module`'s update: `alpha / r`, or `alpha / √r` with rsLoRA.
    pub fn scaling_of(&self, module: &str) -> f64 {
        let r = self.rank_of(module) as f64;
        let alpha = self.alpha_of(module);
        if self.use_rslora {
            alpha / r.sqrt()
        } else {
            alpha / r
        }
    }

    /// Whether a list-form `target_modules` names `module` (always true for the regex form,
    /// which is not checked here).
    pub fn lists_target(&self, module: &str) -> bool {
        match &self.target_modules {
            Some(TargetModules::List(names)) => names
                .iter()
                .any(|t| module == t || module.ends_with(&format!(".{t}"))),
            _ => true,
        }
    }
}

/// PEFT's pattern lookup: the first key the module name ends with (as `.key` or equal).
fn pattern_value<T: Copy>(patterns: &BTreeMap<String, T>, module: &str) -> Option<T> {
    patterns
        .iter()
        .find(|(key, _)| module == key.as_str() || module.ends_with(&format!(".{key}")))
        .map(|(_, v)| *v)
}

/// One adapted linear layer: `W += (B·A)·scaling`.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    /// `[r, in]`, float32.
    pub a: Tensor,
    /// `[out, r]`, float32.
    pub b: Tensor,
    pub scaling: f64,
}

/// A loaded PEFT LoRA adapter, keyed by checkpoint tensor names.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub config: LoraConfig,
    /// The folder it was loaded from.
    pub dir: PathBuf,
    /// Adapted weights, by checkpoint name of the weight (`{module}.weight`).
    layers: BTreeMap<String, LoraLayer>,
    /// Whole tensors replacing the base ones (`modules_to_save`), by checkpoint name.
    replacements: BTreeMap<String, Tensor>,
}

impl LoraAdapter {
    /// Reads and checks an adapter folder (tensors on the CPU, float32).
    pub fn load(dir: &Path) -> Result<Self> {
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        let text = crate::config::read_text(&config_path)?;
        let config: LoraConfig =
            serde_json::from_str(&text).map_err(|source| ModelError::Json {
                path: config_path.clone(),
                source,
            })?;
        let bad_config = |message: String| ModelError::Config {
            path: config_path.clone(),
            message,
        };
        if config.peft_type != "LORA" {
            return Err(bad_config(format!(
                "peft_type is `{}`; only LORA adapters can be applied",
                config.peft_type
            )));
        }
        if config.use_dora {
            return Err(bad_config(
                "use_dora: DoRA adapters (magnitude vectors) are not supported".into(),
            ));
        }
        if config.fan_in_fan_out {
            return Err(bad_config(
                "fan_in_fan_out: adapters of Conv1D (GPT-2 style) layers do not fit Magma".into(),
            ));
        }
        if config.bias != "none" {
            return Err(bad_config(format!(
                "bias `{}`: adapters that train biases are not supported",
                config.bias
            )));
        }
        if config.r == 0 {
            return Err(bad_config("r must be at least 1".into()));
        }

        let weights_path = dir.join(ADAPTER_WEIGHTS_FILE);
        check_safetensors_file(&weights_path)?;
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(|e| {
            ModelError::InvalidSafetensors {
                path: weights_path.clone(),
                reason: e.to_string(),
            }
        })?;
        let bad = |key: &str, message: String| ModelError::Config {
            path: weights_path.clone(),
            message: format!("tensor `{key}`: {message}"),
        };

        let mut pairs: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
        let mut replacements = BTreeMap::new();
        for (key, tensor) in tensors {
            let Some(name) = key.strip_prefix(PEFT_PREFIX) else {
                return Err(bad(
                    &key,
                    format!("does not start with `{PEFT_PREFIX}` (not a PEFT adapter file?)"),
                ));
            };
            if let Some(module) = name.strip_suffix(".lora_A.weight") {
                pairs.entry(module.to_string()).or_default().0 = Some(tensor);
            } else if let Some(module) = name.strip_suffix(".lora_B.weight") {
                pairs.entry(module.to_string()).or_default().1 = Some(tensor);
            } else if name.contains("lora_") {
                return Err(bad(
                    &key,
                    "only linear LoRA pairs (`lora_A.weight` / `lora_B.weight`) are supported"
                        .into(),
                ));
            } else {
                let saved = config
                    .modules_to_save
                    .iter()
                    .flatten()
                    .any(|m| name == m || name.starts_with(&format!("{m}.")));
                if !saved {
                    return Err(bad(
                        &key,
                        "is neither a LoRA tensor nor under `modules_to_save`".into(),
                    ));
                }
                replacements.insert(name.to_string(), tensor.to_dtype(DType::F32)?);
            }
        }
        let mut layers = BTreeMap::new();
        for (module, (a, b)) in pairs {
            let key_a = format!("{PEFT_PREFIX}{module}.lora_A.weight");
            let key_b = format!("{PEFT_PREFIX}{module}.lora_B.weight");
            let a = a.ok_or_else(|| bad(&key_a, format!("missing (`{key_b}` is present)")))?;
            let b = b.ok_or_else(|| bad(&key_b, format!("missing (`{key_a}` is present)")))?;
            let (&[r_a, _], &[_, r_b]) = (a.dims(), b.dims()) else {
                return Err(bad(
                    &key_a,
                    format!(
                        "LoRA pair shapes {:?} / {:?} are not 2-D matrices (only linear layers are supported)",
                        a.dims(),
                        b.dims()
                    ),
                ));
            };
            let r = config.rank_of(&module);
            if r_a != r || r_b != r {
                return Err(bad(
                    &key_a,
                    format!(
                        "rank {r_a} (lora_B: {r_b}) but adapter_config.json gives r = {r} for this module"
                    ),
                ));
            }
            if !config.lists_target(&module) {
                return Err(bad(
                    &key_a,
                    format!(
                        "module `{module}` is not in target_modules {:?}",
                        config.target_modules
                    ),
                ));
            }
            layers.insert(
                format!("{module}.weight"),
                LoraLayer {
                    a: a.to_dtype(DType::F32)?,
                    b: b.to_dtype(DType::F32)?,
                    scaling: config.scaling_of(&module),
                },
            );
        }
        if layers.is_empty() && replacements.is_empty() {
            return Err(ModelError::Config {
                path: weights_path,
                message: "the adapter holds no tensors".into(),
            });
        }
        Ok(Self {
            config,
            dir: dir.to_path_buf(),
            layers,
            replacements,
        })
    }

    /// The adapted linear layers, by checkpoint weight name.
    pub fn layers(&self) -> &BTreeMap<String, LoraLayer> {
        &self.layers
    }

    /// The whole tensors the adapter replaces, by checkpoint name.
    pub fn replacements(&self) -> &BTreeMap<String, Tensor> {
        &self.replacements
    }

    /// Checks every adapter tensor against the base weights: present, same shapes.
    pub fn check_against(&self, weights: &Weights) -> Result<()> {
        let file = self.dir.join(ADAPTER_WEIGHTS_FILE);
        let mismatch = |key: String, message: String| ModelError::Config {
            path: file.clone(),
            message: format!("tensor `{key}`: {message}"),
        };
        for (name, layer) in &self.layers {
            let module = name.trim_end_matches(".weight");
            let key = format!("{PEFT_PREFIX}{module}.lora_A.weight");
            if !weights.contains(name) {
                return Err(mismatch(
                    key,
                    format!(
                        "the base model has no linear weight `{name}` (adapter for another model?)"
                    ),
                ));
            }
            let base = weights.shape_of(name)?;
            let (out, inp) = (layer.b.dim(0)?, layer.a.dim(1)?);
            if base != [out, inp] {
                return Err(mismatch(
                    key,
                    format!("adapts a [{out}, {inp}] layer but `{name}` is {base:?} (adapter for another model?)"),
                ));
            }
        }
        for (name, tensor) in &self.replacements {
            let key = format!("{PEFT_PREFIX}{name}");
            if !weights.contains(name) {
                return Err(mismatch(
                    key,
                    format!("the base model has no tensor `{name}` to replace"),
                ));
            }
            let base = weights.shape_of(name)?;
            if base != tensor.dims() {
                return Err(mismatch(
                    key,
                    format!("has shape {:?} but `{name}` is {base:?}", tensor.dims()),
                ));
            }
        }
        Ok(())
    }

    /// The base tensor `name` with the adapter applied: replaced (`modules_to_save`), merged
    /// (`W + (B·A)·s` in float32, cast back to `weight`'s dtype), or unchanged.
    pub fn apply(&self, name: &str, weight: Tensor) -> Result<Tensor> {
        if let Some(tensor) = self.replacements.get(name) {
            return Ok(tensor
                .to_device(weight.device())?
                .to_dtype(weight.dtype())?);
        }
        let Some(layer) = self.layers.get(name) else {
            return Ok(weight);
        };
        let device = weight.device();
        let delta = (layer
            .b
            .to_device(device)?
            .matmul(&layer.a.to_device(device)?)?
            * layer.scaling)?;
        let merged = (weight.to_dtype(DType::F32)? + delta)?;
        Ok(merged.to_dtype(weight.dtype())?)
    }
}

impl Weights {
    /// Applies a LoRA adapter to every tensor handed out from now on (merged at load).
    /// The adapter is checked against the checkpoint first. Only safetensors checkpoints can
    /// take an adapter: a `model.gguf` is already quantized (merge first, then quantize).
    pub fn with_adapter(mut self, adapter: &LoraAdapter) -> Result<Self> {
        if !self.is_checkpoint() {
            return Err(ModelError::Config {
                path: adapter.dir.clone(),
                message: "an adapter can only be merged into safetensors weights, not a model.gguf or random weights".into(),
            });
        }
        adapter.check_against(&self)?;
        self.adapter = Some(Arc::new(adapter.clone()));
        Ok(self)
    }
}

impl MagmaModel {
    /// [`MagmaModel::load`] with a PEFT LoRA adapter merged into the weights as they load.
    pub fn load_with_adapter(
        dir: &Path,
        adapter: &LoraAdapter,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        load_adapted_model(dir, adapter, dtype, device, None)
    }
}

/// A model with the adapter merged, optionally quantizing the merged linear layers as they
/// load (`quantize`: then the weights are read as float32, like
/// [`crate::quant::load_quantized_model`]).
pub fn load_adapted_model(
    dir: &Path,
    adapter: &LoraAdapter,
    dtype: DType,
    device: &Device,
    quantize: Option<QuantFormat>,
) -> Result<MagmaModel> {
    let config = MagmaConfig::from_file(&dir.join("config.json"))?;
    let dtype = if quantize.is_some() {
        DType::F32
    } else {
        dtype
    };
    let weights = Weights::from_dir(dir, dtype, device)?
        .with_quantization(quantize)
        .with_adapter(adapter)?;
    let geometry = TrunkGeometry::infer(&weights)?;
    MagmaModel::from_weights(config, &weights, geometry)
}

/// [`load_adapted_model`] plus the processor and generation config of the folder.
pub fn load_adapted_pipeline(
    dir: &Path,
    adapter: &LoraAdapter,
    dtype: DType,
    device: &Device,
    quantize: Option<QuantFormat>,
) -> Result<MagmaPipeline> {
    let processor = magma_processor::Processor::from_dir(dir)?;
    let model = load_adapted_model(dir, adapter, dtype, device, quantize)?;
    let generation_config =
        GenerationConfig::from_file_or_default(&dir.join("generation_config.json"))?;
    Ok(MagmaPipeline::new(processor, model, generation_config))
}

/// Writes a PEFT adapter folder (`adapter_config.json`, `adapter_model.safetensors` with
/// metadata `{"format": "pt"}`), each file atomically (temporary file, then rename).
///
/// * `lora`: module name (checkpoint naming, e.g.
///   `language_model.model.layers.0.self_attn.q_proj`) → `(A [r, in], B [out, r])`.
/// * `saved`: checkpoint tensor name → tensor, for `modules_to_save` (e.g. every
///   `multi_modal_projector.*` tensor); `config.modules_to_save` should name their modules.
///
/// Keys become `base_model.model.{module}.lora_A.weight` / `….lora_B.weight` and
/// `base_model.model.{name}`, as PEFT saves them. Tensors are written as float32.
pub fn save_peft_adapter(
    dir: &Path,
    config: &LoraConfig,
    lora: &BTreeMap<String, (Tensor, Tensor)>,
    saved: &BTreeMap<String, Tensor>,
) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(2 * lora.len() + saved.len());
    for (module, (a, b)) in lora {
        if a.rank() != 2 || b.rank() != 2 || a.dim(0)? != b.dim(1)? {
            return Err(ModelError::InvalidParams(format!(
                "LoRA pair of `{module}`: A {:?} and B {:?} are not [r, in] and [out, r]",
                a.dims(),
                b.dims()
            )));
        }
        let cpu = |t: &Tensor| -> Result<Tensor> {
            Ok(t.to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .contiguous()?)
        };
        tensors.push((format!("{PEFT_PREFIX}{module}.lora_A.weight"), cpu(a)?));
        tensors.push((format!("{PEFT_PREFIX}{module}.lora_B.weight"), cpu(b)?));
    }
    for (name, tensor) in saved {
        tensors.push((
            format!("{PEFT_PREFIX}{name}"),
            tensor
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .contiguous()?,
        ));
    }
    let weights_path = dir.join(ADAPTER_WEIGHTS_FILE);
    let tmp = dir.join(format!(".{ADAPTER_WEIGHTS_FILE}.tmp"));
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        tensors.iter().map(|(k, t)| (k.as_str(), t)),
        Some(metadata),
        &tmp,
    )
    .map_err(|e| ModelError::InvalidSafetensors {
        path: tmp.clone(),
        reason: format!("cannot write: {e}"),
    })?;
    std::fs::rename(&tmp, &weights_path).map_err(io(&weights_path))?;

    let config_path = dir.join(ADAPTER_CONFIG_FILE);
    let tmp = dir.join(format!(".{ADAPTER_CONFIG_FILE}.tmp"));
    let json = serde_json::to_string_pretty(config).map_err(|source| ModelError::Json {
        path: config_path.clone(),
        source,
    })?;
    std::fs::write(&tmp, json).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &config_path).map_err(io(&config_path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_scaling_follow_peft() {
        let mut config = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            ..Default::default()
        };
        config.rank_pattern.insert("q_proj".into(), 2);
        assert_eq!(config.rank_of("m.layers.0.self_attn.q_proj"), 2);
        assert_eq!(config.rank_of("m.layers.0.self_attn.k_proj"), 4);
        assert_eq!(config.scaling_of("m.layers.0.self_attn.k_proj"), 2.0);
        assert_eq!(config.scaling_of("m.layers.0.self_attn.q_proj"), 4.0);
        config.use_rslora = true;
        assert_eq!(config.scaling_of("x.k_proj"), 4.0);
        // `lora_alpha` is written as PEFT writes it
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["lora_alpha"], serde_json::json!(8));
    }
}
