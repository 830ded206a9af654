//! `config.json` and `generation_config.json` of a Magma checkpoint.

use crate::error::{ModelError, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The LLaMA decoder settings (`text_config`, also copied onto the top level of `config.json`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TextConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads` (plain multi-head attention).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
}

fn default_rms_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> usize {
    8192
}

impl TextConfig {
    /// Number of key/value heads (grouped-query attention).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

/// How crops of one image become one feature grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyresStrategy {
    /// Every crop goes through the tower on its own; features are tiled back (Magma-8B).
    Crop,
    /// The crops are stitched into one picture that goes through the tower once.
    Global,
}

/// The vision side of `config.json` (`vision_config`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct VisionConfig {
    #[serde(default)]
    pub img_anyres_strategy: Option<String>,
    #[serde(default)]
    pub anyres_strategy: Option<String>,
    pub mm_projector_type: String,
    /// Channels of the last ConvNeXt stage.
    pub mm_hidden_size: usize,
    /// Decoder width the projector maps to.
    pub hidden_size: usize,
    #[serde(default)]
    pub img_size: Option<usize>,
    #[serde(default)]
    pub vision_feature_layer: Option<String>,
}

impl VisionConfig {
    /// The anyres strategy; `img_anyres_strategy` wins over the (unused) `anyres_strategy` key.
    pub fn strategy(&self) -> std::result::Result<AnyresStrategy, String> {
        let name = self
            .img_anyres_strategy
            .as_deref()
            .or(self.anyres_strategy.as_deref())
            .unwrap_or("crop");
        match name {
            "crop" => Ok(AnyresStrategy::Crop),
            "global" => Ok(AnyresStrategy::Global),
            other => Err(format!(
                "vision_config.img_anyres_strategy `{other}` is not supported (expected `crop` or `global`)"
            )),
        }
    }

    /// Number of linear layers of an `mlpNx_gelu` projector.
    pub fn projector_depth(&self) -> std::result::Result<usize, String> {
        self.mm_projector_type
            .strip_prefix("mlp")
            .and_then(|s| s.strip_suffix("x_gelu"))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                format!(
                    "vision_config.mm_projector_type `{}` is not supported (expected mlpNx_gelu)",
                    self.mm_projector_type
                )
            })
    }
}

/// The whole `config.json` of a Magma checkpoint, validated.
///
/// ```no_run
/// let cfg = magma_model::MagmaConfig::from_file("models/magma-8b/config.json".as_ref())?;
/// assert_eq!(cfg.text.num_hidden_layers, 32);
/// # Ok::<(), magma_model::ModelError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MagmaConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub strategy: AnyresStrategy,
    pub projector_depth: usize,
    /// Id of the `<image>` placeholder token.
    pub image_token_index: u32,
    /// Whether prompts wrap `<image>` in `<image_start>`/`<image_end>` (a processor matter).
    pub mm_use_image_start_end: bool,
}

#[derive(Deserialize)]
struct RawConfig {
    image_token_index: Option<u32>,
    #[serde(default)]
    mm_use_image_start_end: bool,
    text_config: Option<serde_json::Value>,
    vision_config: Option<VisionConfig>,
}

impl MagmaConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        Self::from_json_str(&text, path)
    }

    /// Parses `config.json` text; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let json_err = |source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        };
        let cfg_err = |message: String| ModelError::Config {
            path: path.to_path_buf(),
            message,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json_err)?;
        let raw: RawConfig = serde_json::from_value(value.clone()).map_err(json_err)?;
        let vision = raw.vision_config.ok_or_else(|| {
            cfg_err("no `vision_config` section: not a Magma (vision-language) config".into())
        })?;
        // Magma copies every text setting onto the top level; `text_config` is the source of truth
        // when present, the top level otherwise.
        let text_value = raw.text_config.unwrap_or(value);
        let text: TextConfig = serde_json::from_value(text_value).map_err(json_err)?;
        let image_token_index = raw
            .image_token_index
            .ok_or_else(|| cfg_err("missing `image_token_index`".into()))?;
        if let Some(scaling) = text.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            return Err(cfg_err(format!(
                "rope_scaling {scaling} is not supported (Magma-8B uses none)"
            )));
        }
        if text.num_attention_heads == 0 || text.num_attention_heads % text.kv_heads() != 0 {
            return Err(cfg_err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                text.num_attention_heads,
                text.kv_heads()
            )));
        }
        if vision.hidden_size != text.hidden_size {
            return Err(cfg_err(format!(
                "vision_config.hidden_size {} differs from the decoder hidden_size {}",
                vision.hidden_size, text.hidden_size
            )));
        }
        let strategy = vision.strategy().map_err(cfg_err)?;
        let projector_depth = vision.projector_depth().map_err(cfg_err)?;
        Ok(Self {
            text,
            vision,
            strategy,
            projector_depth,
            image_token_index,
            mm_use_image_start_end: raw.mm_use_image_start_end,
        })
    }
}

/// The token ids of `generation_config.json` that matter at inference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationConfig {
    pub bos_token_id: Option<u32>,
    /// Generation stops at any of these.
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct RawGenerationConfig {
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
    pad_token_id: Option<u32>,
}

impl GenerationConfig {
    /// Reads `generation_config.json`; `eos_token_id` may be one id or a list.
    ///
    /// ```
    /// let g = magma_model::GenerationConfig::from_json_str(r#"{"eos_token_id": [1, 2]}"#, "g.json".as_ref())?;
    /// assert_eq!(g.eos_token_ids, vec![1, 2]);
    /// # Ok::<(), magma_model::ModelError>(())
    /// ```
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let raw: RawGenerationConfig =
            serde_json::from_str(text).map_err(|source| ModelError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let eos_token_ids = match raw.eos_token_id {
            None => Vec::new(),
            Some(OneOrMany::One(id)) => vec![id],
            Some(OneOrMany::Many(ids)) => ids,
        };
        Ok(Self {
            bos_token_id: raw.bos_token_id,
            eos_token_ids,
            pad_token_id: raw.pad_token_id,
        })
    }

    /// Reads `generation_config.json`, or returns an empty config when the file does not exist.
    pub fn from_file_or_default(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        Self::from_json_str(&read_text(path)?, path)
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: PathBuf::from(path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{
        "image_token_index": 7, "mm_use_image_start_end": true,
        "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "vocab_size": 10,
        "vision_config": {"mm_projector_type": "mlp3x_gelu", "mm_hidden_size": 4, "hidden_size": 8,
                          "img_anyres_strategy": "global"}
    }"#;

    #[test]
    fn top_level_text_settings_are_used_without_text_config() {
        let cfg = MagmaConfig::from_json_str(MINIMAL, "c.json".as_ref()).unwrap();
        assert_eq!(cfg.text.hidden_size, 8);
        assert_eq!(cfg.text.kv_heads(), 2);
        assert_eq!(cfg.text.head_dim(), 4);
        assert_eq!(cfg.projector_depth, 3);
        assert_eq!(cfg.strategy, AnyresStrategy::Global);
        assert_eq!(cfg.image_token_index, 7);
    }

    #[test]
    fn config_without_vision_config_is_a_clear_error() {
        let text = MINIMAL.replace("\"vision_config\"", "\"not_vision\"");
        let err = MagmaConfig::from_json_str(&text, "c.json".as_ref()).unwrap_err();
        assert!(err.to_string().contains("vision_config"), "{err}");
    }

    #[test]
    fn unknown_projector_is_rejected() {
        let text = MINIMAL.replace("mlp3x_gelu", "identity");
        let err = MagmaConfig::from_json_str(&text, "c.json".as_ref()).unwrap_err();
        assert!(err.to_string().contains("identity"), "{err}");
    }

    #[test]
    fn eos_may_be_one_id_or_a_list() {
        let one = GenerationConfig::from_json_str(
            r#"{"eos_token_id": 5, "pad_token_id": 9}"#,
            "g".as_ref(),
        )
        .unwrap();
        assert_eq!(one.eos_token_ids, vec![5]);
        assert_eq!(one.pad_token_id, Some(9));
        let many =
            GenerationConfig::from_json_str(r#"{"eos_token_id": [5, 6]}"#, "g".as_ref()).unwrap();
        assert_eq!(many.eos_token_ids, vec![5, 6]);
    }
}
