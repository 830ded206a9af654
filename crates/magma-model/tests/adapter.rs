//! PEFT LoRA adapters: the fixture's adapters (written by PEFT 0.12 itself), merged at load,
//! reproduce the reference's merged-model prefill logits of parity case `photo_coffee`; a
//! wrong or truncated adapter is a clear error; `save_peft_adapter` writes PEFT's layout.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::*;
use magma_model::adapter::{
    save_peft_adapter, LoraAdapter, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE,
};
use magma_model::{MagmaModel, ModelError};

const MODELS: [&str; 2] = ["magma-tiny-crop", "magma-tiny-global"];
/// The fixture manifest's tolerance for merged-LoRA logits (as logits in the parity set).
const ATOL: f32 = 2e-4;
const RTOL: f32 = 1e-4;

fn lora_dir(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/magma-train")
        .join(model)
        .join("lora")
}

fn model_dir(model: &str) -> PathBuf {
    fixtures().join("models").join(model)
}

fn prefill_logits(model: &MagmaModel, case: &Case) -> Tensor {
    let images = case.images().expect("photo_coffee has an image");
    let features = model.image_features(&images).expect("image features");
    let embeds = model
        .merge(&case.ids("input_ids"), &features)
        .expect("merge");
    let mut cache = model.new_cache();
    model.forward(&embeds, &mut cache, false).expect("prefill")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a.flatten_all().unwrap() - b.flatten_all().unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn peft_adapters_reproduce_the_merged_logits() {
    for model_name in MODELS {
        let case = Case::new(model_name, "photo_coffee");
        let base = load_model(model_name);
        let base_logits = prefill_logits(&base, &case);
        for which in ["init", "step3"] {
            let what = format!("{model_name} adapter_{which}");
            let adapter = LoraAdapter::load(&lora_dir(model_name).join(format!("adapter_{which}")))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // every linear layer of the decoder: 7 per block
            assert_eq!(adapter.layers().len() % 7, 0, "{what}");
            assert_eq!(adapter.layers().values().next().unwrap().scaling, 2.0);
            let model = MagmaModel::load_with_adapter(
                &model_dir(model_name),
                &adapter,
                DType::F32,
                &Device::Cpu,
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            let logits = prefill_logits(&model, &case);
            let reference =
                Tensor::read_npy(lora_dir(model_name).join(format!("merged_logits_{which}.npy")))
                    .unwrap();
            assert_eq!(logits.dims(), reference.dims(), "{what}");
            assert_close(&what, &logits, &reference, ATOL, RTOL);
            // the adapter matters: the base model is far from the merged reference
            let off = max_abs_diff(&base_logits, &reference);
            assert!(
                off > 0.1,
                "{what}: base model only {off} from the merged logits"
            );
        }
    }
}

/// A scratch folder under the target dir's temp area, fresh for each call.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("magma-adapter-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_adapter(from: &Path, to: &Path) {
    for file in [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

#[test]
fn wrong_or_truncated_adapters_are_clear_errors() {
    let source = lora_dir("magma-tiny-crop").join("adapter_step3");

    // truncated download: the file is named
    let dir = scratch("truncated");
    copy_adapter(&source, &dir);
    let file = dir.join(ADAPTER_WEIGHTS_FILE);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    let err = LoraAdapter::load(&dir).unwrap_err();
    assert!(
        matches!(err, ModelError::TruncatedSafetensors { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(ADAPTER_WEIGHTS_FILE), "{err}");

    // a missing half of a pair: the tensor is named
    let dir = scratch("missing-b");
    copy_adapter(&source, &dir);
    let mut tensors =
        candle_core::safetensors::load(dir.join(ADAPTER_WEIGHTS_FILE), &Device::Cpu).unwrap();
    let victim = "base_model.model.language_model.model.layers.1.mlp.up_proj.lora_B.weight";
    assert!(tensors.remove(victim).is_some());
    candle_core::safetensors::save(&tensors, dir.join(ADAPTER_WEIGHTS_FILE)).unwrap();
    let err = LoraAdapter::load(&dir).unwrap_err().to_string();
    assert!(err.contains(victim) && err.contains("missing"), "{err}");

    // rank disagreeing with the config
    let dir = scratch("rank");
    copy_adapter(&source, &dir);
    let config = std::fs::read_to_string(dir.join(ADAPTER_CONFIG_FILE)).unwrap();
    std::fs::write(
        dir.join(ADAPTER_CONFIG_FILE),
        config.replace("\"r\": 4", "\"r\": 8"),
    )
    .unwrap();
    let err = LoraAdapter::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("lora_A.weight") && err.contains("r = 8"),
        "{err}"
    );

    // an adapter of another model: the first mismatching tensor is named
    let adapter = LoraAdapter::load(&source).unwrap();
    let err = MagmaModel::load_with_adapter(
        &model_dir("magma-tiny-global"),
        &adapter,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("lora_A.weight") && err.contains("another model"),
        "{err}"
    );
}

#[test]
fn saved_adapters_have_peft_keys_and_config() {
    let source = lora_dir("magma-tiny-global").join("adapter_step3");
    let adapter = LoraAdapter::load(&source).unwrap();
    let lora: BTreeMap<String, (Tensor, Tensor)> = adapter
        .layers()
        .iter()
        .map(|(name, l)| {
            (
                name.trim_end_matches(".weight").to_string(),
                (l.a.clone(), l.b.clone()),
            )
        })
        .collect();
    let dir = scratch("saved");
    save_peft_adapter(&dir, &adapter.config, &lora, &BTreeMap::new()).unwrap();

    // the same keys, tensors and metadata as PEFT's own file
    let read = |dir: &Path| {
        let bytes = std::fs::read(dir.join(ADAPTER_WEIGHTS_FILE)).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let tensors =
            candle_core::safetensors::load(dir.join(ADAPTER_WEIGHTS_FILE), &Device::Cpu).unwrap();
        (meta.metadata().clone(), tensors)
    };
    let (ours_meta, ours) = read(&dir);
    let (peft_meta, peft) = read(&source);
    assert_eq!(ours_meta, peft_meta);
    assert_eq!(
        ours.keys().collect::<Vec<_>>().len(),
        peft.keys().collect::<Vec<_>>().len()
    );
    for (key, tensor) in &peft {
        let mine = ours.get(key).unwrap_or_else(|| panic!("{key} not written"));
        assert_eq!(max_abs_diff(mine, tensor), 0.0, "{key}");
    }
    // the config JSON equals PEFT's field for field
    let json = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(ADAPTER_CONFIG_FILE)).unwrap())
            .unwrap()
    };
    assert_eq!(json(&dir), json(&source));
    // and it loads back
    assert_eq!(
        LoraAdapter::load(&dir).unwrap().layers().len(),
        adapter.layers().len()
    );
}

#[test]
fn modules_to_save_replace_the_base_tensors() {
    let model_name = "magma-tiny-crop";
    let weights =
        magma_model::Weights::from_dir(&model_dir(model_name), DType::F32, &Device::Cpu).unwrap();
    let name = "multi_modal_projector.proj.0.weight";
    let shape = weights.shape_of(name).unwrap();
    let replacement = (weights.get(name, &shape).unwrap() * 0.5).unwrap();
    let mut config = LoraAdapter::load(&lora_dir(model_name).join("adapter_init"))
        .unwrap()
        .config;
    config.modules_to_save = Some(vec!["multi_modal_projector".into()]);
    let dir = scratch("modules-to-save");
    let saved = BTreeMap::from([(name.to_string(), replacement.clone())]);
    save_peft_adapter(&dir, &config, &BTreeMap::new(), &saved).unwrap();
    let keys: Vec<String> =
        candle_core::safetensors::load(dir.join(ADAPTER_WEIGHTS_FILE), &Device::Cpu)
            .unwrap()
            .into_keys()
            .collect();
    assert_eq!(keys, vec![format!("base_model.model.{name}")]);

    let adapter = LoraAdapter::load(&dir).unwrap();
    let adapted = magma_model::Weights::from_dir(&model_dir(model_name), DType::F32, &Device::Cpu)
        .unwrap()
        .with_adapter(&adapter)
        .unwrap();
    assert_eq!(
        max_abs_diff(&adapted.get(name, &shape).unwrap(), &replacement),
        0.0
    );
    // other tensors are untouched
    let other = "multi_modal_projector.proj.2.weight";
    let other_shape = weights.shape_of(other).unwrap();
    assert_eq!(
        max_abs_diff(
            &adapted.get(other, &other_shape).unwrap(),
            &weights.get(other, &other_shape).unwrap()
        ),
        0.0
    );

    // a tensor outside `modules_to_save` is refused, by name
    config.modules_to_save = None;
    let dir = scratch("not-saved");
    save_peft_adapter(&dir, &config, &BTreeMap::new(), &saved).unwrap();
    let err = LoraAdapter::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains(name) && err.contains("modules_to_save"),
        "{err}"
    );
}
