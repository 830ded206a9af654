//! Products of f32 activations with block-quantized (GGML) weights, computed on the weight's own
//! blocks.
//!
//! candle's `QMatMul` on x86 builds a second, repacked copy of every Q4_K weight the first time
//! it is used and keeps the original too, which doubles the memory of a quantized model. These
//! kernels read the blocks as they are stored instead:
//!
//! - one activation row (decoding): the row is quantized once to the weight's dot-product type
//!   (Q8_K for the K formats, Q8_0 for the 32-blocks) and each output is one block dot product
//!   (candle's SIMD `vec_dot`), output rows split in chunks over the rayon pool;
//! - a few rows (short prompts, batched decoding): candle's block-dot-product matmul on the
//!   stored blocks (`k_quants::matmul`, the path without the repacked copy);
//! - many rows (image prompts, projector): the weight is expanded to f32 one tile of output rows
//!   at a time and multiplied with a dense GEMM, so no full f32 copy of a weight is ever held.
//!   Expanding costs the same whatever the row count, so it only pays off on long inputs
//!   (measured on 8B-shaped layers, 2 cores: 300 rows 13.5 s vs 18.6 s with block dot products
//!   per 4 layers; 26 rows 32 s vs ~2 s over 32 layers).

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8K, BlockQ8_0, GgmlType,
};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// Output rows per rayon task in the one-row product (amortises scheduling; 64 rows of a
/// 4096-wide Q4_K weight are 144 KiB).
const MATVEC_CHUNK_ROWS: usize = 64;
/// f32 values of one expanded weight tile in the several-row product (16 MiB).
const TILE_VALUES: usize = 1 << 22;
/// Rows from which expanding tiles to f32 beats block dot products (crossover ~130 rows).
const TILED_MIN_ROWS: usize = 128;

/// `x · Wᵀ` for a quantized `[n, k]` weight `w` and a contiguous f32 `x` of shape `[m, k]`.
///
/// Returns `None` when the weight or input is not one this kernel handles (not on the CPU, not
/// f32, or a block type without a CPU dot product here); callers then use candle's `QMatMul`.
///
/// ```
/// use candle_core::quantized::{GgmlDType, QTensor};
/// use candle_core::{Device, Tensor};
/// let w = Tensor::randn(0f32, 0.05, (8, 256), &Device::Cpu)?;
/// let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
/// let x = Tensor::randn(0f32, 1.0, (1, 256), &Device::Cpu)?;
/// let y = magma_model::kernels::qmatvec::quantized_matmul(&q, &x)?.expect("CPU f32 Q8_0");
/// assert_eq!(y.dims(), &[1, 8]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn quantized_matmul(w: &QTensor, x: &Tensor) -> Result<Option<Tensor>> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || !w.device().is_cpu() {
        return Ok(None);
    }
    let (n, k) = w.shape().dims2()?;
    let (m, xk) = x.dims2()?;
    if xk != k {
        candle_core::bail!("quantized matmul: input has {xk} features, the weight expects {k}");
    }
    let x = x.contiguous()?;
    let data = w.data()?;
    macro_rules! run {
        ($block:ty) => {
            match blocks::<$block>(&data, n, k) {
                Some(blocks) => product(blocks, n, k, m, &x).map(Some),
                None => Ok(None),
            }
        };
    }
    match w.dtype() {
        GgmlDType::Q4_0 => run!(BlockQ4_0),
        GgmlDType::Q4_1 => run!(BlockQ4_1),
        GgmlDType::Q5_0 => run!(BlockQ5_0),
        GgmlDType::Q5_1 => run!(BlockQ5_1),
        GgmlDType::Q8_0 => run!(BlockQ8_0),
        GgmlDType::Q2K => run!(BlockQ2K),
        GgmlDType::Q3K => run!(BlockQ3K),
        GgmlDType::Q4K => run!(BlockQ4K),
        GgmlDType::Q5K => run!(BlockQ5K),
        GgmlDType::Q6K => run!(BlockQ6K),
        GgmlDType::Q8K => run!(BlockQ8K),
        GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 | GgmlDType::Q8_1 => Ok(None),
    }
}

/// The stored bytes of an `[n, k]` weight as its blocks, if they have the expected count and
/// alignment (they always do for a CPU `QTensor`, whose storage is a `Vec` of blocks).
fn blocks<T: GgmlType>(data: &[u8], n: usize, k: usize) -> Option<&[T]> {
    if !k.is_multiple_of(T::BLCK_SIZE) {
        return None;
    }
    // SAFETY: the GGML block types are `repr(C)` structs of integers and f16 values, for which
    // every bit pattern is valid; `align_to` only hands out the correctly aligned middle part.
    let (head, body, tail) = unsafe { data.align_to::<T>() };
    (head.is_empty() && tail.is_empty() && body.len() == n * k / T::BLCK_SIZE).then_some(body)
}

fn product<T: GgmlType>(w: &[T], n: usize, k: usize, m: usize, x: &Tensor) -> Result<Tensor> {
    if m == 1 {
        let row = x.flatten_all()?;
        let out = matvec(w, k, &row.to_vec1::<f32>()?);
        Tensor::from_vec(out, (1, n), x.device())
    } else if m < TILED_MIN_ROWS {
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; m * n];
        candle_core::quantized::k_quants::matmul((m, k, n), &xs, w, &mut out)?;
        Tensor::from_vec(out, (m, n), x.device())
    } else {
        tiled_gemm(w, n, k, x)
    }
}

/// One activation row against every weight row: `out[j] = Σ_i x[i]·W[j, i]`.
///
/// `x` is quantized once to the weight's dot-product type, as candle's and llama.cpp's CPU
/// products do (this is where a quantized product differs from the dequantized f32 one).
pub fn matvec<T: GgmlType>(w: &[T], k: usize, x: &[f32]) -> Vec<f32> {
    let row_blocks = k / T::BLCK_SIZE;
    let n = w.len() / row_blocks.max(1);
    let mut xq = vec![T::VecDotType::zeros(); k / T::VecDotType::BLCK_SIZE];
    T::VecDotType::from_float(x, &mut xq);
    let mut out = vec![0f32; n];
    out.par_chunks_mut(MATVEC_CHUNK_ROWS)
        .zip(w.par_chunks(MATVEC_CHUNK_ROWS * row_blocks))
        .for_each(|(out, rows)| {
            for (o, row) in out.iter_mut().zip(rows.chunks_exact(row_blocks)) {
                *o = T::vec_dot(k, row, &xq);
            }
        });
    out
}

/// Several activation rows: expands tiles of weight rows to f32 (in parallel) and multiplies
/// each with candle's GEMM, so at most [`TILE_VALUES`] expanded values exist at a time.
fn tiled_gemm<T: GgmlType>(w: &[T], n: usize, k: usize, x: &Tensor) -> Result<Tensor> {
    let row_blocks = k / T::BLCK_SIZE;
    let tile_rows = (TILE_VALUES / k).clamp(16, n.max(16));
    let mut outputs = Vec::with_capacity(n.div_ceil(tile_rows));
    for tile in w.chunks(tile_rows * row_blocks) {
        let rows = tile.len() / row_blocks;
        let mut dense = vec![0f32; rows * k];
        dense
            .par_chunks_mut(16 * k)
            .zip(tile.par_chunks(16 * row_blocks))
            .for_each(|(dense, blocks)| T::to_float(blocks, dense));
        let dense = Tensor::from_vec(dense, (rows, k), x.device())?;
        outputs.push(x.matmul(&dense.t()?)?);
    }
    Tensor::cat(&outputs, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The product must equal the f32 product with the dequantized weight, up to the rounding of
    /// the activations to 8 bits (one row) or float summation order (several rows).
    fn check(dtype: GgmlDType, k: usize, m: usize) -> Result<()> {
        let device = Device::Cpu;
        let n = 70; // not a multiple of the chunk or of 4: exercises the remainders
        let w = Tensor::randn(0f32, 0.05, (n, k), &device)?;
        let q = QTensor::quantize(&w, dtype)?;
        let x = Tensor::randn(0f32, 1.0, (m, k), &device)?;
        let reference = x.matmul(&q.dequantize(&device)?.t()?)?;
        let ours = quantized_matmul(&q, &x)?.expect("a supported CPU weight");
        assert_eq!(ours.dims(), &[m, n]);
        let err = (&ours - &reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let scale = reference.abs()?.max_all()?.to_scalar::<f32>()?;
        // 8-bit activations: relative error ~1/127 per term, mostly averaging out; the tiled
        // f32 product only differs by summation order
        let bound = if m < TILED_MIN_ROWS { 0.02 } else { 1e-4 };
        assert!(
            err / scale < bound,
            "{dtype:?} m={m}: error {err} of {scale}"
        );
        if m < TILED_MIN_ROWS {
            // and it agrees with candle's own quantized product, which rounds the same way
            let theirs = candle_core::Module::forward(
                &candle_core::quantized::QMatMul::from_qtensor(q)?,
                &x,
            )?;
            let diff = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                diff / scale < 1e-4,
                "{dtype:?}: {diff} from candle's QMatMul"
            );
        }
        Ok(())
    }

    #[test]
    fn one_row_matches_dequantized_reference() -> Result<()> {
        for dtype in [
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::Q5K,
            GgmlDType::Q8_0,
        ] {
            check(dtype, 512, 1)?;
        }
        check(GgmlDType::Q5_0, 128, 1)
    }

    #[test]
    fn several_rows_match_dequantized_reference() -> Result<()> {
        check(GgmlDType::Q4K, 512, 5)?;
        check(GgmlDType::Q8_0, 96, 3)?;
        check(GgmlDType::Q4K, 256, TILED_MIN_ROWS)?;
        check(GgmlDType::Q5_0, 64, TILED_MIN_ROWS + 3)
    }

    #[test]
    fn unsupported_inputs_fall_back() -> Result<()> {
        let device = Device::Cpu;
        let q = QTensor::quantize(
            &Tensor::zeros((4, 32), DType::F32, &device)?,
            GgmlDType::F16,
        )?;
        let x = Tensor::zeros((1, 32), DType::F32, &device)?;
        assert!(quantized_matmul(&q, &x)?.is_none());
        let q8 = QTensor::quantize(
            &Tensor::zeros((4, 32), DType::F32, &device)?,
            GgmlDType::Q8_0,
        )?;
        assert!(quantized_matmul(&q8, &x.to_dtype(DType::BF16)?)?.is_none());
        Ok(())
    }
}
