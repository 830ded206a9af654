//! Differentiable versions of the operations whose fast inference paths record no backward.
//!
//! candle's fused ops (`rms_norm`, `layer_norm`, `softmax_last_dim`, `rope`) and our own kernels
//! (depthwise conv, fused attention, quantized products) are `apply_op*_no_bwd`: a graph that
//! passes through them silently loses every gradient below. The training path therefore uses:
//!
//! * compositions of differentiable candle ops where they cost about the same
//!   ([`rms_norm`], [`layer_norm`], [`rope`], [`softmax`], [`log_softmax`]);
//! * a fast forward on detached inputs re-attached to the graph with a hand-written backward
//!   ([`depthwise_conv2d`], [`frozen_linear`]): the forward stays the inference kernel, the
//!   backward is ours and checked against finite differences in f64 (tests below).

use crate::kernels::depthwise::depthwise_conv2d_nhwc;
use candle_core::quantized::QTensor;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, D,
};
use std::sync::Arc;

/// Copies a precomputed tensor's storage as the result of a custom op (the "re-attach" trick:
/// the value is computed detached by a fast kernel, the op only carries the backward).
fn cpu_copy_of(result: &Tensor) -> Result<(CpuStorage, Shape)> {
    let (storage, layout) = result.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("re-attached result must live on the CPU")
    };
    let copied = match layout.contiguous_offsets() {
        Some((0, end)) if end == cpu_len(cpu) => cpu.clone(),
        _ => {
            drop(storage);
            // a unary op writes a fresh, exactly sized, contiguous buffer
            return cpu_copy_of(&result.affine(1.0, 0.0)?);
        }
    };
    Ok((copied, layout.shape().clone()))
}

fn cpu_len(storage: &CpuStorage) -> usize {
    match storage {
        CpuStorage::F32(v) => v.len(),
        CpuStorage::F64(v) => v.len(),
        CpuStorage::BF16(v) => v.len(),
        CpuStorage::F16(v) => v.len(),
        _ => usize::MAX,
    }
}

/// `rms_norm(x) = x / sqrt(mean(x²) + eps) · w` over the last axis, computed in f32 as
/// transformers' `LlamaRMSNorm` does (the input is upcast, the weight multiplies the result).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x32 = x.to_dtype(compute_dtype(dtype))?;
    let variance = x32.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x32.broadcast_div(&(variance + eps)?.sqrt()?)?;
    normed.to_dtype(dtype)?.broadcast_mul(weight)
}

/// LayerNorm over the last axis (biased variance, as `torch.nn.functional.layer_norm`).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x32 = x.to_dtype(compute_dtype(dtype))?;
    let mean = x32.mean_keepdim(D::Minus1)?;
    let centred = x32.broadcast_sub(&mean)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(variance + eps)?.sqrt()?)?;
    normed
        .to_dtype(dtype)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// Half precision is normalised in f32; f32 and f64 stay as they are.
fn compute_dtype(dtype: DType) -> DType {
    match dtype {
        DType::BF16 | DType::F16 => DType::F32,
        other => other,
    }
}

/// Softmax over the last axis (composed, so it has a backward).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}

/// Log-softmax over the last axis (composed, so it has a backward).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::log_softmax(x, D::Minus1)
}

/// Rotate-half rotary embedding: `x` `[B, H, T, d]`, `cos`/`sin` `[B, 1, T, d/2]` (one row of
/// angles per sample, so left-padded batches get their own positions).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated_1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let rotated_2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[rotated_1, rotated_2], D::Minus1)
}

/// `softmax(q·kᵀ·scale + mask)·v` for `q`, `k`, `v` `[B, H, T, d]` and an additive `mask`
/// broadcastable to `[B, H, T, T]`.
///
/// The graph keeps only `q`, `k`, `v` and the output: the probabilities are recomputed in the
/// backward (dv = pᵀ·g, dp = g·vᵀ, ds = p ⊙ (dp − Σ dp ⊙ p), dq = ds·k·scale, dk = dsᵀ·q·scale),
/// instead of the five `[T, T]` intermediates per head a composed softmax would hold until the
/// end of the backward.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let tracked = q.track_op() || k.track_op() || v.track_op();
    let probs = |q: &Tensor, k: &Tensor| -> Result<Tensor> {
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?;
        softmax(&scores.broadcast_add(mask)?)
    };
    if tracked && !q.device().is_cpu() {
        return probs(q, k)?.matmul(v);
    }
    let out = probs(&q.detach(), &k.detach())?.matmul(&v.detach())?;
    if !tracked {
        return Ok(out);
    }
    q.apply_op3(
        k,
        v,
        AttentionGrad {
            out,
            mask: mask.detach(),
            scale,
        },
    )
}

struct AttentionGrad {
    out: Tensor,
    mask: Tensor,
    scale: f64,
}

impl CustomOp3 for AttentionGrad {
    fn name(&self) -> &'static str {
        "attention-recompute"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_copy_of(&self.out)
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v) = (q.detach(), k.detach(), v.detach());
        let scores = (q.matmul(&k.t()?.contiguous()?)? * self.scale)?;
        let p = softmax(&scores.broadcast_add(&self.mask)?)?;
        let grad = grad.contiguous()?;
        let dv = p.t()?.contiguous()?.matmul(&grad)?;
        let dp = grad.matmul(&v.t()?.contiguous()?)?;
        let row = (&dp * &p)?.sum_keepdim(D::Minus1)?;
        let ds = (p * dp.broadcast_sub(&row)?)?;
        let dq = (ds.matmul(&k)? * self.scale)?;
        let dk = (ds.t()?.contiguous()?.matmul(&q)? * self.scale)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// The weight of a layer that is not trained: dense or GGUF-quantized.
#[derive(Debug, Clone)]
pub enum FrozenWeight {
    /// `[out, in]`.
    Dense(Tensor),
    /// `[out, in]` in GGML blocks (QLoRA): expanded for the product and for the backward.
    Quantized(Arc<QTensor>),
}

impl FrozenWeight {
    fn dense(&self, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
        match self {
            FrozenWeight::Dense(w) => w.to_dtype(dtype),
            FrozenWeight::Quantized(q) => q.dequantize(device)?.to_dtype(dtype),
        }
    }
}

/// `x·Wᵀ` for a frozen `W`: the gradient flows to `x` (`g·W`) but no weight gradient is
/// computed or stored (candle's matmul backward would form both operand gradients).
///
/// `x` is `[rows, in]`. When `x` itself needs no gradient the product is returned detached.
pub fn frozen_linear(x: &Tensor, weight: &FrozenWeight) -> Result<Tensor> {
    let x_detached = x.detach();
    let w = weight.dense(x.dtype(), x.device())?;
    let y = x_detached.matmul(&w.t()?)?;
    if !x.track_op() {
        return Ok(y);
    }
    if !x.device().is_cpu() {
        // no re-attach kernel for other devices: the plain product (correct, computes dW too)
        return x.matmul(&w.detach().t()?);
    }
    x.apply_op1(FrozenLinearGrad { y, weight: w })
}

struct FrozenLinearGrad {
    y: Tensor,
    /// Dense `[out, in]` weight (expanded once per call for quantized bases).
    weight: Tensor,
}

impl CustomOp1 for FrozenLinearGrad {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_copy_of(&self.y)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}

/// Depthwise 7×7 (any odd k) convolution, stride 1, "same" zero padding, channels-last, with a
/// backward for the input, the taps and the bias.
///
/// * `x`: `[N, H, W, C]`, `taps`: `[k, k, C]`, `bias`: `[C]`.
/// * f32 on the CPU runs the inference kernel; other dtypes (f64 in the gradient checks) and
///   devices run a shift-and-add composition.
pub fn depthwise_conv2d(x: &Tensor, taps: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let tracked = x.track_op() || taps.track_op() || bias.track_op();
    let fast = x.device().is_cpu() && x.dtype() == DType::F32;
    let y = if fast {
        depthwise_conv2d_nhwc(&x.detach(), &taps.detach(), &bias.detach())?
    } else {
        depthwise_shift_add(&x.detach(), &taps.detach(), &bias.detach())?
    };
    if !tracked {
        return Ok(y);
    }
    if !x.device().is_cpu() {
        return depthwise_shift_add(x, taps, bias);
    }
    x.apply_op3(taps, bias, DepthwiseGrad { y })
}

/// `Σ_{a,b} pad(x)[:, i+a, j+b, :] · taps[a, b, :] + bias`: slow, differentiable, any dtype.
fn depthwise_shift_add(x: &Tensor, taps: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let k = taps.dim(0)?;
    let pad = k / 2;
    let padded = x.pad_with_zeros(1, pad, pad)?.pad_with_zeros(2, pad, pad)?;
    let mut y = bias.broadcast_as(x.shape())?.contiguous()?;
    for a in 0..k {
        for b in 0..k {
            let window = padded.narrow(1, a, h)?.narrow(2, b, w)?;
            let tap = taps.get(a)?.get(b)?;
            y = (y + window.broadcast_mul(&tap)?)?;
        }
    }
    Ok(y)
}

struct DepthwiseGrad {
    y: Tensor,
}

impl CustomOp3 for DepthwiseGrad {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_copy_of(&self.y)
    }

    fn bwd(
        &self,
        x: &Tensor,
        taps: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, h, w, c) = x.dims4()?;
        let k = taps.dim(0)?;
        let pad = k / 2;
        // dx = the same convolution of the output gradient with the taps flipped in both axes
        let grad_x = x
            .track_op()
            .then(|| {
                let order: Vec<u32> = (0..k as u32).rev().collect();
                let order = Tensor::from_vec(order, k, x.device())?;
                let flipped = taps.index_select(&order, 0)?.index_select(&order, 1)?;
                let zero = bias.zeros_like()?;
                if x.dtype() == DType::F32 {
                    depthwise_conv2d_nhwc(grad, &flipped, &zero)
                } else {
                    depthwise_shift_add(grad, &flipped, &zero)
                }
            })
            .transpose()?;
        // dtaps[a, b, c] = Σ_{n,i,j} pad(x)[n, i+a, j+b, c] · g[n, i, j, c]
        let grad_taps = taps
            .track_op()
            .then(|| {
                let padded = x.pad_with_zeros(1, pad, pad)?.pad_with_zeros(2, pad, pad)?;
                let mut rows = Vec::with_capacity(k * k);
                for a in 0..k {
                    for b in 0..k {
                        let window = padded.narrow(1, a, h)?.narrow(2, b, w)?;
                        rows.push((window * grad)?.reshape(((), c))?.sum(0)?);
                    }
                }
                Tensor::stack(&rows, 0)?.reshape((k, k, c))
            })
            .transpose()?;
        let grad_bias = bias
            .track_op()
            .then(|| grad.reshape(((), c))?.sum(0))
            .transpose()?;
        Ok((grad_x, grad_taps, grad_bias))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Central finite differences of `f` (a scalar function of `var`) in f64, compared with the
    /// gradient backprop gives, element by element.
    fn check_gradient(var: &Var, loss: &dyn Fn() -> Result<Tensor>, what: &str) -> Result<()> {
        let grads = loss()?.backward()?;
        let analytic = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no gradient"))
            .flatten_all()?
            .to_vec1::<f64>()?;
        let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        let eps = 1e-6;
        for (i, &expected) in analytic.iter().enumerate() {
            let mut shifted = base.clone();
            shifted[i] += eps;
            var.set(&Tensor::from_vec(
                shifted.clone(),
                var.shape(),
                var.device(),
            )?)?;
            let plus = loss()?.to_scalar::<f64>()?;
            shifted[i] -= 2.0 * eps;
            var.set(&Tensor::from_vec(shifted, var.shape(), var.device())?)?;
            let minus = loss()?.to_scalar::<f64>()?;
            var.set(&Tensor::from_vec(base.clone(), var.shape(), var.device())?)?;
            let numeric = (plus - minus) / (2.0 * eps);
            assert!(
                (numeric - expected).abs() <= 1e-6 + 1e-6 * expected.abs(),
                "{what}[{i}]: backprop {expected}, finite differences {numeric}"
            );
        }
        Ok(())
    }

    /// A fixed random projection makes every output element matter differently.
    fn weighted_sum(y: &Tensor, seed: u64) -> Result<Tensor> {
        let n = y.elem_count();
        let weights: Vec<f64> = (0..n)
            .map(|i| (((i as u64 + 1) * (seed * 2 + 7919)) % 97) as f64 / 97.0 - 0.5)
            .collect();
        (y.flatten_all()? * Tensor::from_vec(weights, n, y.device())?)?.sum_all()
    }

    fn randn(shape: &[usize]) -> Result<Tensor> {
        Tensor::randn(0f64, 1.0, shape, &Device::Cpu)
    }

    #[test]
    fn depthwise_backward_matches_finite_differences_in_f64() -> Result<()> {
        let x = Var::from_tensor(&randn(&[2, 4, 5, 3])?)?;
        let taps = Var::from_tensor(&randn(&[3, 3, 3])?)?;
        let bias = Var::from_tensor(&randn(&[3])?)?;
        let loss = || {
            weighted_sum(
                &depthwise_conv2d(x.as_tensor(), taps.as_tensor(), bias.as_tensor())?,
                1,
            )
        };
        check_gradient(&x, &loss, "dx")?;
        check_gradient(&taps, &loss, "dtaps")?;
        check_gradient(&bias, &loss, "dbias")
    }

    #[test]
    fn depthwise_fast_forward_equals_the_composition() -> Result<()> {
        let x = Var::from_tensor(&randn(&[1, 9, 8, 5])?.to_dtype(DType::F32)?)?;
        let taps = randn(&[7, 7, 5])?.to_dtype(DType::F32)?;
        let bias = randn(&[5])?.to_dtype(DType::F32)?;
        let fast = depthwise_conv2d(x.as_tensor(), &taps, &bias)?;
        let slow = depthwise_shift_add(x.as_tensor(), &taps, &bias)?;
        let diff = (&fast - &slow)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        // and the f32 backward (kernel for dx) equals the composition's backward
        let g = fast.backward()?.get(x.as_tensor()).unwrap().clone();
        let g_ref = slow.backward()?.get(x.as_tensor()).unwrap().clone();
        let diff = (g - g_ref)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        Ok(())
    }

    #[test]
    fn frozen_linear_backward_matches_finite_differences_in_f64() -> Result<()> {
        let x = Var::from_tensor(&randn(&[3, 4])?)?;
        let w = FrozenWeight::Dense(randn(&[5, 4])?);
        let loss = || weighted_sum(&frozen_linear(x.as_tensor(), &w)?, 2);
        check_gradient(&x, &loss, "dx")
    }

    #[test]
    fn frozen_linear_gives_no_weight_gradient() -> Result<()> {
        let x = Var::from_tensor(&randn(&[3, 4])?)?;
        let w = randn(&[5, 4])?;
        let y = frozen_linear(x.as_tensor(), &FrozenWeight::Dense(w.clone()))?;
        let grads = y.sum_all()?.backward()?;
        assert!(grads.get(&w).is_none());
        let expected = Tensor::ones((3, 5), DType::F64, &Device::Cpu)?.matmul(&w)?;
        let diff = (grads.get(x.as_tensor()).unwrap() - expected)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(diff < 1e-12);
        Ok(())
    }

    #[test]
    fn attention_backward_matches_finite_differences_in_f64() -> Result<()> {
        let q = Var::from_tensor(&randn(&[1, 2, 3, 4])?)?;
        let k = Var::from_tensor(&randn(&[1, 2, 3, 4])?)?;
        let v = Var::from_tensor(&randn(&[1, 2, 3, 4])?)?;
        // causal mask with the most negative value, as the model builds it
        let m = f64::MIN;
        let mask = Tensor::new(&[[0.0, m, m], [0.0, 0.0, m], [0.0, 0.0, 0.0]], &Device::Cpu)?
            .reshape((1, 1, 3, 3))?;
        let loss = || {
            weighted_sum(
                &attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, 0.5)?,
                4,
            )
        };
        check_gradient(&q, &loss, "dq")?;
        check_gradient(&k, &loss, "dk")?;
        check_gradient(&v, &loss, "dv")?;
        // and the value equals the composition
        let composed =
            softmax(&(q.as_tensor().matmul(&k.as_tensor().t()?)? * 0.5)?.broadcast_add(&mask)?)?
                .matmul(v.as_tensor())?;
        let ours = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, 0.5)?;
        let diff = (ours - composed)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12);
        Ok(())
    }

    #[test]
    fn composed_norms_and_rope_match_finite_differences_in_f64() -> Result<()> {
        let x = Var::from_tensor(&randn(&[2, 1, 3, 4])?)?;
        let w = Var::from_tensor(&randn(&[4])?)?;
        let b = Var::from_tensor(&randn(&[4])?)?;
        let cos = randn(&[2, 1, 3, 2])?;
        let sin = randn(&[2, 1, 3, 2])?;
        let loss = || {
            let y = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5)?;
            let y = layer_norm(&y, w.as_tensor(), b.as_tensor(), 1e-5)?;
            weighted_sum(&softmax(&rope(&y, &cos, &sin)?)?, 3)
        };
        check_gradient(&x, &loss, "dx")?;
        check_gradient(&w, &loss, "dw")?;
        check_gradient(&b, &loss, "db")
    }
}
