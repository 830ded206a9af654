//! Random weights for timing benches, built directly in their final storage format and in
//! parallel, so a full-size model is ready in seconds and never exists as an f32 copy.

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8K, BlockQ8_0, GgmlType,
};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// Distinct random blocks quantized per tensor; the tensor's blocks are drawn from them.
const POOL_BLOCKS: usize = 1024;

/// A `[rows, cols]` weight in block format `block` with values ~N(0, std²).
///
/// Quantizing billions of values is what makes a full-size random model slow to build, so a pool
/// of [`POOL_BLOCKS`] random blocks is quantized properly and every block of the tensor is a copy
/// of one drawn at random: the values have the intended distribution and each byte of the weight
/// is really stored and read, which is all a timing bench needs.
///
/// ```
/// use candle_core::quantized::GgmlDType;
/// let w = magma_model::random::quantized(GgmlDType::Q4K, 64, 512, 0.05, 7)?;
/// let dense = w.dequantize(&candle_core::Device::Cpu)?;
/// let std = dense.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?;
/// assert!((std - 0.05).abs() < 0.01, "{std}");
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn quantized(
    block: GgmlDType,
    rows: usize,
    cols: usize,
    std: f32,
    seed: u64,
) -> Result<QTensor> {
    macro_rules! build {
        ($block:ty) => {
            Box::new(random_blocks::<$block>(rows, cols, std, seed)?)
        };
    }
    let storage: Box<dyn candle_core::quantized::QuantizedType> = match block {
        GgmlDType::Q4_0 => build!(BlockQ4_0),
        GgmlDType::Q4_1 => build!(BlockQ4_1),
        GgmlDType::Q5_0 => build!(BlockQ5_0),
        GgmlDType::Q5_1 => build!(BlockQ5_1),
        GgmlDType::Q8_0 => build!(BlockQ8_0),
        GgmlDType::Q2K => build!(BlockQ2K),
        GgmlDType::Q3K => build!(BlockQ3K),
        GgmlDType::Q4K => build!(BlockQ4K),
        GgmlDType::Q5K => build!(BlockQ5K),
        GgmlDType::Q6K => build!(BlockQ6K),
        GgmlDType::Q8K => build!(BlockQ8K),
        other => candle_core::bail!("no random block generator for {other:?}"),
    };
    QTensor::new(QStorage::Cpu(storage), (rows, cols))
}

fn random_blocks<T: GgmlType>(rows: usize, cols: usize, std: f32, seed: u64) -> Result<Vec<T>> {
    if !cols.is_multiple_of(T::BLCK_SIZE) {
        candle_core::bail!("{cols} columns do not fill blocks of {}", T::BLCK_SIZE);
    }
    let values: Vec<f32> = (0..POOL_BLOCKS * T::BLCK_SIZE)
        .into_par_iter()
        .map(|i| std * normal(seed, i as u64))
        .collect();
    let mut pool = vec![T::zeros(); POOL_BLOCKS];
    T::from_float(&values, &mut pool);
    let pick_seed = mix(seed ^ 0x5eed);
    Ok((0..rows * cols / T::BLCK_SIZE)
        .into_par_iter()
        .map(|i| pool[(mix(pick_seed ^ i as u64) % POOL_BLOCKS as u64) as usize].clone())
        .collect())
}

/// A dense `shape` tensor of `dtype` with values ~N(0, std²), generated in parallel.
///
/// BF16 values are rounded from f32 one at a time, so no f32 copy of the tensor exists.
pub fn dense(
    shape: &[usize],
    std: f32,
    dtype: DType,
    seed: u64,
    device: &Device,
) -> Result<Tensor> {
    let count: usize = shape.iter().product();
    let value = |i: usize| std * normal(seed, i as u64);
    match dtype {
        DType::BF16 => {
            let mut bytes = vec![0u8; 2 * count];
            bytes
                .par_chunks_mut(2)
                .enumerate()
                .for_each(|(i, b)| b.copy_from_slice(&bf16_bits(value(i)).to_le_bytes()));
            Tensor::from_raw_buffer(&bytes, DType::BF16, shape, device)
        }
        _ => {
            let values: Vec<f32> = (0..count).into_par_iter().map(value).collect();
            Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
        }
    }
}

/// Round-to-nearest-even bf16 bits of a finite f32.
fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The `i`-th value of a stream of standard normal numbers (Box–Muller on two hashed uniforms).
fn normal(seed: u64, i: u64) -> f32 {
    let h = mix(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i);
    // two 32-bit uniforms in (0, 1]
    let u1 = ((h >> 32) as f64 + 1.0) / 4_294_967_296.0;
    let u2 = (h & 0xffff_ffff) as f64 / 4_294_967_296.0;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// SplitMix64's finaliser: a cheap, well-mixed hash of a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed derived from a tensor name, so each tensor gets its own stream.
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_stream_has_unit_moments() {
        let xs: Vec<f64> = (0..200_000).map(|i| normal(3, i) as f64).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }

    #[test]
    fn bf16_rounding_matches_candle() -> Result<()> {
        // 1 + 2⁻⁸ and 1 + 3·2⁻⁸ are ties: they round to the even neighbour (1.0, 1 + 2⁻⁶)
        let tie = 2f32.powi(-8);
        let xs = [
            1.0f32,
            -1.0 / 3.0,
            1.0 + tie,
            1.0 + 3.0 * tie,
            std::f32::consts::PI,
            1e-3,
        ];
        let ours: Vec<u8> = xs
            .iter()
            .flat_map(|&x| bf16_bits(x).to_le_bytes())
            .collect();
        let ours = Tensor::from_raw_buffer(&ours, DType::BF16, &[xs.len()], &Device::Cpu)?;
        let theirs = Tensor::new(&xs, &Device::Cpu)?.to_dtype(DType::BF16)?;
        assert_eq!(
            ours.to_dtype(DType::F32)?.to_vec1::<f32>()?,
            theirs.to_dtype(DType::F32)?.to_vec1::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn dense_bf16_has_requested_scale() -> Result<()> {
        let t = dense(&[64, 256], 0.02, DType::BF16, 1, &Device::Cpu)?;
        assert_eq!(t.dtype(), DType::BF16);
        let std = t
            .to_dtype(DType::F32)?
            .sqr()?
            .mean_all()?
            .sqrt()?
            .to_scalar::<f32>()?;
        assert!((std - 0.02).abs() < 0.001, "{std}");
        Ok(())
    }
}
