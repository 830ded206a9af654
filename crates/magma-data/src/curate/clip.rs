//! CLIP for the curation filter (feature `clip`): the vision and text towers of a Hugging Face
//! `CLIPModel` folder (`config.json` + `model.safetensors`, any float dtype, computed in f32),
//! with the `clip` package's preprocessing ([`super::clip_preprocess`]) and tokenizer
//! ([`super::clip_tokenizer`]). The score of a frame and a caption is the cosine of the two
//! L2-normalised embeddings, no logit scale, as Magma's filter computes it; the threshold
//! (0.25) is applied by a later stage so it can change without recomputing.
//!
//! ```no_run
//! use magma_data::curate::clip::ClipScorer;
//! let scorer = ClipScorer::load("clip-vit-large-patch14-336".as_ref())?;
//! let frame = image::open("frame.jpg").unwrap();
//! let scores = scorer.cosine(&[frame], &["a person chopping onions"])?;
//! println!("{}", scores[0][0]);
//! # Ok::<(), magma_data::DataError>(())
//! ```

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{layer_norm, linear, linear_no_bias, Conv2dConfig, LayerNorm, Linear, VarBuilder};
use image::DynamicImage;
use serde::Deserialize;

use super::clip_preprocess::preprocess;
use super::clip_tokenizer::ClipTokenizer;
use crate::error::{DataError, Result};

fn model_error(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::invalid(path.display().to_string(), e.to_string())
}

/// One tower's settings; absent keys take `transformers`' `CLIPTextConfig` /
/// `CLIPVisionConfig` defaults (`save_pretrained` only writes values that differ).
#[derive(Debug, Clone, Deserialize)]
pub struct TowerConfig {
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub layer_norm_eps: Option<f64>,
    pub hidden_act: Option<String>,
    // Vision only.
    pub image_size: Option<usize>,
    pub patch_size: Option<usize>,
    // Text only.
    pub max_position_embeddings: Option<usize>,
    pub vocab_size: Option<usize>,
}

/// `config.json` of a `CLIPModel`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    pub projection_dim: Option<usize>,
    pub text_config: TowerConfig,
    pub vision_config: TowerConfig,
}

/// A tower's resolved sizes.
#[derive(Debug, Clone, Copy)]
struct Dims {
    hidden: usize,
    intermediate: usize,
    heads: usize,
    layers: usize,
    eps: f64,
    quick_gelu: bool,
}

impl TowerConfig {
    fn dims(&self, defaults: (usize, usize, usize, usize)) -> std::result::Result<Dims, String> {
        let act = self.hidden_act.as_deref().unwrap_or("quick_gelu");
        let quick_gelu = match act {
            "quick_gelu" => true,
            "gelu" => false,
            other => return Err(format!("hidden_act {other:?} is not supported")),
        };
        let d = Dims {
            hidden: self.hidden_size.unwrap_or(defaults.0),
            intermediate: self.intermediate_size.unwrap_or(defaults.1),
            heads: self.num_attention_heads.unwrap_or(defaults.2),
            layers: self.num_hidden_layers.unwrap_or(defaults.3),
            eps: self.layer_norm_eps.unwrap_or(1e-5),
            quick_gelu,
        };
        if d.heads == 0 || !d.hidden.is_multiple_of(d.heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                d.hidden, d.heads
            ));
        }
        Ok(d)
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    fn forward(&self, x: &Tensor, causal: bool) -> candle_core::Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let hd = c / self.heads;
        let split = |t: Tensor| {
            t.reshape((b, n, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = (split(self.q.forward(x)?)? * (hd as f64).powf(-0.5))?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let mut att = q.matmul(&k.t()?)?;
        if causal {
            let mask: Vec<f32> = (0..n)
                .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            let mask = Tensor::from_vec(mask, (n, n), x.device())?;
            att = att.broadcast_add(&mask)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        self.out.forward(&y)
    }
}

struct Layer {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    quick_gelu: bool,
}

impl Layer {
    fn load(vb: VarBuilder, d: Dims) -> candle_core::Result<Self> {
        let a = vb.pp("self_attn");
        Ok(Self {
            ln1: layer_norm(d.hidden, d.eps, vb.pp("layer_norm1"))?,
            attn: Attention {
                q: linear(d.hidden, d.hidden, a.pp("q_proj"))?,
                k: linear(d.hidden, d.hidden, a.pp("k_proj"))?,
                v: linear(d.hidden, d.hidden, a.pp("v_proj"))?,
                out: linear(d.hidden, d.hidden, a.pp("out_proj"))?,
                heads: d.heads,
            },
            ln2: layer_norm(d.hidden, d.eps, vb.pp("layer_norm2"))?,
            fc1: linear(d.hidden, d.intermediate, vb.pp("mlp").pp("fc1"))?,
            fc2: linear(d.intermediate, d.hidden, vb.pp("mlp").pp("fc2"))?,
            quick_gelu: d.quick_gelu,
        })
    }

    fn forward(&self, x: &Tensor, causal: bool) -> candle_core::Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln1.forward(x)?, causal)?)?;
        let h = self.fc1.forward(&self.ln2.forward(&x)?)?;
        let h = if self.quick_gelu {
            (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?
        } else {
            h.gelu_erf()?
        };
        x + self.fc2.forward(&h)?
    }
}

fn load_layers(vb: VarBuilder, d: Dims) -> candle_core::Result<Vec<Layer>> {
    (0..d.layers)
        .map(|i| Layer::load(vb.pp("encoder").pp("layers").pp(i), d))
        .collect()
}

/// CLIP's two towers and projections.
pub struct ClipModel {
    patch: candle_nn::Conv2d,
    class_embedding: Tensor,
    vision_positions: Tensor,
    pre_norm: LayerNorm,
    vision_layers: Vec<Layer>,
    post_norm: LayerNorm,
    visual_projection: Linear,
    token_embedding: candle_nn::Embedding,
    text_positions: Tensor,
    text_layers: Vec<Layer>,
    final_norm: LayerNorm,
    text_projection: Linear,
    /// Input resolution of the vision tower.
    pub image_size: usize,
    device: Device,
}

impl ClipModel {
    /// Loads `config.json` and `model.safetensors` from a Hugging Face `CLIPModel` folder.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| DataError::io(&config_path, e))?;
        let config: ClipConfig =
            serde_json::from_str(&text).map_err(|e| model_error(&config_path, e))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(model_error(
                &weights,
                "missing (a CLIPModel folder holds config.json and model.safetensors)",
            ));
        }
        // SAFETY: the file is memory-mapped read-only; it must not change while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(|e| model_error(&weights, e))?;
        Self::from_varbuilder(vb, &config, device).map_err(|e| model_error(&weights, e))
    }

    fn from_varbuilder(
        vb: VarBuilder,
        config: &ClipConfig,
        device: &Device,
    ) -> std::result::Result<Self, String> {
        let e = |e: candle_core::Error| e.to_string();
        let vc = &config.vision_config;
        let tc = &config.text_config;
        let vd = vc.dims((768, 3072, 12, 12))?;
        let td = tc.dims((512, 2048, 8, 12))?;
        let projection = config.projection_dim.unwrap_or(512);
        let image_size = vc.image_size.unwrap_or(224);
        let patch_size = vc.patch_size.unwrap_or(32);
        let patches = (image_size / patch_size).pow(2);
        let v = vb.pp("vision_model");
        let t = vb.pp("text_model");
        let conv = Conv2dConfig {
            stride: patch_size,
            ..Default::default()
        };
        Ok(Self {
            patch: candle_nn::conv2d_no_bias(
                3,
                vd.hidden,
                patch_size,
                conv,
                v.pp("embeddings").pp("patch_embedding"),
            )
            .map_err(e)?,
            class_embedding: v
                .pp("embeddings")
                .get(vd.hidden, "class_embedding")
                .map_err(e)?,
            vision_positions: v
                .pp("embeddings")
                .pp("position_embedding")
                .get((patches + 1, vd.hidden), "weight")
                .map_err(e)?,
            pre_norm: layer_norm(vd.hidden, vd.eps, v.pp("pre_layrnorm")).map_err(e)?,
            vision_layers: load_layers(v.clone(), vd).map_err(e)?,
            post_norm: layer_norm(vd.hidden, vd.eps, v.pp("post_layernorm")).map_err(e)?,
            visual_projection: linear_no_bias(vd.hidden, projection, vb.pp("visual_projection"))
                .map_err(e)?,
            token_embedding: candle_nn::embedding(
                tc.vocab_size.unwrap_or(49408),
                td.hidden,
                t.pp("embeddings").pp("token_embedding"),
            )
            .map_err(e)?,
            text_positions: t
                .pp("embeddings")
                .pp("position_embedding")
                .get(
                    (tc.max_position_embeddings.unwrap_or(77), td.hidden),
                    "weight",
                )
                .map_err(e)?,
            text_layers: load_layers(t.clone(), td).map_err(e)?,
            final_norm: layer_norm(td.hidden, td.eps, t.pp("final_layer_norm")).map_err(e)?,
            text_projection: linear_no_bias(td.hidden, projection, vb.pp("text_projection"))
                .map_err(e)?,
            image_size,
            device: device.clone(),
        })
    }

    /// Image embeddings (`encode_image`) of preprocessed `3 × n × n` images, one row each.
    pub fn encode_images(&self, pixels: &[Vec<f32>]) -> candle_core::Result<Tensor> {
        let n = self.image_size;
        let flat: Vec<f32> = pixels.iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, (pixels.len(), 3, n, n), &self.device)?;
        let x = self.patch.forward(&x)?; // b, hidden, gh, gw
        let (b, c, _, _) = x.dims4()?;
        let x = x.flatten_from(2)?.transpose(1, 2)?; // b, patches, hidden
        let cls = self
            .class_embedding
            .reshape((1, 1, c))?
            .broadcast_as((b, 1, c))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.vision_positions)?;
        let mut x = self.pre_norm.forward(&x)?;
        for layer in &self.vision_layers {
            x = layer.forward(&x, false)?;
        }
        let pooled = self.post_norm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?;
        self.visual_projection.forward(&pooled)
    }

    /// Text embedding (`encode_text`) of one token sequence (start … end, no padding: the
    /// causal mask makes padding irrelevant to the pooled end token).
    pub fn encode_tokens(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let n = ids.len();
        let ids_t = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let x = self.token_embedding.forward(&ids_t)?;
        let x = x.broadcast_add(&self.text_positions.narrow(0, 0, n)?)?;
        let mut x = x;
        for layer in &self.text_layers {
            x = layer.forward(&x, true)?;
        }
        let x = self.final_norm.forward(&x)?;
        // The pooled token is the highest id, the end token (OpenAI's `argmax`).
        let eot = ids
            .iter()
            .enumerate()
            .max_by_key(|&(i, &t)| (t, std::cmp::Reverse(i)))
            .map_or(0, |(i, _)| i);
        self.text_projection
            .forward(&x.narrow(1, eot, 1)?.squeeze(1)?)
    }
}

/// Model + tokenizer: images and captions in, embeddings and cosine scores out.
pub struct ClipScorer {
    pub model: ClipModel,
    pub tokenizer: ClipTokenizer,
}

impl ClipScorer {
    /// Loads a Hugging Face CLIP folder (`config.json`, `model.safetensors`, `merges.txt`) on
    /// the CPU.
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Self {
            model: ClipModel::load(dir, &Device::Cpu)?,
            tokenizer: ClipTokenizer::from_folder(dir)?,
        })
    }

    /// Image embeddings, one row per image.
    pub fn image_embeddings(&self, images: &[DynamicImage]) -> Result<Vec<Vec<f32>>> {
        let pixels: Vec<Vec<f32>> = images
            .iter()
            .map(|img| preprocess(img, self.model.image_size))
            .collect();
        let emb = self
            .model
            .encode_images(&pixels)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(|e| DataError::invalid("clip image tower", e.to_string()))?;
        Ok(emb)
    }

    /// Text embeddings (tokenized with truncation to 77, as the filter does).
    pub fn text_embeddings(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        texts
            .iter()
            .map(|t| {
                let ids = self.tokenizer.tokenize(t, true)?;
                self.model
                    .encode_tokens(&ids)
                    .and_then(|e| e.squeeze(0)?.to_vec1::<f32>())
                    .map_err(|e| DataError::invalid("clip text tower", e.to_string()))
            })
            .collect()
    }

    /// Cosine of L2-normalised embeddings: one row per image, one column per text.
    pub fn cosine(&self, images: &[DynamicImage], texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let img = self.image_embeddings(images)?;
        let txt = self.text_embeddings(texts)?;
        Ok(cosine_matrix(&img, &txt))
    }
}

/// Cosines between every row of `a` and every row of `b`.
pub fn cosine_matrix(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let unit = |v: &Vec<f32>| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let (a, b): (Vec<_>, Vec<_>) = (a.iter().map(unit).collect(), b.iter().map(unit).collect());
    a.iter()
        .map(|x| {
            b.iter()
                .map(|y| x.iter().zip(y).map(|(p, q)| p * q).sum())
                .collect()
        })
        .collect()
}

/// Magma's frame choice for one window of `n` frames starting at `start`: `min(4, n)` frames
/// at `linspace(start, start + n − 1, k)` truncated to integers, padded to 4 by repeating the
/// last.
///
/// ```
/// use magma_data::curate::clip::score_frames;
/// assert_eq!(score_frames(10, 16), vec![10, 15, 20, 25]);
/// assert_eq!(score_frames(0, 2), vec![0, 1, 1, 1]);
/// ```
pub fn score_frames(start: usize, n: usize) -> Vec<usize> {
    let k = n.clamp(1, 4);
    let end = (start + n.max(1) - 1) as f64;
    // numpy.linspace: `i * step + start`, the last sample set to `stop` exactly.
    let step = if k > 1 {
        (end - start as f64) / (k - 1) as f64
    } else {
        0.0
    };
    let mut frames: Vec<usize> = (0..k)
        .map(|i| {
            if i + 1 == k && k > 1 {
                end as usize
            } else {
                (i as f64 * step + start as f64) as usize
            }
        })
        .collect();
    while frames.len() < 4 {
        frames.push(*frames.last().expect("at least one frame"));
    }
    frames
}
