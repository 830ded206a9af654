//! The training loop: data order, micro-batches, AdamW steps, metrics, atomic checkpoints and
//! exact resume.
//!
//! Every optimizer step appends one line to `out/metrics.jsonl` (the loss is that of the batch
//! *before* the step's update). Checkpoints go to `out/checkpoints/step-NNNNNNNN/` (trained
//! tensors, AdamW moments, step, generator state, data cursor), written to a temporary folder
//! and renamed, then `out/checkpoints/latest` is replaced atomically: a run killed at any
//! point resumes from the last complete checkpoint, and the metrics lines written after it are
//! dropped, so a resumed run reproduces the uninterrupted run's loss curve exactly.

use crate::config::TrainConfig;
use crate::data::{collate, Sample};
use crate::error::{io_err, Result, TrainError};
use crate::lora::LoraPlan;
use crate::model::{Mode, ModelSetup, StepGradients, TrainModel};
use crate::optim::{clip_global_norm, learning_rate, AdamW, AdamWConfig, Moments};
use crate::rng::TrainRng;
use candle_core::{Device, Tensor};
use magma_processor::training::{
    read_items, ExampleWarning, TrainingExample, TrainingExampleBuilder,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A tokenised data set with the root its image paths are relative to.
pub struct Dataset {
    pub examples: Vec<TrainingExample>,
    pub image_root: PathBuf,
    /// Warnings of the label builder, per item (truncation, masked samples).
    pub warnings: Vec<(String, ExampleWarning)>,
}

impl Dataset {
    /// Reads Magma/LLaVA JSON or JSONL and builds every item's ids and labels; an item that
    /// cannot be built is an error naming it.
    pub fn load(
        path: &Path,
        images: Option<&Path>,
        builder: &TrainingExampleBuilder,
    ) -> Result<Self> {
        let items = read_items(path).map_err(|e| TrainError::Data(e.to_string()))?;
        if items.is_empty() {
            return Err(TrainError::Data(format!("{}: no items", path.display())));
        }
        let mut examples = Vec::with_capacity(items.len());
        let mut warnings = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let name = item.id.clone().unwrap_or_else(|| format!("item {i}"));
            let example = builder
                .build(item)
                .map_err(|e| TrainError::Data(format!("{}: {name}: {e}", path.display())))?;
            for w in &example.warnings {
                warnings.push((name.clone(), w.clone()));
            }
            examples.push(example);
        }
        let image_root = images
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).to_path_buf());
        Ok(Self {
            examples,
            image_root,
            warnings,
        })
    }

    /// Preprocesses example `i`'s images into a [`Sample`].
    pub fn sample(&self, i: usize, builder: &TrainingExampleBuilder) -> Result<Sample> {
        let example = &self.examples[i];
        let name = example.id.clone().unwrap_or_else(|| format!("item {i}"));
        let pixels = builder
            .pixels(example, &self.image_root)
            .map_err(|e| TrainError::Data(format!("{name}: {e}")))?;
        let shape = pixels.pixel_values.shape;
        Ok(Sample {
            id: name,
            input_ids: example.input_ids.clone(),
            labels: example.labels.clone(),
            crops: Tensor::from_vec(pixels.pixel_values.data, shape.to_vec(), &Device::Cpu)?,
            grids: pixels.image_sizes,
        })
    }
}

/// Position in the data stream: epoch and index into that epoch's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub epoch: usize,
    pub offset: usize,
}

/// What one optimizer step did (one line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer steps done, this one included (1-based).
    pub step: usize,
    /// Mean micro-batch loss before this step's update.
    pub loss: f64,
    pub lr: f64,
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Text tokens (non-padding ids) per second of this step.
    pub tokens_per_s: f64,
    pub labelled_tokens: usize,
    /// Argmax accuracy on labelled action tokens (robot samples), when the batch had some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_accuracy: Option<f64>,
    /// Held-out loss, on steps that save a checkpoint, when `data.eval` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    pub seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    rng_state: u64,
    cursor: Cursor,
    /// Per trained tensor: AdamW's update count (absent: never updated).
    optimizer_steps: BTreeMap<String, u64>,
    config: TrainConfig,
}

/// A configured training run.
pub struct Trainer {
    pub config: TrainConfig,
    pub model: TrainModel,
    builder: TrainingExampleBuilder,
    train: Dataset,
    eval: Option<Dataset>,
    optimizer: AdamW,
    decay: Vec<bool>,
    rng: TrainRng,
    step: usize,
    total_steps: usize,
    warmup_steps: usize,
    cursor: Cursor,
    pad_id: u32,
    /// Write the first step's gradients here (`--dump-grads`).
    pub dump_grads: Option<PathBuf>,
}

impl Trainer {
    /// Loads the model in the configured mode and the data; nothing is written yet.
    pub fn new(config: TrainConfig, model_dir: &Path, device: Device) -> Result<Self> {
        config.validate()?;
        let builder = TrainingExampleBuilder::from_dir(model_dir)
            .and_then(|b| b.with_max_length(config.data.max_length))
            .map_err(|e| TrainError::Data(e.to_string()))?;
        let pad_id = builder
            .pad_id()
            .map_err(|e| TrainError::Data(e.to_string()))?;
        let train = Dataset::load(&config.data.train, config.data.images.as_deref(), &builder)?;
        let eval = match &config.data.eval {
            Some(path) => Some(Dataset::load(
                path,
                config.data.images.as_deref(),
                &builder,
            )?),
            None => None,
        };
        let mode = parse_mode(&config)?;
        let lora = if mode.is_lora() {
            let l = &config.lora;
            Some(match &l.init {
                Some(dir) => LoraPlan::from_peft_dir(dir)?,
                None => LoraPlan::new(l.r, l.alpha, l.dropout, &l.targets, l.init_weights)?,
            })
        } else {
            None
        };
        let setup = ModelSetup {
            mode,
            lora,
            drop_path_rate: config.train.drop_path,
            seed: config.train.seed,
            device,
        };
        let model = TrainModel::load(model_dir, setup)?;
        let batches_per_epoch = train.examples.len().div_ceil(config.train.batch_size);
        let total_steps = if config.train.steps > 0 {
            config.train.steps
        } else {
            config.train.epochs.unwrap_or(1) * batches_per_epoch
        };
        let warmup_steps = config
            .optim
            .warmup_steps
            .max((config.optim.warmup_ratio * total_steps as f64).ceil() as usize);
        let decay = model
            .params()
            .iter()
            .map(|p| {
                !config.optim.no_decay_bias_and_norm
                    || !(p.name.ends_with(".bias") || p.name.contains("norm"))
            })
            .collect();
        let optimizer = AdamW::new(
            AdamWConfig {
                beta1: config.optim.betas[0],
                beta2: config.optim.betas[1],
                eps: config.optim.eps,
                weight_decay: config.optim.weight_decay,
            },
            model.params().len(),
        );
        let rng = TrainRng::new(config.train.seed.wrapping_add(1));
        Ok(Self {
            config,
            model,
            builder,
            train,
            eval,
            optimizer,
            decay,
            rng,
            step: 0,
            total_steps,
            warmup_steps,
            cursor: Cursor {
                epoch: 0,
                offset: 0,
            },
            pad_id,
            dump_grads: None,
        })
    }

    /// Optimizer steps done.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// Steps of the whole run.
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    /// The training data (for warnings and counts).
    pub fn train_data(&self) -> &Dataset {
        &self.train
    }

    fn out(&self) -> &Path {
        &self.config.train.out
    }

    fn checkpoints_dir(&self) -> PathBuf {
        self.out().join("checkpoints")
    }

    /// The order of epoch `epoch`: identity, or a seeded shuffle; with `group_by_length`,
    /// windows of 8 batches sorted by length (longest first).
    fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.train.examples.len()).collect();
        if self.config.train.shuffle {
            let seed =
                self.config.train.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            TrainRng::new(seed).shuffle(&mut order);
        }
        if self.config.train.group_by_length {
            let window = self.config.train.batch_size * 8;
            for chunk in order.chunks_mut(window) {
                chunk.sort_by_key(|&i| std::cmp::Reverse(self.train.examples[i].input_ids.len()));
            }
        }
        order
    }

    /// The next `batch_size` sample indices (continuing into the next epoch when one ends).
    fn next_indices(&mut self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.config.train.batch_size);
        let mut order = self.epoch_order(self.cursor.epoch);
        while out.len() < self.config.train.batch_size {
            if self.cursor.offset >= order.len() {
                self.cursor = Cursor {
                    epoch: self.cursor.epoch + 1,
                    offset: 0,
                };
                order = self.epoch_order(self.cursor.epoch);
            }
            out.push(order[self.cursor.offset]);
            self.cursor.offset += 1;
        }
        out
    }

    fn micro_batches(
        &self,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<Vec<magma_model::autograd::TrainBatch>> {
        let samples = indices
            .iter()
            .map(|&i| data.sample(i, &self.builder))
            .collect::<Result<Vec<_>>>()?;
        samples
            .chunks(self.config.train.micro_batch_size)
            .map(|chunk| {
                let refs: Vec<&Sample> = chunk.iter().collect();
                collate(&refs, self.pad_id, self.config.data.max_length)
            })
            .collect()
    }

    /// One optimizer step: gradients of the next batch (accumulated over micro-batches),
    /// clipping, schedule, AdamW; appends the metrics line.
    pub fn train_step(&mut self) -> Result<StepRecord> {
        let start = Instant::now();
        let indices = self.next_indices();
        let batches = self.micro_batches(&self.train, &indices)?;
        let text_tokens: usize = batches
            .iter()
            .map(|b| {
                b.attention_mask
                    .iter()
                    .flatten()
                    .filter(|&&m| m != 0)
                    .count()
            })
            .sum();
        let StepGradients {
            mut grads,
            loss,
            n_tokens,
            action_tokens,
            action_correct,
            ..
        } = self.model.gradients(&batches, &mut self.rng)?;
        if !loss.is_finite() {
            return Err(TrainError::Data(format!(
                "loss is {loss} at step {} (samples {indices:?})",
                self.step + 1
            )));
        }
        if self.step == 0 {
            if let Some(path) = self.dump_grads.clone() {
                let named: BTreeMap<String, Tensor> = self
                    .model
                    .params()
                    .iter()
                    .zip(&grads)
                    .filter_map(|(p, g)| g.clone().map(|g| (self.model.export_name(p), g)))
                    .collect();
                write_safetensors(&path, &named)?;
            }
        }
        let grad_norm = clip_global_norm(&mut grads, self.config.optim.max_grad_norm)?;
        let lr = learning_rate(
            self.config.optim.schedule,
            self.config.optim.lr,
            self.step,
            self.warmup_steps,
            self.total_steps,
        );
        let vars: Vec<_> = self.model.params().iter().map(|p| &p.var).collect();
        self.optimizer.step(&vars, &grads, &self.decay, lr)?;
        self.step += 1;
        let seconds = start.elapsed().as_secs_f64();
        let record = StepRecord {
            step: self.step,
            loss,
            lr,
            grad_norm,
            tokens_per_s: text_tokens as f64 / seconds.max(1e-9),
            labelled_tokens: n_tokens,
            action_accuracy: (action_tokens > 0)
                .then(|| action_correct as f64 / action_tokens as f64),
            eval_loss: None,
            seconds,
        };
        Ok(record)
    }

    /// Mean loss over the held-out set (micro-batches, no update).
    pub fn eval_loss(&mut self) -> Result<Option<f64>> {
        let Some(eval) = &self.eval else {
            return Ok(None);
        };
        let indices: Vec<usize> = (0..eval.examples.len()).collect();
        let mut total = 0.0;
        let mut count = 0usize;
        for chunk in indices.chunks(self.config.train.micro_batch_size) {
            for batch in self.micro_batches(eval, chunk)? {
                // no dropout randomness is consumed from the training stream
                let out = self.model.model.loss(&batch, &mut TrainRng::new(0))?;
                total += out.loss.to_scalar::<f32>()? as f64 * out.n_tokens as f64;
                count += out.n_tokens;
            }
        }
        Ok(Some(total / count.max(1) as f64))
    }

    /// Trains until the configured step count, saving every `save_every` steps and at the end;
    /// `on_step` sees every record (progress bars).
    pub fn run(&mut self, on_step: &mut dyn FnMut(&StepRecord, usize)) -> Result<()> {
        self.run_until(self.total_steps, on_step)
    }

    /// Like [`Trainer::run`] but stops after step `last` (at most the configured total).
    pub fn run_until(
        &mut self,
        last: usize,
        on_step: &mut dyn FnMut(&StepRecord, usize),
    ) -> Result<()> {
        let last = last.min(self.total_steps);
        std::fs::create_dir_all(self.out()).map_err(io_err(self.out()))?;
        let metrics_path = self.out().join("metrics.jsonl");
        let mut metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(io_err(&metrics_path))?;
        while self.step < last {
            let mut record = self.train_step()?;
            let save_every = self.config.train.save_every;
            let saving = self.step == self.total_steps
                || (save_every > 0 && self.step.is_multiple_of(save_every));
            if saving {
                record.eval_loss = self.eval_loss()?;
            }
            let line =
                serde_json::to_string(&record).map_err(|e| TrainError::Data(e.to_string()))?;
            writeln!(metrics, "{line}").map_err(io_err(&metrics_path))?;
            metrics.sync_data().map_err(io_err(&metrics_path))?;
            if saving {
                self.save_checkpoint()?;
            }
            on_step(&record, self.total_steps);
        }
        Ok(())
    }

    /// Writes a checkpoint of the current state atomically and returns its folder.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let dir = self.checkpoints_dir();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let name = format!("step-{:08}", self.step);
        let tmp = dir.join(format!(".{name}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let params = self.model.params();
        let tensors: BTreeMap<String, Tensor> = params
            .iter()
            .map(|p| Ok((p.name.clone(), p.var.as_tensor().to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        write_safetensors(&tmp.join("params.safetensors"), &tensors)?;
        let mut moments = BTreeMap::new();
        let mut optimizer_steps = BTreeMap::new();
        for (p, state) in params.iter().zip(&self.optimizer.state) {
            if let Some(m) = state {
                moments.insert(format!("m.{}", p.name), m.m.to_device(&Device::Cpu)?);
                moments.insert(format!("v.{}", p.name), m.v.to_device(&Device::Cpu)?);
                optimizer_steps.insert(p.name.clone(), m.step);
            }
        }
        write_safetensors(&tmp.join("optimizer.safetensors"), &moments)?;
        let state = CheckpointState {
            step: self.step,
            rng_state: self.rng.state(),
            cursor: self.cursor,
            optimizer_steps,
            config: self.config.clone(),
        };
        let json =
            serde_json::to_string_pretty(&state).map_err(|e| TrainError::Data(e.to_string()))?;
        write_synced(&tmp.join("state.json"), json.as_bytes())?;
        let final_dir = dir.join(&name);
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(io_err(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
        write_atomic(&dir.join("latest"), name.as_bytes())?;
        self.prune_checkpoints(&dir)?;
        Ok(final_dir)
    }

    fn prune_checkpoints(&self, dir: &Path) -> Result<()> {
        let keep = self.config.train.keep_checkpoints.max(1);
        let mut steps: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"))
            })
            .collect();
        steps.sort();
        for old in steps.iter().take(steps.len().saturating_sub(keep)) {
            std::fs::remove_dir_all(old).map_err(io_err(old))?;
        }
        Ok(())
    }

    /// Restores the newest complete checkpoint of `out/checkpoints/` (if any) and drops the
    /// metrics lines written after it. Returns the step resumed from.
    pub fn resume(&mut self) -> Result<Option<usize>> {
        let dir = self.checkpoints_dir();
        let latest = dir.join("latest");
        if !latest.exists() {
            return Ok(None);
        }
        let name = std::fs::read_to_string(&latest).map_err(io_err(&latest))?;
        let ckpt = dir.join(name.trim());
        let bad = |path: &Path, message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let state_path = ckpt.join("state.json");
        let text =
            std::fs::read_to_string(&state_path).map_err(|e| bad(&state_path, e.to_string()))?;
        let state: CheckpointState = serde_json::from_str(&text)
            .map_err(|e| bad(&state_path, format!("corrupt state: {e}")))?;
        if state.config.mode != self.config.mode || state.config.model != self.config.model {
            return Err(bad(
                &state_path,
                format!(
                    "was written for mode `{}` of `{}`, this run is mode `{}` of `{}`",
                    state.config.mode, state.config.model, self.config.mode, self.config.model
                ),
            ));
        }
        let load = |path: PathBuf| -> Result<BTreeMap<String, Tensor>> {
            candle_core::safetensors::load(&path, &Device::Cpu)
                .map(|m| m.into_iter().collect())
                .map_err(|e| bad(&path, format!("corrupt or unreadable: {e}")))
        };
        let params_path = ckpt.join("params.safetensors");
        let tensors = load(params_path.clone())?;
        let moments = load(ckpt.join("optimizer.safetensors"))?;
        let device = self.model.model.device().clone();
        // check everything before changing anything
        for p in self.model.params() {
            let t = tensors
                .get(&p.name)
                .ok_or_else(|| bad(&params_path, format!("no tensor `{}`", p.name)))?;
            if t.dims() != p.var.dims() {
                return Err(bad(
                    &params_path,
                    format!(
                        "`{}` has shape {:?}, the model {:?}",
                        p.name,
                        t.dims(),
                        p.var.dims()
                    ),
                ));
            }
        }
        for (i, p) in self.model.params().iter().enumerate() {
            p.var.set(&tensors[&p.name].to_device(&device)?)?;
            self.optimizer.state[i] = match state.optimizer_steps.get(&p.name) {
                Some(&step) => {
                    let get = |k: String| {
                        moments
                            .get(&k)
                            .cloned()
                            .ok_or_else(|| bad(&ckpt, format!("optimizer state has no `{k}`")))
                    };
                    Some(Moments {
                        m: get(format!("m.{}", p.name))?.to_device(&device)?,
                        v: get(format!("v.{}", p.name))?.to_device(&device)?,
                        step,
                    })
                }
                None => None,
            };
        }
        self.step = state.step;
        self.rng = TrainRng::from_state(state.rng_state);
        self.cursor = state.cursor;
        let metrics_path = self.out().join("metrics.jsonl");
        if metrics_path.exists() {
            let text = std::fs::read_to_string(&metrics_path).map_err(io_err(&metrics_path))?;
            let kept: String = text
                .lines()
                .filter(|line| {
                    serde_json::from_str::<StepRecord>(line).is_ok_and(|r| r.step <= state.step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            write_atomic(&metrics_path, kept.as_bytes())?;
        }
        Ok(Some(state.step))
    }

    /// The LoRA plan, when training adapters.
    pub fn lora_plan(&self) -> Option<&LoraPlan> {
        self.model
            .setup
            .lora
            .as_ref()
            .filter(|_| self.model.setup.mode.is_lora())
    }
}

fn parse_mode(config: &TrainConfig) -> Result<Mode> {
    Ok(match config.mode.as_str() {
        "full" => Mode::Full,
        "projector" => Mode::Projector,
        "lora" => Mode::Lora {
            train_projector: config.lora.train_projector,
        },
        "qlora" => Mode::Qlora {
            format: config
                .lora
                .quantize
                .parse()
                .map_err(|e| TrainError::Config(format!("lora.quantize: {e}")))?,
            train_projector: config.lora.train_projector,
        },
        other => return Err(TrainError::Config(format!("unknown mode `{other}`"))),
    })
}

/// Writes tensors as safetensors with PEFT's / transformers' metadata `{"format": "pt"}`,
/// atomically (temporary file, fsync, rename).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    let contiguous: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.contiguous()?)))
        .collect::<Result<_>>()?;
    let bytes =
        safetensors::tensor::serialize(contiguous, metadata).map_err(|e| TrainError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    write_atomic(path, &bytes)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::File::create(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Temporary file beside `path`, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}
