//! A Magma model set up for one training mode: which tensors train, LoRA adapters, gradients
//! of a (micro-)batch list with the reference's accumulation rule.

use crate::error::{Result, TrainError};
use crate::lora::{LoraPlan, PEFT_PREFIX};
use crate::rng::TrainRng;
use candle_core::{DType, Device, Tensor};
use magma_model::autograd::{LoraInit, Param, TrainBatch, TrainSpec, TrainableMagma};
use magma_model::quant::QuantFormat;
use magma_model::{MagmaConfig, Weights};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What trains.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Every parameter.
    Full,
    /// `multi_modal_projector.*` only (the reference's released fine-tune).
    Projector,
    /// LoRA adapters; the projector too when `train_projector` (PEFT `modules_to_save`).
    Lora { train_projector: bool },
    /// LoRA over a base quantized to `format` (frozen linears stay in blocks).
    Qlora {
        format: QuantFormat,
        train_projector: bool,
    },
}

impl Mode {
    /// The config name (`full`, `projector`, `lora`, `qlora`).
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Projector => "projector",
            Mode::Lora { .. } => "lora",
            Mode::Qlora { .. } => "qlora",
        }
    }

    /// True for the adapter modes.
    pub fn is_lora(&self) -> bool {
        matches!(self, Mode::Lora { .. } | Mode::Qlora { .. })
    }

    fn trains_tensor(&self, name: &str) -> bool {
        let projector = name.starts_with("multi_modal_projector.");
        match self {
            Mode::Full => true,
            Mode::Projector => projector,
            Mode::Lora { train_projector }
            | Mode::Qlora {
                train_projector, ..
            } => *train_projector && projector,
        }
    }
}

/// How to build the trainable model.
#[derive(Debug, Clone)]
pub struct ModelSetup {
    pub mode: Mode,
    /// Required for the LoRA modes.
    pub lora: Option<LoraPlan>,
    /// ConvNeXt stochastic depth (0 = off, as in the parity fixtures; Magma trains with 0.1).
    pub drop_path_rate: f64,
    /// Seed of the adapter initialisation.
    pub seed: u64,
    pub device: Device,
}

/// Gradients of one optimizer step (accumulated over micro-batches).
#[derive(Debug)]
pub struct StepGradients {
    /// One per parameter, same order as [`TrainModel::params`].
    pub grads: Vec<Option<Tensor>>,
    /// Mean of the micro-batch losses (what HF Trainer logs).
    pub loss: f64,
    /// Loss of each micro-batch.
    pub micro_losses: Vec<f64>,
    /// Labelled tokens over all micro-batches.
    pub n_tokens: usize,
    /// Labelled rows whose target is an action token, and how many of them were predicted.
    pub action_tokens: usize,
    pub action_correct: usize,
}

/// The model with its trained parameters.
pub struct TrainModel {
    pub model: TrainableMagma,
    pub setup: ModelSetup,
    /// Modules that got LoRA adapters.
    pub lora_modules: Vec<String>,
    /// `tokenizer_vocab_size` of `config.json`: action ids are the 256 below it.
    pub tokenizer_vocab_size: Option<u32>,
    pub dir: PathBuf,
}

impl TrainModel {
    /// Loads the model folder `dir` for training as `setup` says.
    pub fn load(dir: &Path, setup: ModelSetup) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = MagmaConfig::from_file(&config_path)?;
        let raw: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&config_path).map_err(crate::error::io_err(&config_path))?,
        )
        .map_err(|e| TrainError::Format {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        let tokenizer_vocab_size = raw
            .get("tokenizer_vocab_size")
            .and_then(|v| v.as_u64())
            .map(|v| v as u32);
        let quantize = match &setup.mode {
            Mode::Qlora { format, .. } => Some(*format),
            _ => None,
        };
        let weights =
            Weights::from_dir(dir, DType::F32, &setup.device)?.with_quantization(quantize);
        if setup.mode.is_lora() && setup.lora.is_none() {
            return Err(TrainError::Config(format!(
                "mode `{}` needs a [lora] section",
                setup.mode.name()
            )));
        }
        let rng = RefCell::new(TrainRng::new(setup.seed));
        let adapted = RefCell::new(Vec::<String>::new());
        let linears = RefCell::new(Vec::<String>::new());
        let init_error = RefCell::new(None::<TrainError>);
        let trainable = |name: &str| setup.mode.trains_tensor(name);
        let lora = |module: &str,
                    in_dim: usize,
                    out_dim: usize|
         -> magma_model::Result<Option<LoraInit>> {
            linears.borrow_mut().push(module.to_string());
            let Some(plan) = setup.lora.as_ref().filter(|_| setup.mode.is_lora()) else {
                return Ok(None);
            };
            if !plan.targets(module) {
                return Ok(None);
            }
            match plan.init(module, in_dim, out_dim, &mut rng.borrow_mut()) {
                Ok((a, b)) => {
                    adapted.borrow_mut().push(module.to_string());
                    Ok(Some(LoraInit {
                        a: a.to_device(&setup.device)?,
                        b: b.to_device(&setup.device)?,
                        scaling: plan.scaling(),
                        dropout: plan.dropout,
                    }))
                }
                Err(e) => {
                    let message = e.to_string();
                    *init_error.borrow_mut() = Some(e);
                    Err(magma_model::ModelError::InvalidParams(message))
                }
            }
        };
        let spec = TrainSpec {
            trainable: &trainable,
            lora: &lora,
            drop_path_rate: setup.drop_path_rate,
        };
        let model = match TrainableMagma::load(config, &weights, &spec) {
            Ok(model) => model,
            Err(e) => return Err(init_error.into_inner().unwrap_or(TrainError::Model(e))),
        };
        let lora_modules = adapted.into_inner();
        if let Some(plan) = setup.lora.as_ref().filter(|_| setup.mode.is_lora()) {
            if lora_modules.is_empty() {
                let mut leaves: Vec<String> = linears
                    .borrow()
                    .iter()
                    .map(|m| m.rsplit('.').next().unwrap_or(m).to_string())
                    .collect();
                leaves.sort();
                leaves.dedup();
                return Err(TrainError::UnknownLoraTarget {
                    pattern: plan.pattern().to_string(),
                    known: leaves.join(", "),
                });
            }
        }
        if model.params().is_empty() {
            return Err(TrainError::Config(format!(
                "mode `{}` leaves nothing to train",
                setup.mode.name()
            )));
        }
        Ok(Self {
            model,
            setup,
            lora_modules,
            tokenizer_vocab_size,
            dir: dir.to_path_buf(),
        })
    }

    /// The trained tensors.
    pub fn params(&self) -> &[Param] {
        self.model.params()
    }

    /// The name a parameter has in exported files: checkpoint name, or PEFT's key for
    /// adapters and (in the LoRA modes) `modules_to_save` tensors.
    pub fn export_name(&self, param: &Param) -> String {
        if self.setup.mode.is_lora() {
            format!("{PEFT_PREFIX}{}", param.name)
        } else {
            param.name.clone()
        }
    }

    /// Trainable parameter count per module group (vision tower, projector, decoder layer i,
    /// embeddings, LoRA …), in load order.
    pub fn trainable_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for p in self.params() {
            let group = module_group(&p.name);
            let n = p.var.elem_count();
            match counts.iter_mut().find(|(g, _)| *g == group) {
                Some((_, c)) => *c += n,
                None => counts.push((group, n)),
            }
        }
        counts
    }

    /// Gradients of one optimizer step over `micro_batches`: each micro-batch's mean loss is
    /// divided by their number before backward and the gradients summed (HF Trainer +
    /// Accelerate; not a global token mean). Fails naming any parameter that got no gradient.
    pub fn gradients(
        &self,
        micro_batches: &[TrainBatch],
        rng: &mut TrainRng,
    ) -> Result<StepGradients> {
        let k = micro_batches.len();
        if k == 0 {
            return Err(TrainError::Data("no micro-batch".into()));
        }
        let params = self.params();
        let mut grads: Vec<Option<Tensor>> = vec![None; params.len()];
        let mut out = StepGradients {
            grads: Vec::new(),
            loss: 0.0,
            micro_losses: Vec::new(),
            n_tokens: 0,
            action_tokens: 0,
            action_correct: 0,
        };
        for batch in micro_batches {
            let output = self.model.loss(batch, rng)?;
            let loss_value = output.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            out.micro_losses.push(loss_value);
            out.n_tokens += output.n_tokens;
            if let Some(vocab) = self.tokenizer_vocab_size {
                let low = vocab.saturating_sub(256);
                for (&p, &t) in output.predictions.iter().zip(&output.targets) {
                    if (low..vocab).contains(&t) {
                        out.action_tokens += 1;
                        out.action_correct += (p == t) as usize;
                    }
                }
            }
            let scaled = if k > 1 {
                (output.loss / k as f64)?
            } else {
                output.loss
            };
            let store = scaled.backward()?;
            for (slot, p) in grads.iter_mut().zip(params) {
                let Some(g) = store.get(p.var.as_tensor()) else {
                    return Err(TrainError::MissingGradient(p.name.clone()));
                };
                *slot = Some(match slot.take() {
                    Some(acc) => (acc + g)?,
                    None => g.clone(),
                });
            }
        }
        out.loss = out.micro_losses.iter().sum::<f64>() / k as f64;
        out.grads = grads;
        Ok(out)
    }

    /// Current values of the trained tensors by export name.
    pub fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.params()
            .iter()
            .map(|p| {
                Ok((
                    self.export_name(p),
                    p.var.as_tensor().to_device(&Device::Cpu)?,
                ))
            })
            .collect()
    }
}

/// `vision_tower…stages.2.blocks.5.mlp.fc1.weight` → `vision_tower.stages.2`,
/// `language_model.model.layers.3.…` → `language_model.layers.3`, LoRA tensors → `… (lora)`.
fn module_group(name: &str) -> String {
    let lora = name.contains(".lora_");
    let parts: Vec<&str> = name.split('.').collect();
    let group = if name.starts_with("vision_tower.") {
        match parts.iter().position(|&p| p == "stages") {
            Some(i) if i + 1 < parts.len() => format!("vision_tower.stages.{}", parts[i + 1]),
            _ => "vision_tower.stem".to_string(),
        }
    } else if name.starts_with("multi_modal_projector.") {
        "multi_modal_projector".to_string()
    } else if let Some(i) = parts.iter().position(|&p| p == "layers") {
        format!("language_model.layers.{}", parts.get(i + 1).unwrap_or(&"?"))
    } else if name.contains("embed_tokens") {
        "language_model.embed_tokens".to_string()
    } else if name.contains("lm_head") {
        "language_model.lm_head".to_string()
    } else {
        "language_model.norm".to_string()
    };
    if lora {
        format!("{group} (lora)")
    } else {
        group
    }
}
