//! The ConvNeXt block's MLP, fused per tile of pixels on the CPU.
//!
//! Unfused, the early stages' MLP writes and re-reads a hidden activation of 4× the input
//! (100 MB per 512-px crop batch in stage 1) through three full passes, and candle's parallel
//! GEMM splits each product, with its small inner dimension (96 or 192), across threads
//! inefficiently. Here each rayon task takes [`TILE_ROWS`] pixels through
//! `fc1 → +bias → GELU → fc2 → +bias → ×γ → +residual` with its hidden tile kept in cache and
//! single-threaded products (fc1+fc2 of a stage-1 block over 4 crops: 115 → 88 ms on 2 cores).

use super::elementwise::gelu;
use super::gemm::{product, Operand};
use super::simd::dispatch;
use candle_core::{CpuStorage, DType, Result, Storage, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;

/// Pixels per task: the hidden tile (`TILE_ROWS × 4C` floats, 384 KB at C = 96) stays in L2,
/// and products of 256 rows still run near the GEMM's full speed (measured with C = 96/192).
pub const TILE_ROWS: usize = 256;

/// The weights of one block's MLP tail.
///
/// `fc1` is `[4C, C]`, `fc1_bias` `[4C]`, `fc2` `[C, 4C]`, `fc2_bias_and_scale` `[2, C]` (fc2 bias;
/// layer scale γ), all f32 on the CPU.
#[derive(Debug, Clone, Copy)]
pub struct MlpWeights<'a> {
    pub fc1: &'a Tensor,
    pub fc1_bias: &'a Tensor,
    pub fc2: &'a Tensor,
    pub fc2_bias_and_scale: &'a Tensor,
}

/// `residual + γ · (fc2(gelu(fc1(x) + b1)) + b2)` over the last axis of `x`.
///
/// `x` and `residual` are `[..., C]` f32 CPU tensors of one shape; returns a new tensor of it.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use magma_model::kernels::mlp::{convnext_mlp, MlpWeights};
/// let dev = Device::Cpu;
/// // C = 1, hidden 4: fc1 doubles, fc2 sums the four hidden units, γ = 0.5.
/// let x = Tensor::new(&[[1.0f32], [-3.0]], &dev)?;
/// let fc1 = Tensor::new(&[[2.0f32], [2.0], [2.0], [2.0]], &dev)?;
/// let fc1_bias = Tensor::zeros(4, candle_core::DType::F32, &dev)?;
/// let fc2 = Tensor::new(&[[1.0f32, 1.0, 1.0, 1.0]], &dev)?;
/// let fc2_bias_and_scale = Tensor::new(&[[0.0f32], [0.5]], &dev)?;
/// let w = MlpWeights { fc1: &fc1, fc1_bias: &fc1_bias, fc2: &fc2, fc2_bias_and_scale: &fc2_bias_and_scale };
/// let y = convnext_mlp(&x, &w, &x)?.to_vec2::<f32>()?;
/// // 1 + 0.5·4·gelu(2) = 1 + 2·1.9545 ; −3 + 0.5·4·gelu(−6) ≈ −3
/// assert!((y[0][0] - (1.0 + 2.0 * 1.954_5)).abs() < 1e-3);
/// assert!((y[1][0] + 3.0).abs() < 1e-6);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn convnext_mlp(x: &Tensor, w: &MlpWeights<'_>, residual: &Tensor) -> Result<Tensor> {
    let c = x.dim(candle_core::D::Minus1)?;
    let hidden = w.fc1.dim(0)?;
    let fits = w.fc1.dims() == [hidden, c]
        && w.fc1_bias.dims() == [hidden]
        && w.fc2.dims() == [c, hidden]
        && w.fc2_bias_and_scale.dims() == [2, c]
        && residual.dims() == x.dims();
    if !fits {
        candle_core::bail!(
            "convnext-mlp: x {:?}, fc1 {:?}, fc2 {:?}, residual {:?} do not fit together",
            x.dims(),
            w.fc1.dims(),
            w.fc2.dims(),
            residual.dims()
        )
    }
    let inputs = [x, w.fc1, w.fc1_bias, w.fc2, w.fc2_bias_and_scale, residual]
        .map(contiguous_f32)
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = inputs.iter().map(|t| t.storage_and_layout()).collect();
    let slices: Vec<&[f32]> = guards.iter().map(|(s, l)| values(s, l)).collect();
    if slices
        .iter()
        .zip(&inputs)
        .any(|(s, t)| s.len() != t.elem_count())
    {
        candle_core::bail!("convnext-mlp: an input's storage does not match its shape")
    }
    let [x_data, fc1_data, b1, fc2_data, bias_scale, residual] = slices[..] else {
        candle_core::bail!("convnext-mlp: six inputs expected")
    };
    let (b2, gamma) = bias_scale.split_at(c);
    let mut out = vec![0f32; x_data.len()];
    out.par_chunks_mut(TILE_ROWS * c)
        .zip(x_data.par_chunks(TILE_ROWS * c))
        .zip(residual.par_chunks(TILE_ROWS * c))
        .for_each(|((out, x), residual)| {
            HIDDEN.with_borrow_mut(|h| {
                let rows = x.len() / c;
                h.clear();
                h.resize(rows * hidden, 0.0);
                // SAFETY (both products): x is rows×c, fc1 hidden×c, h rows×hidden, fc2 c×hidden
                // and out rows×c (lengths checked above), as the operands describe; the
                // destinations are distinct buffers from the operands.
                // h = x · fc1ᵀ
                unsafe {
                    product(
                        (rows, hidden, c),
                        h.as_mut_ptr(),
                        hidden,
                        Operand::rows(x, c),
                        Operand::transposed(fc1_data, c),
                    )
                };
                dispatch(|| {
                    for row in h.chunks_exact_mut(hidden) {
                        for (v, b) in row.iter_mut().zip(b1) {
                            *v = gelu(*v + b);
                        }
                    }
                });
                // out = gelu(h + b1) · fc2ᵀ
                unsafe {
                    product(
                        (rows, c, hidden),
                        out.as_mut_ptr(),
                        c,
                        Operand::rows(h, hidden),
                        Operand::transposed(fc2_data, hidden),
                    )
                };
                dispatch(|| {
                    for (o, r) in out.chunks_exact_mut(c).zip(residual.chunks_exact(c)) {
                        for (((o, r), b), g) in o.iter_mut().zip(r).zip(b2).zip(gamma) {
                            *o = r + g * (*o + b);
                        }
                    }
                });
            })
        });
    Tensor::from_vec(out, inputs[0].shape(), &candle_core::Device::Cpu)
}

thread_local! {
    /// Per-thread hidden tile, reused across tasks and blocks.
    static HIDDEN: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn contiguous_f32(t: &Tensor) -> Result<Tensor> {
    if !t.device().is_cpu() || t.dtype() != DType::F32 {
        candle_core::bail!(
            "convnext-mlp: expected f32 CPU tensors, got {:?}",
            t.dtype()
        )
    }
    t.contiguous()
}

/// The values of a contiguous f32 CPU tensor (checked by [`contiguous_f32`]).
fn values<'a>(storage: &'a Storage, layout: &candle_core::Layout) -> &'a [f32] {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(values)), Some((start, end))) => &values[start..end],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused tiles against plain candle ops, over a partial last tile.
    #[test]
    fn matches_unfused_ops() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, c) = (2 * TILE_ROWS + 37, 24);
        let x = Tensor::randn(0f32, 1.0, (1, rows, c), &dev)?;
        let residual = Tensor::randn(0f32, 1.0, (1, rows, c), &dev)?;
        let fc1 = Tensor::randn(0f32, 0.3, (4 * c, c), &dev)?;
        let fc1_bias = Tensor::randn(0f32, 0.3, 4 * c, &dev)?;
        let fc2 = Tensor::randn(0f32, 0.3, (c, 4 * c), &dev)?;
        let bias_scale = Tensor::randn(0f32, 0.3, (2, c), &dev)?;
        let w = MlpWeights {
            fc1: &fc1,
            fc1_bias: &fc1_bias,
            fc2: &fc2,
            fc2_bias_and_scale: &bias_scale,
        };
        let fused = convnext_mlp(&x, &w, &residual)?;
        let h = x
            .broadcast_matmul(&fc1.t()?)?
            .broadcast_add(&fc1_bias)?
            .gelu_erf()?;
        let y = h.broadcast_matmul(&fc2.t()?)?;
        let expected = (y
            .broadcast_add(&bias_scale.get(0)?)?
            .broadcast_mul(&bias_scale.get(1)?)?
            + &residual)?;
        let diff = (fused - expected)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max difference {diff}");
        Ok(())
    }

    #[test]
    fn mismatched_weights_are_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((3, 4), DType::F32, &dev)?;
        let fc1 = Tensor::zeros((16, 5), DType::F32, &dev)?; // in-dim 5, x has 4 channels
        let b1 = Tensor::zeros(16, DType::F32, &dev)?;
        let fc2 = Tensor::zeros((4, 16), DType::F32, &dev)?;
        let bs = Tensor::zeros((2, 4), DType::F32, &dev)?;
        let w = MlpWeights {
            fc1: &fc1,
            fc1_bias: &b1,
            fc2: &fc2,
            fc2_bias_and_scale: &bs,
        };
        let err = convnext_mlp(&x, &w, &x).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
        Ok(())
    }
}
