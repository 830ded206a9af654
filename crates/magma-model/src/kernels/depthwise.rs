//! Depthwise (one filter per channel) 2-D convolution on channels-last tensors.
//!
//! candle's `conv2d(groups = C)` runs one convolution per channel, which makes ConvNeXt's 7x7
//! depthwise layers its slowest part. This kernel works on `[N, H, W, C]` tensors: every output
//! pixel is a sum of `k·k` shifted input pixels times per-channel taps, and the innermost loop
//! runs over contiguous channels, so it vectorises. Rows of the output are spread over threads.

use super::simd::dispatch;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Depthwise convolution, stride 1, zero padding `k / 2` ("same" output size), with bias.
///
/// * `x`: `[N, H, W, C]`, `taps`: `[k, k, C]` (tap-major, channels innermost), `bias`: `[C]`.
/// * Returns `[N, H, W, C]`. Runs in f32 (other dtypes are converted and converted back).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::ones((1, 3, 3, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let taps = Tensor::ones((3, 3, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let bias = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu)?;
/// let y = magma_model::kernels::depthwise::depthwise_conv2d_nhwc(&x, &taps, &bias)?;
/// // the centre pixel sees all 9 taps, a corner only 4
/// assert_eq!(y.get(0)?.get(1)?.get(1)?.to_vec1::<f32>()?, vec![9.0, 9.0]);
/// assert_eq!(y.get(0)?.get(0)?.get(0)?.to_vec1::<f32>()?, vec![4.0, 4.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn depthwise_conv2d_nhwc(x: &Tensor, taps: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, _, _, c) = x.dims4()?;
    let (kh, kw, tc) = taps.dims3()?;
    if kh != kw || kh % 2 == 0 || tc != c || bias.dims1()? != c {
        candle_core::bail!(
            "depthwise conv: taps {:?} / bias {:?} do not fit input {:?} (need odd square kernel, C taps)",
            taps.dims(),
            bias.dims(),
            x.dims()
        )
    }
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        // the CUDA kernel runs in the input's dtype (f32 accumulation inside)
        let dtype = x.dtype();
        let taps = taps.to_dtype(dtype)?.contiguous()?;
        let bias = bias.to_dtype(dtype)?.contiguous()?;
        return x
            .contiguous()?
            .apply_op3_no_bwd(&taps, &bias, &DepthwiseNhwc { kernel: kh });
    }
    if !x.device().is_cpu() {
        return depthwise_with_candle_conv(x, taps, bias);
    }
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?.contiguous()?;
    let taps32 = taps.to_dtype(DType::F32)?.contiguous()?;
    let bias32 = bias.to_dtype(DType::F32)?.contiguous()?;
    x32.apply_op3_no_bwd(&taps32, &bias32, &DepthwiseNhwc { kernel: kh })?
        .to_dtype(dtype)
}

/// Fallback for devices without a kernel of ours (Metal): candle's grouped convolution.
fn depthwise_with_candle_conv(x: &Tensor, taps: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (k, _, c) = taps.dims3()?;
    let kernel = taps.permute((2, 0, 1))?.reshape((c, 1, k, k))?;
    let nchw = x.permute((0, 3, 1, 2))?.contiguous()?;
    let y = nchw.conv2d(&kernel, k / 2, 1, 1, c)?;
    y.broadcast_add(&bias.reshape((1, c, 1, 1))?)?
        .permute((0, 2, 3, 1))?
        .contiguous()
}

struct DepthwiseNhwc {
    kernel: usize,
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data,
        _ => candle_core::bail!("depthwise conv: {what} must be f32"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("depthwise conv: {what} must be contiguous"),
    }
}

impl CustomOp3 for DepthwiseNhwc {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-nhwc"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::depthwise_cuda::depthwise_nhwc_cuda(self.kernel, (s1, l1), (s2, l2), (s3, l3))
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(s1, l1, "input")?;
        let taps = contiguous_f32(s2, l2, "taps")?;
        let bias = contiguous_f32(s3, l3, "bias")?;
        let (n, h, w, c) = l1.shape().dims4()?;
        let k = self.kernel;
        let pad = k / 2;
        let row_len = w * c;
        let mut output = vec![0f32; n * h * row_len];
        output
            .par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(row_index, out_row)| {
                dispatch(|| {
                    let (b, y) = (row_index / h, row_index % h);
                    for px in out_row.chunks_exact_mut(c) {
                        px.copy_from_slice(bias);
                    }
                    for ky in 0..k {
                        let Some(iy) = (y + ky).checked_sub(pad).filter(|&iy| iy < h) else {
                            continue;
                        };
                        let in_row = &input[(b * h + iy) * row_len..][..row_len];
                        for kx in 0..k {
                            let tap = &taps[(ky * k + kx) * c..][..c];
                            // output columns x whose source column x + kx - pad lies inside the row
                            let x_start = pad.saturating_sub(kx);
                            let x_end = (w + pad).saturating_sub(kx).min(w);
                            for x in x_start..x_end {
                                let ix = x + kx - pad;
                                let src = &in_row[ix * c..][..c];
                                let dst = &mut out_row[x * c..][..c];
                                for ((d, s), t) in dst.iter_mut().zip(src).zip(tap) {
                                    *d += s * t;
                                }
                            }
                        }
                    }
                })
            });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The kernel against candle's own grouped convolution on random data, odd sizes included.
    #[test]
    fn matches_candle_grouped_conv2d() -> Result<()> {
        let dev = Device::Cpu;
        for &(n, h, w, c, k) in &[(2, 9, 7, 5, 7), (1, 4, 11, 16, 7), (1, 5, 5, 3, 3)] {
            let x = Tensor::randn(0f32, 1.0, (n, c, h, w), &dev)?;
            let kernel = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, c, &dev)?;
            let expected = x
                .conv2d(&kernel, k / 2, 1, 1, c)?
                .broadcast_add(&bias.reshape((1, c, 1, 1))?)?;
            let taps = kernel.reshape((c, k, k))?.permute((1, 2, 0))?;
            let ours = depthwise_conv2d_nhwc(&x.permute((0, 2, 3, 1))?, &taps, &bias)?
                .permute((0, 3, 1, 2))?;
            let diff = (ours - expected)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-4, "max diff {diff} for {:?}", (n, h, w, c, k));
        }
        Ok(())
    }

    #[test]
    fn rejects_mismatched_taps() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 4, 4, 3), DType::F32, &dev)?;
        let taps = Tensor::zeros((7, 7, 2), DType::F32, &dev)?;
        let bias = Tensor::zeros(3, DType::F32, &dev)?;
        assert!(depthwise_conv2d_nhwc(&x, &taps, &bias).is_err());
        Ok(())
    }
}
