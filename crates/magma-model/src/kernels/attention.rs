//! Fused causal softmax for prefill attention on the CPU.
//!
//! The plain candle path scales the `[heads, queries, keys]` scores, adds a broadcast causal
//! mask and then runs softmax: three passes over the largest tensor of the prefill, the first
//! two on one thread. Here the three happen in one parallel pass, and masked keys are simply
//! never read (they would get exactly zero weight either way).

use super::elementwise::{exp_approx, f32_slice};
use super::simd::dispatch;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `softmax(scale · scores + causal_mask)` over the last axis.
///
/// `scores` is `[..., rows, keys]` where row `r` belongs to query `r % queries` (several query
/// heads may be folded into the row axis, head-major) and query `i` sits at position
/// `start + i`, so it sees keys `0..=start + i`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use magma_model::kernels::attention::causal_softmax;
/// let scores = Tensor::new(&[[0.0f32, 0.0, 0.0], [1.0, 1.0, 9.0], [0.0, 2.0, 0.0]], &Device::Cpu)?;
/// let p = causal_softmax(&scores, 0.5, 3, 0)?.to_vec2::<f32>()?;
/// assert_eq!(p[0], [1.0, 0.0, 0.0]);               // query 0 sees key 0 only
/// assert!((p[1][0] - 0.5).abs() < 1e-6 && p[1][2] == 0.0);
/// let e = 1f32.exp();                               // scale 0.5 · score 2
/// assert!((p[2][1] - e / (2.0 + e)).abs() < 1e-6);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn causal_softmax(scores: &Tensor, scale: f64, queries: usize, start: usize) -> Result<Tensor> {
    if !scores.device().is_cpu() || scores.dtype() != DType::F32 {
        return fallback(scores, scale, queries, start);
    }
    scores.contiguous()?.apply_op1_no_bwd(&CausalSoftmax {
        scale: scale as f32,
        queries,
        start,
    })
}

/// The same arithmetic from plain candle ops (GPU and non-f32 tensors).
fn fallback(scores: &Tensor, scale: f64, queries: usize, start: usize) -> Result<Tensor> {
    let keys = scores.dim(candle_core::D::Minus1)?;
    let rows = scores.dim(candle_core::D::Minus2)?;
    let mask: Vec<f32> = (0..rows)
        .flat_map(|r| {
            let visible = start + r % queries.max(1) + 1;
            (0..keys).map(move |j| if j < visible { 0.0 } else { f32::NEG_INFINITY })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (rows, keys), scores.device())?.to_dtype(scores.dtype())?;
    candle_nn::ops::softmax_last_dim(&(scores * scale)?.broadcast_add(&mask)?)
}

struct CausalSoftmax {
    scale: f32,
    queries: usize,
    start: usize,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let scores = f32_slice(storage, layout, self.name())?;
        let keys = layout.shape().dims().last().copied().unwrap_or(0);
        if keys == 0 || self.queries == 0 {
            candle_core::bail!("causal-softmax: empty scores {:?}", layout.shape())
        }
        let mut out = vec![0f32; scores.len()];
        out.par_chunks_mut(keys)
            .zip(scores.par_chunks(keys))
            .enumerate()
            .with_min_len(8)
            .for_each(|(row, (dst, src))| {
                let visible = (self.start + row % self.queries + 1).min(keys);
                dispatch(|| softmax_row(&mut dst[..visible], &src[..visible], self.scale));
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[inline(always)]
fn softmax_row(dst: &mut [f32], src: &[f32], scale: f32) {
    let max = src.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s)) * scale;
    let mut sum = 0f32;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = exp_approx(s * scale - max);
        sum += *d;
    }
    let inv = 1.0 / sum;
    for d in dst.iter_mut() {
        *d *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_scale_mask_softmax_with_folded_heads_and_a_cache_offset() -> Result<()> {
        // 2 query heads folded into rows, 3 new queries after 2 cached positions, 5 keys.
        let (heads, queries, start, keys) = (2, 3, 2, 5);
        let scores = Tensor::randn(0f32, 3.0, (1, heads * queries, keys), &Device::Cpu)?;
        let fused = causal_softmax(&scores, 0.37, queries, start)?;
        let plain = fallback(&scores, 0.37, queries, start)?;
        let diff = (fused - &plain)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "max difference {diff}");
        // Row 0 (query 0, position 2) sees keys 0..=2 only; row 5 (query 2) sees all 5.
        let p = plain.to_vec3::<f32>()?;
        assert_eq!(&p[0][0][3..], &[0.0, 0.0]);
        assert!(p[0][5].iter().all(|&v| v > 0.0));
        Ok(())
    }
}
