//! Step-level batching: one decode token for many independent sequences at once.
//!
//! Each sequence keeps its own [`Cache`] (its own length and positions); the projections, the MLP
//! and the LM head run once over all rows, and only attention, which reads each sequence's own
//! keys and values, runs per sequence. A server interleaves requests this way: every engine step
//! advances every active sequence by one token.
//!
//! ```no_run
//! use magma_model::batch::decode_step;
//! # fn demo(model: &magma_model::MagmaModel, a: &mut magma_model::Cache, b: &mut magma_model::Cache)
//! #     -> magma_model::Result<()> {
//! // `a` and `b` hold two prefilled prompts; feed each its last sampled token.
//! let logits = decode_step(model, &[17, 42], &mut [a, b])?; // [2, vocab], f32
//! assert_eq!(logits.dim(0)?, 2);
//! # Ok(()) }
//! ```

use crate::error::{ModelError, Result};
use crate::llama::{rotary_tables, Attention, Cache};
use crate::model::MagmaModel;
use candle_core::{DType, Tensor};
use candle_nn::kv_cache::KvCache;

/// Runs token `tokens[i]` at position `caches[i].len()` for every sequence `i`, appends its keys
/// and values to `caches[i]`, and returns the f32 next-token logits `[n, vocab]`.
///
/// The numbers are those of [`MagmaModel::forward`] on each sequence alone (same operations per
/// row), so greedy decoding picks the same tokens batched or not.
pub fn decode_step(
    model: &MagmaModel,
    tokens: &[u32],
    caches: &mut [&mut Cache],
) -> Result<Tensor> {
    if tokens.len() != caches.len() {
        return Err(ModelError::InvalidParams(format!(
            "decode_step got {} tokens for {} caches",
            tokens.len(),
            caches.len()
        )));
    }
    if tokens.is_empty() {
        return Err(ModelError::InvalidParams(
            "decode_step needs at least one sequence".into(),
        ));
    }
    let decoder = &model.decoder;
    let config = decoder.config();
    let max = config.max_position_embeddings;
    if let Some(full) = caches.iter().find(|c| c.len() + 1 > max) {
        return Err(ModelError::PromptTooLong {
            len: full.len() + 1,
            max,
        });
    }
    let dtype = model.dtype();
    let device = model.device();
    let rotary = caches
        .iter()
        .map(|c| {
            rotary_tables(
                config.rope_theta,
                config.head_dim(),
                c.len(),
                1,
                dtype,
                device,
            )
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut x = decoder.embed(tokens)?.unsqueeze(1)?; // [n, 1, hidden]
    for (l, layer) in decoder.layers.iter().enumerate() {
        let h = layer.input_norm.forward(&x)?;
        let h = attention_step(&layer.attention, &h, &rotary, caches, l)?;
        x = (x + h)?;
        let h = layer.mlp.forward(&layer.post_attention_norm.forward(&x)?)?;
        x = (x + h)?;
    }
    for cache in caches.iter_mut() {
        cache.len += 1;
    }
    let x = decoder.norm.forward(&x)?;
    Ok(decoder
        .lm_head
        .forward(&x)?
        .to_dtype(DType::F32)?
        .squeeze(1)?)
}

/// Batched q/k/v/o projections around per-sequence attention over each sequence's own cache.
fn attention_step(
    attention: &Attention,
    x: &Tensor,
    rotary: &[(Tensor, Tensor)],
    caches: &mut [&mut Cache],
    layer: usize,
) -> Result<Tensor> {
    let (hd, heads, kv_heads) = (attention.head_dim, attention.heads, attention.kv_heads);
    let q = attention.q.forward(x)?;
    let k = attention.k.forward(x)?;
    let v = attention.v.forward(x)?;
    let split = |t: &Tensor, i: usize, heads: usize| {
        t.narrow(0, i, 1)?
            .reshape((1, 1, heads, hd))?
            .transpose(1, 2)?
            .contiguous()
    };
    let rep = heads / kv_heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut outputs = Vec::with_capacity(caches.len());
    for (i, (cache, (cos, sin))) in caches.iter_mut().zip(rotary).enumerate() {
        let kv: &mut KvCache = cache
            .layers
            .get_mut(layer)
            .ok_or_else(|| ModelError::InvalidParams(format!("cache {i} has no layer {layer}")))?;
        let qi = candle_nn::rotary_emb::rope(&split(&q, i, heads)?, cos, sin)?;
        let ki = candle_nn::rotary_emb::rope(&split(&k, i, kv_heads)?, cos, sin)?;
        let vi = split(&v, i, kv_heads)?;
        let (keys, values) = kv.append(&ki, &vi)?;
        // the same grouped-query folding as the single-sequence path
        let qi = qi.reshape((1, kv_heads, rep, hd))?;
        let scores = (qi.matmul(&keys.t()?)? * scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&values)?
            .reshape((1, heads, 1, hd))?
            .transpose(1, 2)?
            .reshape((1, 1, heads * hd))?;
        outputs.push(out);
    }
    let out = Tensor::cat(&outputs, 0)?;
    Ok(attention.o.forward(&out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::Sampler;
    use crate::GenerationParams;
    use candle_core::Device;

    fn tiny() -> MagmaModel {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/magma-parity/models/magma-tiny-crop");
        MagmaModel::load(&dir, DType::F32, &Device::Cpu).expect("fixture model loads")
    }

    /// Greedy tokens of one prompt decoded alone through `MagmaModel::forward`.
    fn greedy_alone(model: &MagmaModel, prompt: &[u32], steps: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
        let mut cache = model.new_cache();
        let mut sampler = Sampler::new(&GenerationParams::default());
        let embeds = model.embed_tokens(prompt).unwrap();
        let mut logits = model.forward(&embeds, &mut cache, true).unwrap();
        let (mut ids, mut rows) = (Vec::new(), Vec::new());
        for _ in 0..steps {
            let row = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let next = sampler.sample(&row, &[]);
            ids.push(next);
            rows.push(row);
            logits = model
                .forward(&model.embed_tokens(&[next]).unwrap(), &mut cache, true)
                .unwrap();
        }
        (ids, rows)
    }

    #[test]
    fn batched_decoding_matches_single_sequence_decoding() {
        let model = tiny();
        // prompts of different lengths, so positions and cache lengths differ per row
        let prompts: [&[u32]; 3] = [
            &[1000, 1000, 17, 230],
            &[1000, 5, 6, 7, 8, 9, 10, 11],
            &[1000, 900],
        ];
        let steps = 12;
        let alone: Vec<_> = prompts
            .iter()
            .map(|p| greedy_alone(&model, p, steps))
            .collect();

        let mut caches: Vec<Cache> = prompts.iter().map(|_| model.new_cache()).collect();
        let mut sampler = Sampler::new(&GenerationParams::default());
        let mut last: Vec<u32> = Vec::new();
        for (p, cache) in prompts.iter().zip(caches.iter_mut()) {
            let logits = model
                .forward(&model.embed_tokens(p).unwrap(), cache, true)
                .unwrap();
            last.push(sampler.sample(
                &logits.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                &[],
            ));
        }
        let mut batched: Vec<Vec<u32>> = last.iter().map(|&t| vec![t]).collect();
        for step in 1..steps {
            let mut refs: Vec<&mut Cache> = caches.iter_mut().collect();
            let logits = decode_step(&model, &last, &mut refs)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (i, row) in logits.iter().enumerate() {
                let expected = &alone[i].1[step];
                let worst = row
                    .iter()
                    .zip(expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-4,
                    "sequence {i} step {step}: logits differ by {worst}"
                );
                last[i] = sampler.sample(row, &[]);
                batched[i].push(last[i]);
            }
        }
        for (i, (ids, _)) in alone.iter().enumerate() {
            assert_eq!(&batched[i], ids, "sequence {i}: greedy tokens");
        }
        assert_eq!(caches[1].len(), prompts[1].len() + steps - 1);
    }

    #[test]
    fn mismatched_lengths_are_rejected() {
        let model = tiny();
        let mut cache = model.new_cache();
        assert!(decode_step(&model, &[1, 2], &mut [&mut cache]).is_err());
        assert!(decode_step(&model, &[], &mut []).is_err());
    }
}
