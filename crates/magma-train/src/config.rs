//! `train.toml`: what to train, on what, how long (see `docs/training.md` for every key).
//!
//! ```
//! let config = magma_train::config::TrainConfig::from_toml_str(r#"
//!     model = "models/magma-tiny"
//!     mode = "lora"
//!     [data]
//!     train = "conversations.json"
//!     [lora]
//!     r = 4
//!     alpha = 8
//!     [train]
//!     steps = 3
//! "#)?;
//! assert_eq!(config.lora.r, 4);
//! assert_eq!(config.optim.lr, 1e-3);
//! # Ok::<(), magma_train::TrainError>(())
//! ```

use crate::error::{Result, TrainError};
use crate::lora::{LoraInitKind, ALL_DECODER_LINEARS};
use crate::optim::Schedule;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model folder (or hub id resolved by the CLI).
    pub model: String,
    /// `full` | `projector` | `lora` | `qlora`.
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub lora: LoraConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub train: LoopConfig,
}

fn default_mode() -> String {
    "lora".into()
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Magma/LLaVA conversation JSON or JSONL.
    pub train: PathBuf,
    /// Optional held-out set (same format): its loss is logged at every save and at the end.
    pub eval: Option<PathBuf>,
    /// Image root for relative paths (default: the data file's folder).
    pub images: Option<PathBuf>,
    /// `model_max_length`.
    pub max_length: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: PathBuf::new(),
            eval: None,
            images: None,
            max_length: 2048,
        }
    }
}

/// `[lora]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f32,
    /// Regex over module names (full name or last component).
    pub targets: String,
    /// Start from this PEFT adapter folder (its r, alpha, targets).
    pub init: Option<PathBuf>,
    /// Fresh adapters: `kaiming` (PEFT default) or `gaussian` (OpenVLA).
    pub init_weights: LoraInitKind,
    /// Train the projector too (saved as PEFT `modules_to_save`).
    pub train_projector: bool,
    /// `qlora`: block format of the frozen base (`q4k`, `q8_0`, …).
    pub quantize: String,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: ALL_DECODER_LINEARS.into(),
            init: None,
            init_weights: LoraInitKind::Kaiming,
            train_projector: true,
            quantize: "q4k".into(),
        }
    }
}

/// `[optim]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// HF Trainer's grouping: no decay on biases and norm weights (the fixtures decay all).
    pub no_decay_bias_and_norm: bool,
    pub schedule: Schedule,
    pub warmup_steps: usize,
    /// Warm-up as a fraction of the run (HF `warmup_ratio`); the larger of the two wins.
    pub warmup_ratio: f64,
    /// 0 = no clipping.
    pub max_grad_norm: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.01,
            no_decay_bias_and_norm: false,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            max_grad_norm: 0.0,
        }
    }
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// Optimizer steps (0: from `epochs`).
    pub steps: usize,
    pub epochs: Option<usize>,
    /// Samples per optimizer step.
    pub batch_size: usize,
    /// Samples per forward/backward (gradient accumulation over batch / micro).
    pub micro_batch_size: usize,
    pub shuffle: bool,
    /// Sort samples by length inside windows of 8 batches (fewer pad tokens).
    pub group_by_length: bool,
    pub seed: u64,
    pub out: PathBuf,
    /// Checkpoint every N steps (0: only at the end).
    pub save_every: usize,
    /// How many checkpoints to keep (the newest).
    pub keep_checkpoints: usize,
    /// ConvNeXt stochastic depth (Magma trains with 0.1; 0 = off, deterministic).
    pub drop_path: f64,
    /// `cpu` or `cuda[:N]`.
    pub device: String,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            steps: 0,
            epochs: None,
            batch_size: 4,
            micro_batch_size: 4,
            shuffle: false,
            group_by_length: false,
            seed: 0,
            out: PathBuf::from("runs/train"),
            save_every: 0,
            keep_checkpoints: 2,
            drop_path: 0.0,
            device: "cpu".into(),
        }
    }
}

/// Built-in recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The reference's released fine-tune (`finetune_magma_820k.sh`): projector only, lr 1e-5
    /// cosine with 3 % warm-up, batch 16, no decay, clipping 1.0.
    ProjectorSft,
    /// OpenVLA's LIBERO recipe: LoRA r 32, alpha 16, all decoder linears, lr 5e-4 constant,
    /// batch 16, no decay, no clipping.
    LoraLibero,
}

impl std::str::FromStr for Preset {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "projector-sft" => Ok(Self::ProjectorSft),
            "lora-libero" => Ok(Self::LoraLibero),
            other => Err(TrainError::Config(format!(
                "unknown preset `{other}` (projector-sft, lora-libero)"
            ))),
        }
    }
}

impl TrainConfig {
    /// Parses and validates TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a `train.toml`; relative paths in it are relative to its folder.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_err(path))?;
        let mut config = Self::from_toml_str(&text).map_err(|e| match e {
            TrainError::Config(m) => TrainError::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut config.data.train);
        if let Some(p) = config.data.eval.as_mut() {
            rebase(p);
        }
        if let Some(p) = config.data.images.as_mut() {
            rebase(p);
        }
        if let Some(p) = config.lora.init.as_mut() {
            rebase(p);
        }
        rebase(&mut config.train.out);
        let model = PathBuf::from(&config.model);
        if model.is_relative() && base.join(&model).exists() {
            config.model = base.join(model).to_string_lossy().into_owned();
        }
        Ok(config)
    }

    /// Applies a preset's settings over this configuration.
    pub fn apply_preset(&mut self, preset: Preset) {
        match preset {
            Preset::ProjectorSft => {
                self.mode = "projector".into();
                self.optim.lr = 1e-5;
                self.optim.schedule = Schedule::Cosine;
                self.optim.weight_decay = 0.0;
                self.optim.max_grad_norm = 1.0;
                self.train.batch_size = 16;
                self.train.micro_batch_size = self.train.micro_batch_size.min(16);
                self.optim.warmup_ratio = 0.03;
            }
            Preset::LoraLibero => {
                self.mode = "lora".into();
                self.lora.r = 32;
                self.lora.alpha = 16.0;
                self.lora.dropout = 0.0;
                self.lora.targets = ALL_DECODER_LINEARS.into();
                self.lora.init_weights = LoraInitKind::Gaussian;
                self.optim.lr = 5e-4;
                self.optim.schedule = Schedule::Constant;
                self.optim.weight_decay = 0.0;
                self.optim.max_grad_norm = 0.0;
                self.train.batch_size = 16;
                self.train.micro_batch_size = self.train.micro_batch_size.min(16);
            }
        }
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if !["full", "projector", "lora", "qlora"].contains(&self.mode.as_str()) {
            return bad(format!(
                "mode `{}`: expected full, projector, lora or qlora",
                self.mode
            ));
        }
        let t = &self.train;
        if t.batch_size == 0
            || t.micro_batch_size == 0
            || !t.batch_size.is_multiple_of(t.micro_batch_size)
        {
            return bad(format!(
                "train.batch_size {} must be a positive multiple of train.micro_batch_size {}",
                t.batch_size, t.micro_batch_size
            ));
        }
        if t.steps == 0 && t.epochs.unwrap_or(0) == 0 {
            return bad("set train.steps or train.epochs".into());
        }
        if self.optim.lr.is_nan() || self.optim.lr <= 0.0 {
            return bad(format!("optim.lr {} must be positive", self.optim.lr));
        }
        if self.data.max_length == 0 {
            return bad("data.max_length must be at least 1".into());
        }
        if !(0.0..1.0).contains(&t.drop_path) {
            return bad(format!("train.drop_path {} must be in [0, 1)", t.drop_path));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = TrainConfig::from_toml_str("model = 'm'\n[train]\nstepz = 3\n").unwrap_err();
        assert!(err.to_string().contains("stepz"), "{err}");
    }

    #[test]
    fn presets_set_the_recipes() -> Result<()> {
        let mut c = TrainConfig::from_toml_str("model = 'm'\n[train]\nsteps = 10\n")?;
        c.apply_preset("lora-libero".parse()?);
        assert_eq!((c.lora.r, c.lora.alpha, c.optim.lr), (32, 16.0, 5e-4));
        assert_eq!(c.train.batch_size, 16);
        Ok(())
    }
}
