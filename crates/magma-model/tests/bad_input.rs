//! Broken checkpoints and invalid requests give clear errors, never panics.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use magma_model::{MagmaModel, ModelError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A scratch copy of a fixture model folder, removed on drop.
struct ScratchModel(PathBuf);

impl ScratchModel {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("magma-model-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let source = fixtures().join("models/magma-tiny-crop");
        for entry in std::fs::read_dir(&source).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        Self(dir)
    }

    fn weights_path(&self) -> PathBuf {
        self.0.join("model.safetensors")
    }

    fn rewrite_weights(&self, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
        let mut tensors =
            candle_core::safetensors::load(self.weights_path(), &Device::Cpu).unwrap();
        edit(&mut tensors);
        candle_core::safetensors::save(&tensors, self.weights_path()).unwrap();
    }

    fn load(&self) -> Result<MagmaModel, ModelError> {
        MagmaModel::load(&self.0, DType::F32, &Device::Cpu)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchModel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const FC1: &str = "vision_tower.clip_vision_model.trunk.stages.2.blocks.1.mlp.fc1.weight";

#[test]
fn truncated_safetensors_names_the_file() {
    let scratch = ScratchModel::new("truncated");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(scratch.weights_path())
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len / 2).unwrap();
    let err = scratch.load().unwrap_err();
    assert!(
        matches!(err, ModelError::TruncatedSafetensors { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let scratch = ScratchModel::new("missing");
    scratch.rewrite_weights(|t| {
        t.remove("language_model.model.layers.1.mlp.up_proj.weight");
    });
    let err = scratch.load().unwrap_err();
    assert!(
        err.to_string()
            .contains("language_model.model.layers.1.mlp.up_proj.weight"),
        "{err}"
    );
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let scratch = ScratchModel::new("shape");
    scratch.rewrite_weights(|t| {
        t.insert(
            FC1.to_string(),
            Tensor::zeros((128, 31), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let err = scratch.load().unwrap_err();
    match &err {
        ModelError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, FC1);
            assert_eq!(expected, &vec![128, 32]);
            assert_eq!(found, &vec![128, 31]);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("[128, 31]"), "{err}");
}

#[test]
fn layer_scale_stored_as_weight_is_accepted() {
    let scratch = ScratchModel::new("alias");
    let reference = load_model("magma-tiny-crop");
    scratch.rewrite_weights(|t| {
        let names: Vec<String> = t
            .keys()
            .filter(|k| k.ends_with(".gamma"))
            .cloned()
            .collect();
        for name in names {
            let value = t.remove(&name).unwrap();
            t.insert(name.replace(".gamma", ".weight"), value);
        }
    });
    let renamed = scratch.load().unwrap();
    let case = Case::new("magma-tiny-crop", "photo_coffee");
    let images = case.images().unwrap();
    let a = reference.image_features(&images).unwrap();
    let b = renamed.image_features(&images).unwrap();
    let diff: f32 = (&a[0] - &b[0])
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(diff, 0.0);
}

#[test]
fn config_without_vision_config_is_rejected() {
    let scratch = ScratchModel::new("novision");
    let path = scratch.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("vision_config");
    std::fs::write(&path, config.to_string()).unwrap();
    let err = scratch.load().unwrap_err();
    assert!(err.to_string().contains("vision_config"), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn more_images_than_image_tokens_is_rejected() {
    let model = load_model("magma-tiny-crop");
    let case = Case::new("magma-tiny-crop", "photo_coffee");
    let features = model.image_features(&case.images().unwrap()).unwrap();
    let two = [features[0].clone(), features[0].clone()];
    let err = model.merge(&case.ids("input_ids"), &two).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::ImageCountMismatch {
                tokens: 1,
                images: 2
            }
        ),
        "{err:?}"
    );
    let err = model
        .merge(
            &Case::new("magma-tiny-crop", "text_only").ids("input_ids"),
            &features,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("0 <image> token(s) but 1 image(s)"),
        "{err}"
    );
}

#[test]
fn prompt_longer_than_max_positions_is_rejected() {
    let scratch = ScratchModel::new("maxpos");
    let path = scratch.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "\"max_position_embeddings\": 8192",
            "\"max_position_embeddings\": 64",
        ),
    )
    .unwrap();
    let model = scratch.load().unwrap();
    let case = Case::new("magma-tiny-crop", "photo_coffee");
    // 49 ids fit, but the merged prompt (90 positions) does not
    let err = model
        .embed_prompt(&case.ids("input_ids"), case.images().as_ref())
        .unwrap_err();
    assert!(
        matches!(err, ModelError::PromptTooLong { len: 90, max: 64 }),
        "{err:?}"
    );
    // decoding past the limit is caught as well
    let text_ids = Case::new("magma-tiny-crop", "text_only").ids("input_ids");
    let embeds = model.embed_prompt(&text_ids, None).unwrap();
    let mut cache = model.new_cache();
    model.forward(&embeds, &mut cache, true).unwrap();
    assert_eq!(text_ids.len(), 51);
    let step = model.embed_tokens(&text_ids[..13]).unwrap();
    model
        .forward(&step, &mut cache, true)
        .expect("exactly 64 positions fit");
    let step = model.embed_tokens(&text_ids[..1]).unwrap();
    let err = model.forward(&step, &mut cache, true).unwrap_err();
    assert!(
        matches!(err, ModelError::PromptTooLong { len: 65, max: 64 }),
        "{err:?}"
    );
}
