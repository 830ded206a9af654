//! LLaMA decoder: RMSNorm, rotary embeddings (rotate-half), grouped-query attention, SwiGLU MLP.

use crate::config::TextConfig;
use crate::embedding::Embedding;
use crate::error::{ModelError, Result};
use crate::kernels::attention::causal_attention;
use crate::linear::Linear;
use crate::weights::Weights;
use candle_core::{DType, Device, Tensor};
use candle_nn::kv_cache::KvCache;

const PREFIX: &str = "language_model";
/// Initial KV-cache capacity (positions); the cache grows by this much when full.
const KV_CACHE_CHUNK: usize = 512;

/// Per-layer keys and values of everything decoded so far.
///
/// ```no_run
/// # fn demo(model: &magma_model::MagmaModel) {
/// let mut cache = model.new_cache();
/// assert_eq!(cache.len(), 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Cache {
    pub(crate) layers: Vec<KvCache>,
    pub(crate) len: usize,
}

impl Cache {
    pub(crate) fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers)
                .map(|_| KvCache::new(2, KV_CACHE_CHUNK))
                .collect(),
            len: 0,
        }
    }

    /// Number of cached positions; the next token gets this position id.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward pass.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(weights: &Weights, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: weights.get(name, &[dim])?,
            eps: eps as f32,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}

/// cos/sin tables `[len, head_dim/2]` for positions `start..start+len` (computed in f32 like HF).
pub(crate) fn rotary_tables(
    theta: f64,
    head_dim: usize,
    start: usize,
    len: usize,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
        .collect();
    let mut angles = Vec::with_capacity(len * half);
    for pos in start..start + len {
        angles.extend(inv_freq.iter().map(|f| pos as f32 * f));
    }
    let angles = Tensor::from_vec(angles, (len, half), device)?;
    Ok((
        angles.cos()?.to_dtype(dtype)?,
        angles.sin()?.to_dtype(dtype)?,
    ))
}

#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) o: Linear,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl Attention {
    fn load(weights: &Weights, prefix: &str, cfg: &TextConfig) -> Result<Self> {
        let (h, kvh, hd, d) = (
            cfg.num_attention_heads,
            cfg.kv_heads(),
            cfg.head_dim(),
            cfg.hidden_size,
        );
        let bias = cfg.attention_bias;
        Ok(Self {
            q: Linear::load(weights, &format!("{prefix}.q_proj"), d, h * hd, bias)?,
            k: Linear::load(weights, &format!("{prefix}.k_proj"), d, kvh * hd, bias)?,
            v: Linear::load(weights, &format!("{prefix}.v_proj"), d, kvh * hd, bias)?,
            o: Linear::load(weights, &format!("{prefix}.o_proj"), h * hd, d, bias)?,
            heads: h,
            kv_heads: kvh,
            head_dim: hd,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let (b, len, _) = x.dims3()?;
        let split = |t: Tensor, heads: usize| {
            t.reshape((b, len, heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.q.forward(x)?, self.heads)?;
        let k = split(self.k.forward(x)?, self.kv_heads)?;
        let v = split(self.v.forward(x)?, self.kv_heads)?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let (k, v) = cache.append(&k, &v)?;
        let start = k.dim(2)? - len;
        self.o.forward(&causal_attention(&q, &k, &v, start)?)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn load(weights: &Weights, prefix: &str, cfg: &TextConfig) -> Result<Self> {
        let (d, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate: Linear::load(weights, &format!("{prefix}.gate_proj"), d, i, bias)?,
            up: Linear::load(weights, &format!("{prefix}.up_proj"), d, i, bias)?,
            down: Linear::load(weights, &format!("{prefix}.down_proj"), i, d, bias)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gated = (candle_nn::ops::silu(&self.gate.forward(x)?)? * self.up.forward(x)?)?;
        self.down.forward(&gated)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) input_norm: RmsNorm,
    pub(crate) attention: Attention,
    pub(crate) post_attention_norm: RmsNorm,
    pub(crate) mlp: Mlp,
}

/// The language model: embeddings, decoder layers, final norm, untied LM head.
#[derive(Debug, Clone)]
pub struct LlamaDecoder {
    embed_tokens: Embedding,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: RmsNorm,
    pub(crate) lm_head: Linear,
    config: TextConfig,
}

impl LlamaDecoder {
    /// Loads `language_model.model.*` and `language_model.lm_head`.
    pub fn load(weights: &Weights, cfg: &TextConfig) -> Result<Self> {
        let m = format!("{PREFIX}.model");
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let embed_tokens = Embedding::load(
            weights,
            &format!("{m}.embed_tokens.weight"),
            &[cfg.vocab_size, d],
        )?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| {
                let p = format!("{m}.layers.{l}");
                Ok(Layer {
                    input_norm: RmsNorm::load(
                        weights,
                        &format!("{p}.input_layernorm.weight"),
                        d,
                        eps,
                    )?,
                    attention: Attention::load(weights, &format!("{p}.self_attn"), cfg)?,
                    post_attention_norm: RmsNorm::load(
                        weights,
                        &format!("{p}.post_attention_layernorm.weight"),
                        d,
                        eps,
                    )?,
                    mlp: Mlp::load(weights, &format!("{p}.mlp"), cfg)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::from_dense(embed_tokens.table()?, None)?
        } else {
            Linear::load(
                weights,
                &format!("{PREFIX}.lm_head"),
                d,
                cfg.vocab_size,
                false,
            )?
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm: RmsNorm::load(weights, &format!("{m}.norm.weight"), d, eps)?,
            lm_head,
            config: cfg.clone(),
        })
    }

    /// A fresh, empty KV cache.
    pub fn new_cache(&self) -> Cache {
        Cache::new(self.layers.len())
    }

    /// Token embeddings `[len, hidden]`; ids must be below the vocabulary size (the table was
    /// loaded as `[vocab_size, hidden]`, so its lookup checks exactly that).
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        self.embed_tokens.lookup(ids)
    }

    /// Runs `[1, len, hidden]` input embeddings at positions `cache.len()..`, appending to the cache.
    ///
    /// Returns f32 logits `[1, len, vocab]`, or `[1, 1, vocab]` for the last position only when
    /// `last_only` (what generation needs; saves the LM head on long prompts).
    pub fn forward(&self, embeds: &Tensor, cache: &mut Cache, last_only: bool) -> Result<Tensor> {
        let (_, len, _) = embeds.dims3()?;
        let start = cache.len;
        let max = self.config.max_position_embeddings;
        if start + len > max {
            return Err(ModelError::PromptTooLong {
                len: start + len,
                max,
            });
        }
        let dtype = embeds.dtype();
        let device = embeds.device();
        let (cos, sin) = rotary_tables(
            self.config.rope_theta,
            self.config.head_dim(),
            start,
            len,
            dtype,
            device,
        )?;
        let mut x = embeds.clone();
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h = layer
                .attention
                .forward(&layer.input_norm.forward(&x)?, &cos, &sin, kv)?;
            x = (x + h)?;
            let h = layer.mlp.forward(&layer.post_attention_norm.forward(&x)?)?;
            x = (x + h)?;
        }
        cache.len += len;
        if last_only {
            x = x.narrow(1, len - 1, 1)?;
        }
        let x = self.norm.forward(&x)?;
        Ok(self.lm_head.forward(&x)?.to_dtype(DType::F32)?)
    }

    /// The decoder's configuration.
    pub fn config(&self) -> &TextConfig {
        &self.config
    }
}
