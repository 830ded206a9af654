//! The Magma forward pass on the training path: every op differentiable, parameters as
//! [`Var`]s where trained, frozen (possibly quantized) tensors elsewhere, optional LoRA adapters
//! on linear layers, and the reference's loss (cross-entropy only at labelled rows).
//!
//! The layout follows the inference model (`vision.rs`, `projector.rs`, `llama.rs`) but runs on
//! padded batches `[B, T]` with per-sample positions and a padding mask, as Magma's training
//! forward does.

use super::ops::{self, FrozenWeight};
use crate::config::{AnyresStrategy, MagmaConfig};
use crate::error::{ModelError, Result};
use crate::projector::{stitch_crops, tile_crops};
use crate::vision::{TrunkGeometry, TRUNK_PREFIX};
use crate::weights::Weights;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor, Var, D};
use std::cell::RefCell;

/// Labels that carry no loss (`IGNORE_INDEX` of the reference).
pub const IGNORE_INDEX: i64 = -100;
const LAYER_NORM_EPS: f64 = 1e-5;
const STEM_PATCH: usize = 4;
const DOWNSAMPLE_PATCH: usize = 2;

/// A source of uniform random numbers in `[0, 1)` for dropout and drop path (seeded by the
/// trainer, so runs are reproducible and resumable).
pub trait RandomSource {
    fn uniform(&mut self) -> f32;
}

/// Decides whether a linear module (name, in, out) gets a LoRA adapter, and its initial tensors.
pub type LoraFn<'a> = &'a dyn Fn(&str, usize, usize) -> Result<Option<LoraInit>>;

/// Which tensors train and where LoRA adapters go.
pub struct TrainSpec<'a> {
    /// Whether the checkpoint tensor `name` is trained (full weights, not LoRA).
    pub trainable: &'a dyn Fn(&str) -> bool,
    /// LoRA adapter for the linear module `name` (e.g.
    /// `language_model.model.layers.0.self_attn.q_proj`) with `(in, out)` features.
    pub lora: LoraFn<'a>,
    /// Stochastic depth of the ConvNeXt trunk (timm `drop_path_rate`; 0 = off).
    pub drop_path_rate: f64,
}

/// Initial LoRA tensors and settings of one module.
pub struct LoraInit {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    /// `alpha / r`.
    pub scaling: f64,
    pub dropout: f32,
}

/// One trained tensor: its name (checkpoint name, or `{module}.lora_A.weight` /
/// `{module}.lora_B.weight` for adapters) and the variable.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
}

struct Builder<'a> {
    weights: &'a Weights,
    spec: &'a TrainSpec<'a>,
    params: RefCell<Vec<Param>>,
}

impl Builder<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.weights.get_as(name, shape, DType::F32)?;
        if (self.spec.trainable)(name) {
            let var = Var::from_tensor(&t)?;
            let tensor = var.as_tensor().clone();
            self.params.borrow_mut().push(Param {
                name: name.to_string(),
                var,
            });
            Ok(tensor)
        } else {
            Ok(t)
        }
    }

    fn tensor_alias(&self, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        let name = names
            .iter()
            .find(|n| self.weights.contains(n))
            .ok_or_else(|| ModelError::MissingTensor {
                name: names.join("` or `"),
            })?;
        self.tensor(name, shape)
    }

    fn var(&self, name: String, t: Tensor) -> Result<Tensor> {
        let var = Var::from_tensor(&t.to_dtype(DType::F32)?)?;
        let tensor = var.as_tensor().clone();
        self.params.borrow_mut().push(Param { name, var });
        Ok(tensor)
    }

    fn linear(
        &self,
        module: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<TrainLinear> {
        let weight_name = format!("{module}.weight");
        let weight = if (self.spec.trainable)(&weight_name) {
            LinearWeight::Trainable(self.tensor(&weight_name, &[out_dim, in_dim])?)
        } else {
            LinearWeight::Frozen(
                match self
                    .weights
                    .linear_weight(&weight_name, &[out_dim, in_dim])?
                {
                    QMatMul::QTensor(q) => FrozenWeight::Quantized(q),
                    QMatMul::Tensor(t) | QMatMul::TensorF16(t) => {
                        FrozenWeight::Dense(t.to_dtype(DType::F32)?)
                    }
                },
            )
        };
        let bias = if bias {
            Some(self.tensor(&format!("{module}.bias"), &[out_dim])?)
        } else {
            None
        };
        let lora = match (self.spec.lora)(module, in_dim, out_dim)? {
            Some(init) => Some(Lora {
                a: self.var(format!("{module}.lora_A.weight"), init.a)?,
                b: self.var(format!("{module}.lora_B.weight"), init.b)?,
                scaling: init.scaling,
                dropout: init.dropout,
            }),
            None => None,
        };
        Ok(TrainLinear { weight, bias, lora })
    }
}

enum LinearWeight {
    Trainable(Tensor),
    Frozen(FrozenWeight),
}

struct Lora {
    a: Tensor,
    b: Tensor,
    scaling: f64,
    dropout: f32,
}

/// `y = x·Wᵀ + b (+ scaling · B·A·dropout(x))` over the last axis.
struct TrainLinear {
    weight: LinearWeight,
    bias: Option<Tensor>,
    lora: Option<Lora>,
}

impl TrainLinear {
    fn forward(&self, x: &Tensor, rng: &mut dyn RandomSource) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap_or(&0);
        let flat = x.reshape(((), in_dim))?;
        let mut y = match &self.weight {
            LinearWeight::Trainable(w) => flat.matmul(&w.t()?)?,
            LinearWeight::Frozen(w) => ops::frozen_linear(&flat, w)?,
        };
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        if let Some(lora) = &self.lora {
            let input = dropout(&flat, lora.dropout, rng)?;
            let update = input.matmul(&lora.a.t()?)?.matmul(&lora.b.t()?)?;
            y = (y + (update * lora.scaling)?)?;
        }
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = y.dim(1)?;
        }
        Ok(y.reshape(out_dims)?)
    }
}

/// Inverted dropout (`torch.nn.Dropout` in train mode) with the trainer's random numbers.
fn dropout(x: &Tensor, p: f32, rng: &mut dyn RandomSource) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.uniform() < p { 0.0 } else { keep })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    Ok((x * mask)?)
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn load(b: &Builder, prefix: &str, dim: usize) -> Result<Self> {
        Ok(Self {
            weight: b.tensor(&format!("{prefix}.weight"), &[dim])?,
            bias: b.tensor(&format!("{prefix}.bias"), &[dim])?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::layer_norm(
            x,
            &self.weight,
            &self.bias,
            LAYER_NORM_EPS,
        )?)
    }
}

/// Kernel = stride convolution as reshape + product; weight `[out, in, p, p]` as stored.
struct PatchConv {
    weight: Tensor,
    bias: Tensor,
    patch: usize,
}

impl PatchConv {
    fn load(b: &Builder, prefix: &str, c_in: usize, c_out: usize, patch: usize) -> Result<Self> {
        Ok(Self {
            weight: b.tensor(&format!("{prefix}.weight"), &[c_out, c_in, patch, patch])?,
            bias: b.tensor(&format!("{prefix}.bias"), &[c_out])?,
            patch,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let (p, c_out) = (self.patch, self.weight.dim(0)?);
        let patches = x
            .reshape((n, h / p, p, w / p, p, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((n * (h / p) * (w / p), p * p * c))?;
        // [out, in, ky, kx] -> [out, ky, kx, in] to match channels-last patches
        let weight = self
            .weight
            .permute((0, 2, 3, 1))?
            .reshape((c_out, p * p * c))?;
        let y = patches.matmul(&weight.t()?)?.broadcast_add(&self.bias)?;
        Ok(y.reshape((n, h / p, w / p, c_out))?)
    }
}

struct Block {
    dw_weight: Tensor,
    dw_bias: Tensor,
    norm: Norm,
    fc1: TrainLinear,
    fc2: TrainLinear,
    gamma: Tensor,
    drop_path: f64,
}

impl Block {
    fn load(b: &Builder, prefix: &str, dim: usize, drop_path: f64) -> Result<Self> {
        let hidden = 4 * dim;
        Ok(Self {
            dw_weight: b.tensor(&format!("{prefix}.conv_dw.weight"), &[dim, 1, 7, 7])?,
            dw_bias: b.tensor(&format!("{prefix}.conv_dw.bias"), &[dim])?,
            norm: Norm::load(b, &format!("{prefix}.norm"), dim)?,
            fc1: b.linear(&format!("{prefix}.mlp.fc1"), dim, hidden, true)?,
            fc2: b.linear(&format!("{prefix}.mlp.fc2"), hidden, dim, true)?,
            // Magma-8B calls the layer scale `gamma`; transformers' loader renames it `weight`
            gamma: b.tensor_alias(
                &[&format!("{prefix}.gamma"), &format!("{prefix}.weight")],
                &[dim],
            )?,
            drop_path,
        })
    }

    fn forward(&self, x: &Tensor, rng: &mut dyn RandomSource) -> Result<Tensor> {
        let (_, _, _, c) = x.dims4()?;
        let k = self.dw_weight.dim(2)?;
        let taps = self
            .dw_weight
            .reshape((c, k * k))?
            .t()?
            .reshape((k, k, c))?;
        let y = ops::depthwise_conv2d(x, &taps.contiguous()?, &self.dw_bias)?;
        let y = self.norm.forward(&y)?;
        let y = self.fc1.forward(&y, rng)?.gelu_erf()?;
        let y = self.fc2.forward(&y, rng)?.broadcast_mul(&self.gamma)?;
        let y = drop_path(&y, self.drop_path, rng)?;
        Ok((x + y)?)
    }
}

/// timm's `DropPath`: each sample's residual branch is dropped with probability `p`, the kept
/// ones scaled by `1 / (1 − p)`.
fn drop_path(x: &Tensor, p: f64, rng: &mut dyn RandomSource) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let n = x.dim(0)?;
    let keep = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = (0..n)
        .map(|_| {
            if (rng.uniform() as f64) < p {
                0.0
            } else {
                keep
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (n, 1, 1, 1), x.device())?.to_dtype(x.dtype())?;
    Ok(x.broadcast_mul(&mask)?)
}

struct Stage {
    downsample: Option<(Norm, PatchConv)>,
    blocks: Vec<Block>,
}

struct Trunk {
    stem: PatchConv,
    stem_norm: Norm,
    stages: Vec<Stage>,
    stride: usize,
}

impl Trunk {
    fn load(b: &Builder, geometry: &TrunkGeometry, drop_path_rate: f64) -> Result<Self> {
        let p = TRUNK_PREFIX;
        let first = geometry.dims.first().copied().unwrap_or(0);
        let total: usize = geometry.depths.iter().sum();
        // timm: rates rise linearly from 0 (first block) to drop_path_rate (last block)
        let rate = |i: usize| {
            if total > 1 {
                drop_path_rate * i as f64 / (total - 1) as f64
            } else {
                0.0
            }
        };
        let mut index = 0;
        let mut stages = Vec::new();
        for (s, (&depth, &dim)) in geometry.depths.iter().zip(&geometry.dims).enumerate() {
            let prefix = format!("{p}.stages.{s}");
            let downsample = match s.checked_sub(1).and_then(|i| geometry.dims.get(i)) {
                Some(&c_in) => Some((
                    Norm::load(b, &format!("{prefix}.downsample.0"), c_in)?,
                    PatchConv::load(
                        b,
                        &format!("{prefix}.downsample.1"),
                        c_in,
                        dim,
                        DOWNSAMPLE_PATCH,
                    )?,
                )),
                None => None,
            };
            let mut blocks = Vec::with_capacity(depth);
            for i in 0..depth {
                blocks.push(Block::load(
                    b,
                    &format!("{prefix}.blocks.{i}"),
                    dim,
                    rate(index),
                )?);
                index += 1;
            }
            stages.push(Stage { downsample, blocks });
        }
        Ok(Self {
            stem: PatchConv::load(b, &format!("{p}.stem.0"), 3, first, STEM_PATCH)?,
            stem_norm: Norm::load(b, &format!("{p}.stem.1"), first)?,
            stages,
            stride: geometry.stride(),
        })
    }

    /// `[N, 3, H, W]` -> `[N, H/32, W/32, C]`.
    fn forward(&self, pixels: &Tensor, rng: &mut dyn RandomSource) -> Result<Tensor> {
        let (_, c, h, w) = pixels.dims4()?;
        if c != 3 || h % self.stride != 0 || w % self.stride != 0 || h == 0 || w == 0 {
            return Err(ModelError::InvalidImages(format!(
                "vision tower input {:?}: need 3 channels and sides that are multiples of {}",
                pixels.dims(),
                self.stride
            )));
        }
        let x = pixels.permute((0, 2, 3, 1))?.contiguous()?;
        let mut x = self.stem_norm.forward(&self.stem.forward(&x)?)?;
        for stage in &self.stages {
            if let Some((norm, conv)) = &stage.downsample {
                x = conv.forward(&norm.forward(&x)?)?;
            }
            for block in &stage.blocks {
                x = block.forward(&x, rng)?;
            }
        }
        Ok(x)
    }
}

struct Projector {
    layers: Vec<TrainLinear>,
    row_separator: Tensor,
}

impl Projector {
    fn load(b: &Builder, depth: usize, vision_dim: usize, hidden: usize) -> Result<Self> {
        let layers = (0..depth)
            .map(|i| {
                let in_dim = if i == 0 { vision_dim } else { hidden };
                // odd indices of the reference's nn.Sequential are the GELUs
                b.linear(
                    &format!("multi_modal_projector.proj.{}", 2 * i),
                    in_dim,
                    hidden,
                    true,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            row_separator: b.tensor("multi_modal_projector.row_seperator", &[1, 1, hidden])?,
        })
    }

    fn forward(&self, x: &Tensor, rng: &mut dyn RandomSource) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                x = x.gelu_erf()?;
            }
            x = layer.forward(&x, rng)?;
        }
        Ok(x)
    }

    /// `[rows, cols, hidden]` -> `[rows · (cols + 1), hidden]`, separator after every row.
    fn append_row_separators(&self, canvas: &Tensor) -> Result<Tensor> {
        let (rows, cols, hidden) = canvas.dims3()?;
        let separators = self.row_separator.broadcast_as((rows, 1, hidden))?;
        Ok(Tensor::cat(&[canvas, &separators], 1)?.reshape((rows * (cols + 1), hidden))?)
    }
}

struct DecoderLayer {
    input_norm: Tensor,
    q: TrainLinear,
    k: TrainLinear,
    v: TrainLinear,
    o: TrainLinear,
    post_norm: Tensor,
    gate: TrainLinear,
    up: TrainLinear,
    down: TrainLinear,
}

/// A collated training batch (padded), as Magma's data collator hands it to the model.
#[derive(Debug, Clone)]
pub struct TrainBatch {
    /// `[B][L]` token ids (right- or left-padded with the pad id).
    pub input_ids: Vec<Vec<u32>>,
    /// `[B][L]` labels, [`IGNORE_INDEX`] where no loss.
    pub labels: Vec<Vec<i64>>,
    /// `[B][L]` 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<Vec<u8>>,
    /// `[B, max_crops, 3, b, b]`: each sample's crops (all its images), zero-padded.
    pub pixel_values: Tensor,
    /// Per sample, the `(rows, cols)` crop grid of each of its images.
    pub image_grids: Vec<Vec<(usize, usize)>>,
}

impl TrainBatch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// True for a batch without samples.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// The merged (text + image rows) view of a batch, computed on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedLayout {
    /// `[B][T]` labels after the merge (image rows and padding: [`IGNORE_INDEX`]).
    pub labels: Vec<Vec<i64>>,
    /// `[B][T]` 1 on real rows.
    pub attention_mask: Vec<Vec<u8>>,
    /// `[B][T]` rotary positions (running count minus one, 1 on padding).
    pub position_ids: Vec<Vec<i64>>,
    /// Whether the merged batch is left-padded.
    pub left_padded: bool,
}

/// Loss of one (micro-)batch and what the logs need.
#[derive(Debug)]
pub struct LossOutput {
    /// Mean cross-entropy over all labelled rows of the batch (scalar, f32).
    pub loss: Tensor,
    /// Number of labelled rows.
    pub n_tokens: usize,
    /// Argmax prediction at every labelled row.
    pub predictions: Vec<u32>,
    /// Target id of every labelled row.
    pub targets: Vec<u32>,
}

/// Magma with a differentiable forward for training.
pub struct TrainableMagma {
    config: MagmaConfig,
    trunk: Trunk,
    projector: Projector,
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    lm_head: TrainLinear,
    params: Vec<Param>,
    device: Device,
}

impl TrainableMagma {
    /// Builds the training model from a weight store; `spec` decides what trains.
    pub fn load(config: MagmaConfig, weights: &Weights, spec: &TrainSpec) -> Result<Self> {
        let geometry = TrunkGeometry::infer(weights)?;
        let b = Builder {
            weights,
            spec,
            params: RefCell::new(Vec::new()),
        };
        let vision_dim = geometry.dims.last().copied().unwrap_or(0);
        let trunk = Trunk::load(&b, &geometry, spec.drop_path_rate)?;
        let cfg = &config.text;
        let d = cfg.hidden_size;
        let projector = Projector::load(&b, config.projector_depth, vision_dim, d)?;
        let m = "language_model.model";
        let embed_tokens = b.tensor(&format!("{m}.embed_tokens.weight"), &[cfg.vocab_size, d])?;
        let (h, kvh, hd, i) = (
            cfg.num_attention_heads,
            cfg.kv_heads(),
            cfg.head_dim(),
            cfg.intermediate_size,
        );
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("{m}.layers.{l}");
            let ab = cfg.attention_bias;
            let mb = cfg.mlp_bias;
            layers.push(DecoderLayer {
                input_norm: b.tensor(&format!("{p}.input_layernorm.weight"), &[d])?,
                q: b.linear(&format!("{p}.self_attn.q_proj"), d, h * hd, ab)?,
                k: b.linear(&format!("{p}.self_attn.k_proj"), d, kvh * hd, ab)?,
                v: b.linear(&format!("{p}.self_attn.v_proj"), d, kvh * hd, ab)?,
                o: b.linear(&format!("{p}.self_attn.o_proj"), h * hd, d, ab)?,
                post_norm: b.tensor(&format!("{p}.post_attention_layernorm.weight"), &[d])?,
                gate: b.linear(&format!("{p}.mlp.gate_proj"), d, i, mb)?,
                up: b.linear(&format!("{p}.mlp.up_proj"), d, i, mb)?,
                down: b.linear(&format!("{p}.mlp.down_proj"), i, d, mb)?,
            });
        }
        let norm = b.tensor(&format!("{m}.norm.weight"), &[d])?;
        if cfg.tie_word_embeddings {
            return Err(ModelError::Config {
                path: "config.json".into(),
                message: "tie_word_embeddings is not supported on the training path".into(),
            });
        }
        let lm_head = b.linear("language_model.lm_head", d, cfg.vocab_size, false)?;
        Ok(Self {
            config,
            trunk,
            projector,
            embed_tokens,
            layers,
            norm,
            lm_head,
            params: b.params.into_inner(),
            device: weights.device().clone(),
        })
    }

    /// Every trained tensor, in load order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The model's configuration.
    pub fn config(&self) -> &MagmaConfig {
        &self.config
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Feature sequences `[feature_len, hidden]` of every image of the batch, sample by sample.
    fn image_features(
        &self,
        batch: &TrainBatch,
        rng: &mut dyn RandomSource,
    ) -> Result<Vec<Vec<Tensor>>> {
        let pixels = batch
            .pixel_values
            .to_dtype(DType::F32)?
            .to_device(&self.device)?;
        let (b, max_crops, _, _, _) = pixels.dims5()?;
        if b != batch.len() {
            return Err(ModelError::InvalidImages(format!(
                "pixel_values holds {b} samples, the batch {}",
                batch.len()
            )));
        }
        let mut own_crops = Vec::new();
        for (s, grids) in batch.image_grids.iter().enumerate() {
            let needed: usize = grids.iter().map(|(r, c)| r * c).sum();
            if needed > max_crops || grids.iter().any(|&(r, c)| r == 0 || c == 0) {
                return Err(ModelError::InvalidImages(format!(
                    "sample {s}: grids {grids:?} need {needed} crops, pixel_values has {max_crops}"
                )));
            }
            own_crops.push(pixels.get(s)?.narrow(0, 0, needed)?);
        }
        let mut features = vec![Vec::new(); batch.len()];
        match self.config.strategy {
            AnyresStrategy::Crop => {
                // every crop of the batch in one tower call (the tower is per-crop independent)
                let all = Tensor::cat(&own_crops, 0)?;
                let projected = self
                    .projector
                    .forward(&self.trunk.forward(&all, rng)?, rng)?;
                let mut offset = 0;
                for (s, grids) in batch.image_grids.iter().enumerate() {
                    for &(rows, cols) in grids {
                        let own = projected.narrow(0, offset, rows * cols)?;
                        offset += rows * cols;
                        let canvas = tile_crops(&own, rows, cols)?;
                        features[s].push(self.projector.append_row_separators(&canvas)?);
                    }
                }
            }
            AnyresStrategy::Global => {
                for (s, grids) in batch.image_grids.iter().enumerate() {
                    let mut offset = 0;
                    for &(rows, cols) in grids {
                        let own = own_crops[s].narrow(0, offset, rows * cols)?;
                        offset += rows * cols;
                        let picture = stitch_crops(&own, rows, cols)?;
                        let projected = self
                            .projector
                            .forward(&self.trunk.forward(&picture, rng)?, rng)?;
                        features[s].push(
                            self.projector
                                .append_row_separators(&projected.squeeze(0)?)?,
                        );
                    }
                }
            }
        }
        Ok(features)
    }

    /// The merged layout of a batch whose images give `feature_lens[s][k]` rows each.
    pub fn merged_layout(
        &self,
        batch: &TrainBatch,
        feature_lens: &[Vec<usize>],
    ) -> Result<MergedLayout> {
        Ok(merge_plan(batch, feature_lens, self.config.image_token_index)?.layout)
    }

    /// The training loss of a batch: merged forward, final norm, LM head at the rows whose next
    /// label carries loss, mean cross-entropy over all those rows (pooled over samples).
    pub fn loss(&self, batch: &TrainBatch, rng: &mut dyn RandomSource) -> Result<LossOutput> {
        let features = self.image_features(batch, rng)?;
        let feature_lens: Vec<Vec<usize>> = features
            .iter()
            .map(|f| {
                f.iter()
                    .map(|t| t.dim(0))
                    .collect::<candle_core::Result<Vec<_>>>()
            })
            .collect::<candle_core::Result<_>>()?;
        let plan = merge_plan(batch, &feature_lens, self.config.image_token_index)?;
        let hidden = self.config.text.hidden_size;
        let t_len = plan.layout.labels.first().map_or(0, Vec::len);
        let b_len = batch.len();
        // embeddings of every id (the reference embeds `<image>` positions as id 0)
        let flat_ids: Vec<u32> = batch
            .input_ids
            .iter()
            .flatten()
            .map(|&id| {
                if id == self.config.image_token_index {
                    0
                } else {
                    id
                }
            })
            .collect();
        let vocab = self.config.text.vocab_size;
        if let Some(&bad) = flat_ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ModelError::InvalidParams(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let l_len = batch.input_ids.first().map_or(0, Vec::len);
        let text = self
            .embed_tokens
            .index_select(&Tensor::from_vec(flat_ids, b_len * l_len, &self.device)?, 0)?;
        let mut rows = Vec::with_capacity(b_len);
        for (s, pieces) in plan.pieces.iter().enumerate() {
            let mut parts = Vec::new();
            for piece in pieces {
                parts.push(match *piece {
                    Piece::Text { start, len } => text.narrow(0, s * l_len + start, len)?,
                    Piece::Image(k) => features[s][k].clone(),
                    Piece::Pad(len) => Tensor::zeros((len, hidden), DType::F32, &self.device)?,
                });
            }
            rows.push(Tensor::cat(&parts, 0)?);
        }
        let mut x = Tensor::stack(&rows, 0)?;
        let (cos, sin) = self.rotary(&plan.layout.position_ids)?;
        let mask = attention_bias(&plan.layout.attention_mask, &self.device)?;
        for layer in &self.layers {
            let h = ops::rms_norm(&x, &layer.input_norm, self.config.text.rms_norm_eps)?;
            x = (x + self.attention(layer, &h, &cos, &sin, &mask, rng)?)?;
            let h = ops::rms_norm(&x, &layer.post_norm, self.config.text.rms_norm_eps)?;
            let gated = (layer.gate.forward(&h, rng)?.silu()? * layer.up.forward(&h, rng)?)?;
            x = (x + layer.down.forward(&gated, rng)?)?;
        }
        let x = ops::rms_norm(&x, &self.norm, self.config.text.rms_norm_eps)?;
        // rows whose next label carries loss (shift by one)
        let mut rows_idx = Vec::new();
        let mut targets = Vec::new();
        for (s, labels) in plan.layout.labels.iter().enumerate() {
            for t in 0..t_len.saturating_sub(1) {
                let next = labels[t + 1];
                if next != IGNORE_INDEX {
                    if next < 0 || next as usize >= vocab {
                        return Err(ModelError::InvalidParams(format!(
                            "label {next} of sample {s} is outside the vocabulary of {vocab}"
                        )));
                    }
                    rows_idx.push((s * t_len + t) as u32);
                    targets.push(next as u32);
                }
            }
        }
        if rows_idx.is_empty() {
            return Err(ModelError::InvalidParams(
                "the batch has no labelled token (every label is -100)".into(),
            ));
        }
        let n = rows_idx.len();
        let picked = x
            .reshape((b_len * t_len, hidden))?
            .index_select(&Tensor::from_vec(rows_idx, n, &self.device)?, 0)?;
        let logits = self.lm_head.forward(&picked, rng)?;
        let log_probs = ops::log_softmax(&logits)?;
        let target_t = Tensor::from_vec(targets.clone(), (n, 1), &self.device)?;
        let picked_lp = log_probs.gather(&target_t, 1)?;
        let loss = (picked_lp.sum_all()? * (-1.0 / n as f64))?;
        let predictions = logits.detach().argmax(D::Minus1)?.to_vec1::<u32>()?;
        Ok(LossOutput {
            loss,
            n_tokens: n,
            predictions,
            targets,
        })
    }

    /// cos/sin `[B, 1, T, d/2]` for per-sample positions, in f32 as transformers computes them.
    fn rotary(&self, positions: &[Vec<i64>]) -> Result<(Tensor, Tensor)> {
        let cfg = &self.config.text;
        let hd = cfg.head_dim();
        let half = hd / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (cfg.rope_theta as f32).powf((2 * i) as f32 / hd as f32))
            .collect();
        let b_len = positions.len();
        let t_len = positions.first().map_or(0, Vec::len);
        let mut angles = Vec::with_capacity(b_len * t_len * half);
        for row in positions {
            for &p in row {
                angles.extend(inv_freq.iter().map(|f| f * p as f32));
            }
        }
        let angles = Tensor::from_vec(angles, (b_len, 1, t_len, half), &self.device)?;
        Ok((angles.cos()?, angles.sin()?))
    }

    fn attention(
        &self,
        layer: &DecoderLayer,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        rng: &mut dyn RandomSource,
    ) -> Result<Tensor> {
        let cfg = &self.config.text;
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (cfg.num_attention_heads, cfg.kv_heads(), cfg.head_dim());
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = ops::rope(&split(layer.q.forward(x, rng)?, h)?, cos, sin)?;
        let k = ops::rope(&split(layer.k.forward(x, rng)?, kvh)?, cos, sin)?;
        let v = split(layer.v.forward(x, rng)?, kvh)?;
        // grouped-query attention: each key/value head serves h / kvh query heads
        let repeat = |y: Tensor| -> Result<Tensor> {
            if h == kvh {
                return Ok(y);
            }
            Ok(y.unsqueeze(2)?
                .broadcast_as((b, kvh, h / kvh, t, hd))?
                .reshape((b, h, t, hd))?)
        };
        let (k, v) = (repeat(k)?, repeat(v)?);
        let out = ops::attention(&q, &k, &v, mask, 1.0 / (hd as f64).sqrt())?
            .transpose(1, 2)?
            .reshape((b, t, h * hd))?;
        layer.o.forward(&out, rng)
    }
}

/// `[B, 1, T, T]`: 0 where query `i` may see key `j` (causal and not padding), the most negative
/// f32 elsewhere (as transformers' 4-D mask; rows that see nothing become uniform, not NaN).
fn attention_bias(mask: &[Vec<u8>], device: &Device) -> Result<Tensor> {
    let b = mask.len();
    let t = mask.first().map_or(0, Vec::len);
    let mut bias = vec![0f32; b * t * t];
    for (s, row) in mask.iter().enumerate() {
        for i in 0..t {
            for j in 0..t {
                if j > i || row[j] == 0 {
                    bias[(s * t + i) * t + j] = f32::MIN;
                }
            }
        }
    }
    Ok(Tensor::from_vec(bias, (b, 1, t, t), device)?)
}

enum Piece {
    Text { start: usize, len: usize },
    Image(usize),
    Pad(usize),
}

struct MergePlan {
    pieces: Vec<Vec<Piece>>,
    layout: MergedLayout,
}

/// Where every merged row comes from, following Magma's `_merge_input_ids_with_image_features`:
/// each `<image>` id becomes its image's feature rows (label −100), text rows keep their labels,
/// padding rows are zero with label −100; left padding if some mask row starts with 0, right if
/// some row ends with 0, and otherwise the model's default `padding_side` "left" (which
/// `train.py` never changes).
fn merge_plan(
    batch: &TrainBatch,
    feature_lens: &[Vec<usize>],
    image_token: u32,
) -> Result<MergePlan> {
    let b = batch.len();
    if batch.labels.len() != b || batch.attention_mask.len() != b || feature_lens.len() != b {
        return Err(ModelError::InvalidParams(
            "input_ids, labels, attention_mask and images disagree on the batch size".into(),
        ));
    }
    let l = batch.input_ids.first().map_or(0, Vec::len);
    for s in 0..b {
        if batch.input_ids[s].len() != l
            || batch.labels[s].len() != l
            || batch.attention_mask[s].len() != l
        {
            return Err(ModelError::InvalidParams(format!(
                "sample {s}: input_ids, labels and attention_mask must all have length {l}"
            )));
        }
    }
    let right = batch.attention_mask.iter().any(|m| m.last() == Some(&0));
    let left = batch.attention_mask.iter().any(|m| m.first() == Some(&0));
    let left_padded = left || !right;
    let mut merged: Vec<(Vec<Piece>, Vec<i64>)> = Vec::with_capacity(b);
    for s in 0..b {
        let ids = &batch.input_ids[s];
        let mask = &batch.attention_mask[s];
        let images = ids
            .iter()
            .zip(mask)
            .filter(|(&id, &m)| m != 0 && id == image_token)
            .count();
        if images != feature_lens[s].len() {
            return Err(ModelError::ImageCountMismatch {
                tokens: images,
                images: feature_lens[s].len(),
            });
        }
        let mut pieces = Vec::new();
        let mut labels = Vec::new();
        let mut k = 0;
        let mut run: Option<usize> = None;
        for (i, (&id, &m)) in ids.iter().zip(mask).enumerate() {
            let is_text = m != 0 && id != image_token;
            match (is_text, run) {
                (true, None) => run = Some(i),
                (false, Some(start)) => {
                    pieces.push(Piece::Text {
                        start,
                        len: i - start,
                    });
                    run = None;
                }
                _ => {}
            }
            if m == 0 {
                continue;
            }
            if id == image_token {
                pieces.push(Piece::Image(k));
                labels.extend(std::iter::repeat_n(IGNORE_INDEX, feature_lens[s][k]));
                k += 1;
            } else {
                labels.push(batch.labels[s][i]);
            }
        }
        if let Some(start) = run {
            pieces.push(Piece::Text {
                start,
                len: ids.len() - start,
            });
        }
        merged.push((pieces, labels));
    }
    let t = merged.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
    let mut layout = MergedLayout {
        labels: Vec::with_capacity(b),
        attention_mask: Vec::with_capacity(b),
        position_ids: Vec::with_capacity(b),
        left_padded,
    };
    let mut all_pieces = Vec::with_capacity(b);
    for (mut pieces, labels) in merged {
        let real = labels.len();
        let pad = t - real;
        let mut mask = vec![1u8; real];
        let mut full_labels = labels;
        if pad > 0 {
            let pad_labels = vec![IGNORE_INDEX; pad];
            if left_padded {
                pieces.insert(0, Piece::Pad(pad));
                full_labels.splice(0..0, pad_labels);
                mask.splice(0..0, vec![0u8; pad]);
            } else {
                pieces.push(Piece::Pad(pad));
                full_labels.extend(pad_labels);
                mask.extend(vec![0u8; pad]);
            }
        }
        let mut count = 0i64;
        let positions = mask
            .iter()
            .map(|&m| {
                count += m as i64;
                if m == 0 {
                    1
                } else {
                    count - 1
                }
            })
            .collect();
        layout.labels.push(full_labels);
        layout.attention_mask.push(mask);
        layout.position_ids.push(positions);
        all_pieces.push(pieces);
    }
    Ok(MergePlan {
        pieces: all_pieces,
        layout,
    })
}
