//! LoRA with PEFT's semantics: which modules get adapters, how they start, their key names.
//!
//! * Adapted layer: `y = W·x + (alpha / r) · B·(A·dropout(x))`, `A` `[r, in]`, `B` `[out, r]`.
//! * Keys (as PEFT saves them, without the adapter name):
//!   `base_model.model.{module}.lora_A.weight`, e.g.
//!   `base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight`.
//! * Targets: a regex that must match a module's full name or its last component
//!   (`q_proj|v_proj` or `.*layers\.[0-3]\..*q_proj`); a pattern that matches no linear layer is
//!   an error, as in PEFT.

use crate::error::{Result, TrainError};
use crate::rng::TrainRng;
use candle_core::{DType, Device, Tensor};
use regex::Regex;
use std::collections::BTreeMap;
use std::path::Path;

/// Prefix PEFT puts in front of module names in saved adapters.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// The seven linear layers of every decoder block (OpenVLA's "all linear" for the LLM).
pub const ALL_DECODER_LINEARS: &str = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj";

/// How fresh adapters are initialised (`init_lora_weights` in PEFT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoraInitKind {
    /// PEFT's default: `A` kaiming-uniform (a = √5, i.e. U(±1/√in)), `B` = 0.
    Kaiming,
    /// PEFT's "gaussian" (OpenVLA): `A` ~ N(0, 1/r), `B` = 0.
    Gaussian,
}

/// Where adapters go and how they start.
#[derive(Debug, Clone)]
pub struct LoraPlan {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f32,
    targets: Regex,
    pattern: String,
    init: LoraInitKind,
    /// Adapter tensors to start from (PEFT key names), when given.
    from_adapter: Option<BTreeMap<String, Tensor>>,
}

impl LoraPlan {
    /// A plan for fresh adapters on the modules whose name (or last component) fully matches
    /// `targets`.
    pub fn new(
        r: usize,
        alpha: f64,
        dropout: f32,
        targets: &str,
        init: LoraInitKind,
    ) -> Result<Self> {
        if r == 0 {
            return Err(TrainError::Config("lora.r must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(TrainError::Config(format!(
                "lora.dropout {dropout} must be in [0, 1)"
            )));
        }
        let targets_re = Regex::new(&format!("^(?:{targets})$")).map_err(|e| {
            TrainError::Config(format!(
                "lora.targets `{targets}` is not a valid regex: {e}"
            ))
        })?;
        Ok(Self {
            r,
            alpha,
            dropout,
            targets: targets_re,
            pattern: targets.to_string(),
            init,
            from_adapter: None,
        })
    }

    /// A plan that starts from a PEFT adapter folder (`adapter_config.json` +
    /// `adapter_model.safetensors`): its r, alpha, dropout and targeted modules.
    pub fn from_peft_dir(dir: &Path) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(crate::error::io_err(&config_path))?;
        let config: PeftConfig = serde_json::from_str(&text).map_err(|e| TrainError::Format {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        if config.peft_type != "LORA" {
            return Err(TrainError::Format {
                path: config_path,
                message: format!("peft_type `{}` is not LORA", config.peft_type),
            });
        }
        if config.use_dora || config.use_rslora {
            return Err(TrainError::Format {
                path: config_path,
                message: "DoRA / rsLoRA adapters are not supported".into(),
            });
        }
        let weights_path = dir.join("adapter_model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(|e| {
            TrainError::Format {
                path: weights_path.clone(),
                message: e.to_string(),
            }
        })?;
        let modules: Vec<String> = tensors
            .keys()
            .filter_map(|k| k.strip_suffix(".lora_A.weight"))
            .filter_map(|k| k.strip_prefix(PEFT_PREFIX))
            .map(regex::escape)
            .collect();
        if modules.is_empty() {
            return Err(TrainError::Format {
                path: weights_path,
                message: "no `*.lora_A.weight` tensors".into(),
            });
        }
        let mut plan = Self::new(
            config.r,
            config.lora_alpha,
            config.lora_dropout,
            &modules.join("|"),
            LoraInitKind::Kaiming,
        )?;
        plan.from_adapter = Some(tensors.into_iter().collect());
        Ok(plan)
    }

    /// `alpha / r`.
    pub fn scaling(&self) -> f64 {
        self.alpha / self.r as f64
    }

    /// The target pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the linear module `name` gets an adapter.
    pub fn targets(&self, name: &str) -> bool {
        let leaf = name.rsplit('.').next().unwrap_or(name);
        self.targets.is_match(name) || self.targets.is_match(leaf)
    }

    /// The initial `(A, B)` of module `name` with `(in, out)` features.
    pub fn init(
        &self,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        rng: &mut TrainRng,
    ) -> Result<(Tensor, Tensor)> {
        if let Some(tensors) = &self.from_adapter {
            let get = |which: &str, shape: &[usize]| -> Result<Tensor> {
                let key = format!("{PEFT_PREFIX}{name}.{which}.weight");
                let t = tensors.get(&key).ok_or_else(|| {
                    TrainError::Config(format!("initial adapter has no tensor `{key}`"))
                })?;
                if t.dims() != shape {
                    return Err(TrainError::Config(format!(
                        "initial adapter tensor `{key}` has shape {:?}, the model needs {shape:?}",
                        t.dims()
                    )));
                }
                Ok(t.to_dtype(DType::F32)?)
            };
            return Ok((
                get("lora_A", &[self.r, in_dim])?,
                get("lora_B", &[out_dim, self.r])?,
            ));
        }
        let a: Vec<f32> = match self.init {
            LoraInitKind::Kaiming => {
                let bound = 1.0 / (in_dim as f64).sqrt();
                (0..self.r * in_dim)
                    .map(|_| ((rng.uniform_f64() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            }
            LoraInitKind::Gaussian => (0..self.r * in_dim)
                .map(|_| (rng.normal() / self.r as f64) as f32)
                .collect(),
        };
        Ok((
            Tensor::from_vec(a, (self.r, in_dim), &Device::Cpu)?,
            Tensor::zeros((out_dim, self.r), DType::F32, &Device::Cpu)?,
        ))
    }

    /// `target_modules` for `adapter_config.json`: a regex PEFT full-matches against module
    /// names, built from the modules actually adapted (layer numbers generalised), so it never
    /// hits the vision tower's or projector's layers by suffix.
    pub fn peft_target_regex(adapted: &[String]) -> String {
        let digits = Regex::new(r"\\\.\d+\\\.").expect("static regex");
        let mut patterns: Vec<String> = adapted
            .iter()
            .map(|m| {
                digits
                    .replace_all(&regex::escape(m), r"\.\d+\.")
                    .into_owned()
            })
            .collect();
        patterns.sort();
        patterns.dedup();
        patterns.join("|")
    }
}

#[derive(serde::Deserialize)]
struct PeftConfig {
    peft_type: String,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f32,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    use_rslora: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_match_leaf_or_full_name() -> Result<()> {
        let plan = LoraPlan::new(4, 8.0, 0.0, "q_proj|v_proj", LoraInitKind::Kaiming)?;
        assert!(plan.targets("language_model.model.layers.0.self_attn.q_proj"));
        assert!(!plan.targets("language_model.model.layers.0.self_attn.k_proj"));
        // the `0`/`2` suffix trap of the reference: a projector index is not a target
        let plan = LoraPlan::new(4, 8.0, 0.0, ".*layers\\.1\\..*", LoraInitKind::Kaiming)?;
        assert!(plan.targets("language_model.model.layers.1.mlp.up_proj"));
        assert!(!plan.targets("language_model.model.layers.0.mlp.up_proj"));
        Ok(())
    }

    #[test]
    fn peft_regex_generalises_layer_numbers() {
        let adapted = vec![
            "language_model.model.layers.0.self_attn.q_proj".to_string(),
            "language_model.model.layers.1.self_attn.q_proj".to_string(),
        ];
        let pattern = LoraPlan::peft_target_regex(&adapted);
        assert_eq!(
            pattern,
            r"language_model\.model\.layers\.\d+\.self_attn\.q_proj"
        );
        let re = Regex::new(&format!("^{pattern}$")).unwrap();
        assert!(re.is_match("language_model.model.layers.31.self_attn.q_proj"));
    }

    #[test]
    fn kaiming_init_is_bounded_and_b_is_zero() -> Result<()> {
        let plan = LoraPlan::new(2, 4.0, 0.0, "q_proj", LoraInitKind::Kaiming)?;
        let (a, b) = plan.init("x.q_proj", 16, 8, &mut TrainRng::new(1))?;
        let max = a.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(max <= 0.25 && max > 0.1, "{max}");
        assert_eq!(b.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }
}
