//! Token-by-token decoding: sampling, stop conditions, streaming and timings.

use crate::error::{ModelError, Result};
use crate::model::MagmaModel;
use candle_core::Tensor;
use serde::Serialize;
use std::ops::ControlFlow;
use std::time::Instant;

/// How to pick and when to stop generating tokens.
///
/// ```
/// let params = magma_model::GenerationParams { temperature: 0.7, seed: 42, ..Default::default() };
/// assert_eq!(params.max_new_tokens, 128);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// 0 (or below) means greedy decoding.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens before sampling.
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability mass reaches `p`.
    pub top_p: Option<f64>,
    /// Seed of the sampling RNG (same seed, same output).
    pub seed: u64,
    /// HF-style repetition penalty over prompt and generated ids (1.0 = off).
    pub repetition_penalty: f64,
    /// Stop ids in addition to `generation_config.json`'s `eos_token_id`.
    pub stop_token_ids: Vec<u32>,
    /// Stop as soon as the text contains one of these (it is cut before the match).
    pub stop_strings: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
            repetition_penalty: 1.0,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
        }
    }
}

impl GenerationParams {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidParams(m));
        if !self.temperature.is_finite() {
            return bad(format!("temperature {} is not finite", self.temperature));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad(format!("top_p {p} must be in (0, 1]"));
            }
        }
        if self.top_k == Some(0) {
            return bad("top_k must be at least 1".into());
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty {} must be positive",
                self.repetition_penalty
            ));
        }
        Ok(())
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// A stop token or stop string was produced.
    Stop,
    /// `max_new_tokens` was reached.
    Length,
    /// The streaming callback asked to stop.
    Cancelled,
}

impl FinishReason {
    /// `"stop"`, `"length"` or `"cancelled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Wall-clock time of each phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    pub preprocess_ms: f64,
    pub vision_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Generated tokens after the first one, per second of decoding.
    pub decode_tokens_per_s: f64,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    pub timings: Timings,
}

/// SplitMix64: a tiny, portable, seeded generator, so a seed means the same tokens everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks the next token from a row of logits.
///
/// ```
/// use magma_model::{GenerationParams, generation::Sampler};
/// let mut greedy = Sampler::new(&GenerationParams::default());
/// assert_eq!(greedy.sample(&[0.1, 2.0, -1.0], &[]), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Sampler {
    rng: SplitMix64,
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
    repetition_penalty: f64,
}

impl Sampler {
    pub fn new(params: &GenerationParams) -> Self {
        Self {
            rng: SplitMix64::new(params.seed),
            temperature: params.temperature,
            top_k: params.top_k,
            top_p: params.top_p,
            repetition_penalty: params.repetition_penalty,
        }
    }

    /// The next token id; `history` (prompt + generated ids) feeds the repetition penalty.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        if self.repetition_penalty != 1.0 {
            let penalty = self.repetition_penalty as f32;
            for &id in history {
                if let Some(l) = logits.get_mut(id as usize) {
                    // HF semantics: shrink positive scores, push negative ones further down
                    *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
                }
            }
        }
        if self.temperature <= 0.0 {
            return argmax(&logits);
        }
        let mut candidates: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l as f64 / self.temperature))
            .filter(|(_, l)| l.is_finite())
            .collect();
        if candidates.is_empty() {
            return argmax(&logits);
        }
        // descending by score, ties by id, so the order (and thus the draw) is deterministic
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = self.top_k {
            candidates.truncate(k.max(1));
        }
        let max = candidates[0].1;
        let mut probs: Vec<f64> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(top_p) = self.top_p {
            let mut mass = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    mass += p;
                    mass >= top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            let kept: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= kept);
        }
        let mut draw = self.rng.next_f64();
        for (i, p) in probs.iter().enumerate() {
            if draw < *p {
                return candidates[i].0;
            }
            draw -= p;
        }
        candidates[probs.len() - 1].0
    }
}

/// Byte length of the longest common prefix of `a` and `b` that ends on a character boundary.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// What [`decode_loop`] returns besides the ids.
#[derive(Debug, Clone)]
pub struct DecodeOutcome {
    pub generated_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub decode_tokens_per_s: f64,
}

/// Prefills `embeds` (the merged prompt) and decodes until a stop condition.
///
/// `detokenize` turns generated ids into text (special tokens skipped); `on_token` receives each
/// token id with the new text it adds and may return `ControlFlow::Break(())` to cancel.
pub fn decode_loop(
    model: &MagmaModel,
    embeds: &Tensor,
    prompt_ids: &[u32],
    params: &GenerationParams,
    eos_ids: &[u32],
    detokenize: &mut dyn FnMut(&[u32]) -> Result<String>,
    on_token: &mut dyn FnMut(u32, &str) -> ControlFlow<()>,
) -> Result<DecodeOutcome> {
    params.validate()?;
    let mut sampler = Sampler::new(params);
    let mut cache = model.new_cache();
    let mut history = prompt_ids.to_vec();
    let mut generated = Vec::new();
    // text streamed so far, and the final text when a stop string cut it
    let mut text = String::new();
    let mut cut_text = None;
    let mut finish_reason = FinishReason::Length;

    let start = Instant::now();
    let mut logits = model.forward(embeds, &mut cache, true)?;
    let prefill_ms = start.elapsed().as_secs_f64() * 1e3;
    let decode_start = Instant::now();
    let stop_ids: Vec<u32> = eos_ids
        .iter()
        .chain(&params.stop_token_ids)
        .copied()
        .collect();
    for step in 0..params.max_new_tokens {
        let row = logits.flatten_all()?.to_vec1::<f32>()?;
        let next = sampler.sample(&row, &history);
        if stop_ids.contains(&next) {
            finish_reason = FinishReason::Stop;
            break;
        }
        generated.push(next);
        history.push(next);
        let full = detokenize(&generated)?;
        if let Some(cut) = params
            .stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| full.find(s.as_str()))
            .min()
        {
            let kept = &full[..cut];
            let _ = on_token(next, &kept[common_prefix_len(&text, kept)..]);
            cut_text = Some(kept.to_string());
            finish_reason = FinishReason::Stop;
            break;
        }
        // hold back a trailing U+FFFD: the next token may complete the UTF-8 character
        let stable = full.trim_end_matches('\u{FFFD}');
        let delta = &stable[common_prefix_len(&text, stable)..];
        let flow = on_token(next, delta);
        text = stable.to_string();
        if flow.is_break() {
            finish_reason = FinishReason::Cancelled;
            break;
        }
        if step + 1 < params.max_new_tokens {
            logits = model.forward(&model.embed_tokens(&[next])?, &mut cache, true)?;
        }
    }
    let text = match cut_text {
        Some(text) => text,
        None => detokenize(&generated)?,
    };
    let decode_ms = decode_start.elapsed().as_secs_f64() * 1e3;
    let decode_tokens_per_s = if generated.len() > 1 && decode_ms > 0.0 {
        (generated.len() - 1) as f64 / (decode_ms / 1e3)
    } else {
        0.0
    };
    Ok(DecodeOutcome {
        generated_ids: generated,
        text,
        finish_reason,
        prefill_ms,
        decode_ms,
        decode_tokens_per_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, seed: u64) -> GenerationParams {
        GenerationParams {
            temperature,
            seed,
            ..Default::default()
        }
    }

    const LOGITS: [f32; 5] = [1.0, 3.0, 2.5, -1.0, 0.0];

    #[test]
    fn temperature_zero_is_argmax() {
        assert_eq!(Sampler::new(&params(0.0, 1)).sample(&LOGITS, &[]), 1);
    }

    #[test]
    fn same_seed_same_draws_other_seed_other_draws() {
        let draw = |seed| {
            let mut s = Sampler::new(&params(1.5, seed));
            (0..64).map(|_| s.sample(&LOGITS, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_k_limits_choices() {
        let mut s = Sampler::new(&GenerationParams {
            temperature: 5.0,
            top_k: Some(1),
            ..Default::default()
        });
        assert!((0..50).all(|_| s.sample(&LOGITS, &[]) == 1));
        let mut s = Sampler::new(&GenerationParams {
            temperature: 5.0,
            top_k: Some(2),
            ..Default::default()
        });
        assert!((0..200).all(|_| matches!(s.sample(&LOGITS, &[]), 1 | 2)));
    }

    #[test]
    fn top_p_keeps_the_smallest_sufficient_set() {
        // softmax([10, 0, 0]) puts 0.9999 on token 0: top_p 0.5 keeps only it
        let mut s = Sampler::new(&GenerationParams {
            temperature: 1.0,
            top_p: Some(0.5),
            ..Default::default()
        });
        assert!((0..100).all(|_| s.sample(&[10.0, 0.0, 0.0], &[]) == 0));
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(&GenerationParams {
            repetition_penalty: 2.0,
            ..Default::default()
        });
        // token 1 (3.0 -> 1.5) falls below token 2 (2.5)
        assert_eq!(s.sample(&LOGITS, &[1]), 2);
    }

    #[test]
    fn invalid_params_are_rejected() {
        let p = GenerationParams {
            top_p: Some(1.5),
            ..Default::default()
        };
        assert!(p.validate().is_err());
    }
}
