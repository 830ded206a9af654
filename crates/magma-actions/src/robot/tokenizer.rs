//! The OpenVLA/Magma 256-bin action tokenizer.
//!
//! Each normalised action dimension in `[-1, 1]` is mapped to one of the 256 *last* ids of the
//! base text vocabulary (for Magma's LLaMA-3 vocabulary, `tokenizer_vocab_size` = 128000 in
//! `config.json`, that is ids 127744..=127999). Larger values get smaller ids.

use std::ops::RangeInclusive;

use crate::{ActionError, Result};

/// Number of bin edges (`np.linspace(-1, 1, 256)`); there are `N_BINS - 1` bin centres.
pub const N_BINS: usize = 256;

/// Number of action dimensions Magma predicts: `[dx, dy, dz, droll, dpitch, dyaw, gripper]`.
pub const ACTION_DIM: usize = 7;

/// Maps normalised action values to token ids and back.
///
/// ```
/// use magma_actions::robot::ActionTokenizer;
///
/// let tok = ActionTokenizer::new(128_000)?;
/// assert_eq!(tok.token_range(), 127_744..=127_999);
/// assert_eq!(tok.encode(&[0.0])?, vec![127_872]);
/// assert!((tok.decode(&[127_744])[0] - 0.99608).abs() < 1e-5);
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ActionTokenizer {
    vocab_size: u32,
    edges: Vec<f64>,
    centers: Vec<f64>,
}

impl ActionTokenizer {
    /// Builds the tokenizer for a base vocabulary of `base_vocab_size` ids (the text vocabulary
    /// without added tokens: `tokenizer_vocab_size` in Magma's `config.json`).
    pub fn new(base_vocab_size: u32) -> Result<Self> {
        if (base_vocab_size as usize) < N_BINS {
            return Err(ActionError::VocabTooSmall(base_vocab_size));
        }
        let edges = linspace_like_numpy(-1.0, 1.0, N_BINS);
        let centers = edges.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
        Ok(Self {
            vocab_size: base_vocab_size,
            edges,
            centers,
        })
    }

    /// The base vocabulary size the ids are counted down from.
    pub fn base_vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// The ids an encoder can emit: `vocab - 256 ..= vocab - 1`.
    pub fn token_range(&self) -> RangeInclusive<u32> {
        (self.vocab_size - N_BINS as u32)..=(self.vocab_size - 1)
    }

    /// Whether `id` is one of the 256 action ids.
    pub fn is_action_token(&self, id: u32) -> bool {
        self.token_range().contains(&id)
    }

    /// The 256 bin edges, bit-identical to `np.linspace(-1, 1, 256)`.
    pub fn bin_edges(&self) -> &[f64] {
        &self.edges
    }

    /// The 255 bin centres `(edges[k] + edges[k + 1]) / 2`.
    pub fn bin_centers(&self) -> &[f64] {
        &self.centers
    }

    /// The bin index `d ∈ [1, 256]` of one normalised value: clip to `[-1, 1]`, then
    /// `np.digitize` (right-open bins, so exactly `+1.0` lands in bin 256). NaN is rejected:
    /// numpy would silently put it into bin 256, i.e. a full positive action.
    pub fn digitize(&self, value: f64) -> Result<u32> {
        if value.is_nan() {
            return Err(ActionError::NonFinite {
                what: "normalised action value".into(),
                value,
            });
        }
        let clipped = value.clamp(-1.0, 1.0);
        Ok(self.edges.partition_point(|&edge| edge <= clipped) as u32)
    }

    /// Encodes normalised values into token ids (`vocab - digitize(clip(v))`).
    pub fn encode(&self, values: &[f64]) -> Result<Vec<u32>> {
        values
            .iter()
            .map(|&v| self.digitize(v).map(|d| self.vocab_size - d))
            .collect()
    }

    /// Decodes one id to its bin centre, exactly as the reference wrappers do:
    /// `k = clip(vocab - id - 1, 0, 254)`. Ids outside the action range are clipped into the
    /// first/last centre rather than rejected (see [`check_ids`](Self::check_ids) for a strict test).
    pub fn decode_id(&self, id: u32) -> f64 {
        let d = i64::from(self.vocab_size) - i64::from(id);
        let k = (d - 1).clamp(0, self.centers.len() as i64 - 1) as usize;
        self.centers[k]
    }

    /// Decodes ids to normalised values in `[-1 + 1/255, 1 - 1/255]`.
    pub fn decode(&self, ids: &[u32]) -> Vec<f64> {
        ids.iter().map(|&id| self.decode_id(id)).collect()
    }

    /// Fails on the first id that is not an action token; the reference decodes such ids anyway.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let range = self.token_range();
        match ids.iter().position(|id| !range.contains(id)) {
            None => Ok(()),
            Some(position) => Err(ActionError::NotAnActionToken {
                id: ids[position],
                position,
                low: *range.start(),
                high: *range.end(),
            }),
        }
    }
}

/// The `action_dim` ids that precede the final token of a generated sequence, as the reference
/// wrappers take them (`output_ids[-8:-1]` for 7 dimensions: the last token is the stop token
/// `<|eot_id|>`, and it is dropped without being checked).
///
/// ```
/// use magma_actions::robot::extract_action_ids;
///
/// let out = [128_006, 127_857, 127_873, 127_868, 127_904, 127_861, 127_874, 127_744, 128_009];
/// assert_eq!(extract_action_ids(&out, 7)?, &out[1..8]);
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
pub fn extract_action_ids(output: &[u32], action_dim: usize) -> Result<&[u32]> {
    let needed = action_dim + 1;
    if output.len() < needed {
        return Err(ActionError::TooFewActionTokens {
            got: output.len(),
            needed,
            action_dim,
        });
    }
    let end = output.len() - 1;
    Ok(&output[end - action_dim..end])
}

/// `np.linspace(start, stop, num)`: `i * step + start` with the last point set to `stop`
/// (numpy's own evaluation order, so the edges match bit for bit).
fn linspace_like_numpy(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut out: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = out.last_mut() {
        *last = stop;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centres_follow_the_closed_form() {
        let tok = ActionTokenizer::new(128_000).unwrap();
        for (k, c) in tok.bin_centers().iter().enumerate() {
            let closed = -1.0 + (2.0 * k as f64 + 1.0) / 255.0;
            assert!((c - closed).abs() < 1e-15, "k={k}: {c} vs {closed}");
        }
    }

    #[test]
    fn digitize_edges_are_right_open() {
        let tok = ActionTokenizer::new(128_000).unwrap();
        assert_eq!(tok.digitize(-1.0).unwrap(), 1);
        assert_eq!(tok.digitize(1.0).unwrap(), 256);
        // exactly on an interior edge goes to the bin on its right
        let e = tok.bin_edges()[200];
        assert!(e > 0.0);
        assert_eq!(tok.digitize(e).unwrap(), 201);
        // the next f64 below a positive edge
        assert_eq!(tok.digitize(f64::from_bits(e.to_bits() - 1)).unwrap(), 200);
    }

    #[test]
    fn vocab_too_small_is_rejected() {
        assert!(matches!(
            ActionTokenizer::new(255),
            Err(ActionError::VocabTooSmall(255))
        ));
    }
}
