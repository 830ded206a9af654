//! Fused, multi-threaded elementwise kernels for the ConvNeXt/projector hot paths.
//!
//! candle runs unary/binary ops on one thread; in the vision tower the bias-add + exact GELU
//! after `fc1` touches more values than any other step, so it gets one parallel fused pass.
//! GELU uses the same erf approximation as PyTorch's vectorised CPU kernel (Abramowitz &
//! Stegun 7.1.26, absolute error ≤ 1.5e-7).

use super::simd::dispatch;
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Result, Tensor};
use rayon::prelude::*;

/// Rows handed to one rayon task (amortises scheduling over small rows).
const MIN_CHUNK_ELEMS: usize = 1 << 15;

/// `gelu_erf(x + bias)` over the last axis of `x` (`bias`: `[C]`), computed in place.
///
/// Takes `x` by value because its storage is overwritten when it is a contiguous f32 CPU tensor
/// (in the ConvNeXt MLP it is the fresh `fc1` output, the largest activation of the tower, so
/// not allocating a second one saves both the copy and the page faults of a new buffer).
/// Pass a tensor nothing else reads.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.0]], &Device::Cpu)?;
/// let bias = Tensor::new(&[0.5f32, 0.0], &Device::Cpu)?;
/// let y = magma_model::kernels::elementwise::bias_gelu(x, &bias)?.to_vec2::<f32>()?;
/// assert!((y[0][0] - 0.841_345).abs() < 1e-5); // gelu(1)
/// assert!((y[0][1] + 0.158_655).abs() < 1e-5); // gelu(-1)
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn bias_gelu(x: Tensor, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || !x.is_contiguous() {
        return x.broadcast_add(bias)?.gelu_erf();
    }
    x.inplace_op2(&bias.to_dtype(DType::F32)?.contiguous()?, &BiasGelu)?;
    Ok(x)
}

/// `residual + scale · (y + bias)` over the last axis; `bias_scale` is `[2, C]` (bias; scale).
/// This is the tail of a ConvNeXt block (fc2 bias, layer scale, skip connection).
///
/// Like [`bias_gelu`], it overwrites `y` (the fresh `fc2` output) when it can.
pub fn scaled_residual(y: Tensor, bias_scale: &Tensor, residual: &Tensor) -> Result<Tensor> {
    let fused = y.device().is_cpu()
        && y.dtype() == DType::F32
        && residual.dtype() == DType::F32
        && y.is_contiguous();
    if !fused {
        let bias = bias_scale.get(0)?;
        let scale = bias_scale.get(1)?;
        return y.broadcast_add(&bias)?.broadcast_mul(&scale)? + residual;
    }
    y.inplace_op3(
        &bias_scale.to_dtype(DType::F32)?.contiguous()?,
        &residual.contiguous()?,
        &ScaledResidual,
    )?;
    Ok(y)
}

pub(super) fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{op}: expected f32"),
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: expected a contiguous tensor"),
    }
}

fn f32_slice_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    let data = match storage {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{op}: expected f32"),
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&mut data[a..b]),
        None => candle_core::bail!("{op}: expected a contiguous tensor"),
    }
}

fn chunk_len(channels: usize) -> usize {
    channels * (MIN_CHUNK_ELEMS / channels.max(1)).max(1)
}

/// e^x for f32 without libm calls, so loops over it vectorise (relative error ~1e-7).
#[inline(always)]
pub(super) fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Exact-erf GELU, `x/2 · (1 + erf(x/√2))`.
#[inline(always)]
pub(super) fn gelu(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let az = z.abs();
    let t = 1.0 / (1.0 + P * az);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf_abs = 1.0 - poly * exp_approx(-az * az);
    let erf = if z < 0.0 { -erf_abs } else { erf_abs };
    0.5 * x * (1.0 + erf)
}

struct BiasGelu;

impl InplaceOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "bias-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let bias = f32_slice(s2, l2, self.name())?;
        let c = bias.len();
        if c == 0 || l1.shape().dims().last() != Some(&c) {
            candle_core::bail!(
                "bias-gelu: bias {:?} does not fit {:?}",
                l2.shape(),
                l1.shape()
            )
        }
        let x = f32_slice_mut(s1, l1, self.name())?;
        x.par_chunks_mut(chunk_len(c)).for_each(|chunk| {
            dispatch(|| {
                for row in chunk.chunks_exact_mut(c) {
                    for (v, b) in row.iter_mut().zip(bias) {
                        *v = gelu(*v + b);
                    }
                }
            })
        });
        Ok(())
    }
}

struct ScaledResidual;

impl InplaceOp3 for ScaledResidual {
    fn name(&self) -> &'static str {
        "scaled-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let bias_scale = f32_slice(s2, l2, self.name())?;
        let residual = f32_slice(s3, l3, self.name())?;
        let c = bias_scale.len() / 2;
        if c == 0 || l1.shape() != l3.shape() || l1.shape().dims().last() != Some(&c) {
            candle_core::bail!(
                "scaled-residual: shapes {:?} / {:?} / {:?} do not fit",
                l1.shape(),
                l2.shape(),
                l3.shape()
            )
        }
        let (bias, scale) = bias_scale.split_at(c);
        let y = f32_slice_mut(s1, l1, self.name())?;
        let chunk = chunk_len(c);
        y.par_chunks_mut(chunk)
            .zip(residual.par_chunks(chunk))
            .for_each(|(dst, res)| {
                dispatch(|| {
                    for (d_row, r_row) in dst.chunks_exact_mut(c).zip(res.chunks_exact(c)) {
                        for (((d, r), b), g) in d_row.iter_mut().zip(r_row).zip(bias).zip(scale) {
                            *d = r + g * (*d + b);
                        }
                    }
                })
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn exp_approx_is_close_to_std_exp() {
        for i in -800..=800 {
            let x = i as f32 * 0.1;
            let rel = (exp_approx(x) - x.exp()).abs() / x.exp();
            assert!(rel < 1e-6, "exp({x}): rel error {rel}");
        }
    }

    #[test]
    fn bias_gelu_matches_candle_gelu_erf() -> Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 3.0, (97, 40), &dev)? - 0.5)?;
        let bias = Tensor::randn(0f32, 1.0, 40, &dev)?;
        let expected = x.broadcast_add(&bias)?.gelu_erf()?;
        let diff = max_diff(&bias_gelu(x.copy()?, &bias)?, &expected);
        assert!(diff < 5e-7, "max diff {diff}");
        Ok(())
    }

    #[test]
    fn scaled_residual_matches_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        let y = Tensor::randn(0f32, 1.0, (3, 5, 8), &dev)?;
        let residual = Tensor::randn(0f32, 1.0, (3, 5, 8), &dev)?;
        let bias_scale = Tensor::randn(0f32, 1.0, (2, 8), &dev)?;
        let expected = (y
            .broadcast_add(&bias_scale.get(0)?)?
            .broadcast_mul(&bias_scale.get(1)?)?
            + &residual)?;
        let diff = max_diff(
            &scaled_residual(y.copy()?, &bias_scale, &residual)?,
            &expected,
        );
        assert!(diff < 1e-6, "max diff {diff}");
        Ok(())
    }
}
