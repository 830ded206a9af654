//! Ids of the special tokens, read from the model folder's files (never hard-coded).

use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::{read_json, ProcessorError};

/// The text of the image placeholder token.
pub const IMAGE_TOKEN: &str = "<image>";
/// The text of the token put before an image when `mm_use_image_start_end` is set.
pub const IMAGE_START_TOKEN: &str = "<image_start>";
/// The text of the token put after an image when `mm_use_image_start_end` is set.
pub const IMAGE_END_TOKEN: &str = "<image_end>";

/// Special-token ids of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of text (`<|begin_of_text|>`).
    pub bos: u32,
    /// End of a turn, the stop token (`<|eot_id|>` for Magma-8B).
    pub eos: u32,
    /// Every id that ends generation (`eos` first; `generation_config.json` may list several).
    pub stop: Vec<u32>,
    /// Padding (`<pad>`), if the model has one.
    pub pad: Option<u32>,
    /// The image placeholder (`config.json` `image_token_index`).
    pub image: u32,
    /// `<image_start>`, if the vocabulary has it.
    pub image_start: Option<u32>,
    /// `<image_end>`, if the vocabulary has it.
    pub image_end: Option<u32>,
}

impl SpecialTokens {
    /// Collects the ids from a model folder: `generation_config.json` (`bos_token_id`,
    /// `eos_token_id`, `pad_token_id`; optional file), falling back to the token strings of
    /// `tokenizer_config.json` looked up in the tokenizer; `config.json` `image_token_index`
    /// (checked against the tokenizer's `<image>`); `<image_start>` / `<image_end>` from the
    /// tokenizer's added tokens.
    pub fn from_dir(dir: &Path, tokenizer: &Tokenizer) -> Result<Self, ProcessorError> {
        let generation_path = dir.join("generation_config.json");
        let generation = if generation_path.exists() {
            read_json(&generation_path)?
        } else {
            Value::Null
        };
        let tokenizer_config_path = dir.join("tokenizer_config.json");
        let tokenizer_config = read_json(&tokenizer_config_path)?;
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;

        let token_of = |field: &str| -> Option<u32> {
            let value = tokenizer_config.get(field)?;
            let text = value
                .as_str()
                .or_else(|| value.get("content").and_then(Value::as_str))?;
            tokenizer.token_to_id(text)
        };
        let ids_of = |field: &str| -> Result<Vec<u32>, ProcessorError> {
            let bad = |v: &Value| {
                ProcessorError::config(
                    &generation_path,
                    field,
                    format!("expected a token id or a list of ids, found {v}"),
                )
            };
            match generation.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|v| {
                        v.as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| bad(v))
                    })
                    .collect(),
                Some(v) => Ok(vec![v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(v))?]),
            }
        };

        let bos = ids_of("bos_token_id")?
            .first()
            .copied()
            .or_else(|| token_of("bos_token"))
            .ok_or_else(|| {
                ProcessorError::config(
                    &tokenizer_config_path,
                    "bos_token",
                    "no BOS token id found (also not in generation_config.json)",
                )
            })?;
        let mut stop = ids_of("eos_token_id")?;
        if stop.is_empty() {
            stop.extend(token_of("eos_token"));
        }
        let eos = *stop.first().ok_or_else(|| {
            ProcessorError::config(
                &tokenizer_config_path,
                "eos_token",
                "no EOS token id found (also not in generation_config.json)",
            )
        })?;
        let pad = ids_of("pad_token_id")?
            .first()
            .copied()
            .or_else(|| token_of("pad_token"));

        let tokenizer_image = tokenizer.token_to_id(IMAGE_TOKEN);
        let image = match config.get("image_token_index") {
            Some(v) => {
                let id = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        ProcessorError::config(
                            &config_path,
                            "image_token_index",
                            format!("expected a token id, found {v}"),
                        )
                    })?;
                if tokenizer_image != Some(id) {
                    return Err(ProcessorError::config(
                        &config_path,
                        "image_token_index",
                        format!(
                            "is {id} but the tokenizer maps `{IMAGE_TOKEN}` to {tokenizer_image:?}"
                        ),
                    ));
                }
                id
            }
            None => tokenizer_image.ok_or_else(|| {
                ProcessorError::config(
                    &config_path,
                    "image_token_index",
                    format!("missing, and the tokenizer has no `{IMAGE_TOKEN}` token"),
                )
            })?,
        };

        Ok(Self {
            bos,
            eos,
            stop,
            pad,
            image,
            image_start: tokenizer.token_to_id(IMAGE_START_TOKEN),
            image_end: tokenizer.token_to_id(IMAGE_END_TOKEN),
        })
    }
}
