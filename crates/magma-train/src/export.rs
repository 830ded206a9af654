//! What a finished run leaves outside `checkpoints/`: a PEFT adapter folder (LoRA modes) that
//! `peft.PeftModel.from_pretrained` and `magma generate --adapter` load, or a Hugging Face
//! model folder (full / projector, or LoRA merged with `--merge`) that `magma generate` loads.

use crate::error::{io_err, Result, TrainError};
use crate::lora::{LoraPlan, PEFT_PREFIX};
use crate::model::TrainModel;
use crate::trainer::{write_atomic, write_safetensors};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Shards of a written model folder stay below this size (as transformers' default 5 GB).
const SHARD_BYTES: usize = 4 << 30;

/// Writes `adapter_model.safetensors` (PEFT key names: `base_model.model.{module}.lora_A.weight`,
/// projector tensors under their plain path as PEFT stores `modules_to_save`) and
/// `adapter_config.json`.
pub fn write_adapter(
    model: &TrainModel,
    plan: &LoraPlan,
    base_model: &str,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    write_safetensors(
        &dir.join("adapter_model.safetensors"),
        &model.state_tensors()?,
    )?;
    let trains_projector = model
        .params()
        .iter()
        .any(|p| p.name.starts_with("multi_modal_projector."));
    let config = serde_json::json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layer_replication": null,
        "layers_pattern": null,
        "layers_to_transform": null,
        "loftq_config": {},
        "lora_alpha": plan.alpha,
        "lora_dropout": plan.dropout,
        "megatron_config": null,
        "megatron_core": "megatron.core",
        "modules_to_save": if trains_projector { serde_json::json!(["multi_modal_projector"]) } else { serde_json::Value::Null },
        "peft_type": "LORA",
        "r": plan.r,
        "rank_pattern": {},
        "revision": null,
        // a regex string: PEFT full-matches it, so it cannot hit the projector's `0`/`2` by suffix
        "target_modules": LoraPlan::peft_target_regex(&model.lora_modules),
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": false
    });
    let text =
        serde_json::to_string_pretty(&config).map_err(|e| TrainError::Data(e.to_string()))?;
    write_atomic(&dir.join("adapter_config.json"), text.as_bytes())
}

/// Writes a full model folder: every base tensor, trained ones replaced (and, when `merge`,
/// LoRA folded in: `W += (alpha/r)·B·A` in f32), in the base's dtypes, sharded with an index
/// when large; config, tokenizer, processor and generation files copied from the base.
pub fn write_model(model: &TrainModel, dir: &Path, merge: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let base = &model.dir;
    let files = magma_model::weights::checkpoint_files(base)?;
    // SAFETY: read-only mapping of the base checkpoint while we copy it
    let mapped = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files)? };
    let mut trained: BTreeMap<String, Tensor> = model
        .params()
        .iter()
        .filter(|p| !p.name.contains(".lora_"))
        .map(|p| Ok((p.name.clone(), p.var.as_tensor().to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    if merge {
        let scaling = model
            .setup
            .lora
            .as_ref()
            .map(LoraPlan::scaling)
            .unwrap_or(1.0);
        let by_name: BTreeMap<&str, &Tensor> = model
            .params()
            .iter()
            .map(|p| (p.name.as_str(), p.var.as_tensor()))
            .collect();
        for module in &model.lora_modules {
            let name = format!("{module}.weight");
            let (a, b) = (
                by_name[format!("{module}.lora_A.weight").as_str()],
                by_name[format!("{module}.lora_B.weight").as_str()],
            );
            let w = mapped.load(&name, &Device::Cpu)?.to_dtype(DType::F32)?;
            let delta = (b
                .to_device(&Device::Cpu)?
                .matmul(&a.to_device(&Device::Cpu)?)?
                * scaling)?;
            trained.insert(name, (w + delta)?);
        }
    }
    let mut names: Vec<(String, DType)> = mapped
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, convert_dtype(v.dtype())))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut shards: Vec<BTreeMap<String, Tensor>> = vec![BTreeMap::new()];
    let mut shard_bytes = 0usize;
    for (name, dtype) in &names {
        let tensor = match trained.get(name) {
            Some(t) => t.to_dtype(*dtype)?,
            None => mapped.load(name, &Device::Cpu)?,
        };
        let bytes = tensor.elem_count() * tensor.dtype().size_in_bytes();
        if shard_bytes > 0 && shard_bytes + bytes > SHARD_BYTES {
            shards.push(BTreeMap::new());
            shard_bytes = 0;
        }
        shard_bytes += bytes;
        if let Some(last) = shards.last_mut() {
            last.insert(name.clone(), tensor);
        }
    }
    if shards.len() == 1 {
        write_safetensors(&dir.join("model.safetensors"), &shards[0])?;
    } else {
        let n = shards.len();
        let mut weight_map = serde_json::Map::new();
        let mut total = 0usize;
        for (i, shard) in shards.iter().enumerate() {
            let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
            for (name, t) in shard {
                weight_map.insert(name.clone(), serde_json::Value::String(file.clone()));
                total += t.elem_count() * t.dtype().size_in_bytes();
            }
            write_safetensors(&dir.join(&file), shard)?;
        }
        let index =
            serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        write_atomic(
            &dir.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&index)
                .unwrap_or_default()
                .as_bytes(),
        )?;
    }
    for entry in std::fs::read_dir(base).map_err(io_err(base))? {
        let path = entry.map_err(io_err(base))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let weights = name.ends_with(".safetensors") || name == "model.safetensors.index.json";
        if path.is_file() && !weights && !name.ends_with(".gguf") {
            std::fs::copy(&path, dir.join(name)).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

fn convert_dtype(dtype: safetensors::Dtype) -> DType {
    match dtype {
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// PEFT key of a module's LoRA tensor (for readers of exported adapters).
pub fn peft_lora_key(module: &str, which: &str) -> String {
    format!("{PEFT_PREFIX}{module}.{which}.weight")
}
