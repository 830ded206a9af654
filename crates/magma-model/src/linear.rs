//! Linear layers behind one small type, so quantized weights can replace dense ones later.

use crate::error::Result;
use crate::kernels::qmatvec;
use crate::weights::Weights;
use candle_core::quantized::QMatMul;
use candle_core::{Module, Tensor};

/// `y = x·Wᵀ + b` over the last axis of `x`, whatever its rank.
///
/// The weight is held as a [`QMatMul`], so dense (`QMatMul::Tensor`) and GGUF-quantized
/// (`QMatMul::QTensor`) weights share one code path. Quantized weights on the CPU are run by
/// [`crate::kernels::qmatvec`] on their stored blocks (candle's own product would keep a second,
/// repacked copy of each weight).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: QMatMul,
    bias: Option<Tensor>,
    out_dim: usize,
    /// Expand a quantized weight to f32 for each product instead of using block dot products.
    expand_quantized: bool,
}

impl Linear {
    /// Loads `{prefix}.weight` of shape `[out_dim, in_dim]` and, if `with_bias`, `{prefix}.bias`.
    pub fn load(
        weights: &Weights,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
    ) -> Result<Self> {
        let weight = weights.linear_weight(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let bias = if with_bias {
            Some(weights.get(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            out_dim,
            expand_quantized: false,
        })
    }

    /// Runs a quantized weight as a dense f32 product: it is expanded for each call and dropped
    /// again, so it is stored quantized but computed like an f32 layer.
    ///
    /// candle's quantized product quantizes every input row and runs one block dot product per
    /// (row, output) pair; on the vision tower's narrow layers (in-dims of 96-384 in small
    /// configs, falling back to Q8_0/Q5_0 blocks) over tens of thousands of rows that is ~9x
    /// slower than expanding the weight and running one GEMM (`magma bench model --quantize`).
    pub fn expanding_quantized(mut self) -> Self {
        self.expand_quantized = true;
        self
    }

    /// A linear layer from a dense `[out, in]` weight (used for reshaped conv kernels).
    pub fn from_dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let out_dim = weight.dim(0)?;
        Ok(Self {
            weight: QMatMul::Tensor(weight),
            bias,
            out_dim,
            expand_quantized: false,
        })
    }

    /// The `[out, in]` weight when it is held dense (not quantized), for fused kernels.
    pub(crate) fn dense_weight(&self) -> Option<&Tensor> {
        match &self.weight {
            QMatMul::Tensor(w) => Some(w),
            _ => None,
        }
    }

    /// Applies the layer to the last axis; leading axes are flattened into one matrix product.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / in_dim.max(1);
        let flat = x.reshape((rows, in_dim))?;
        let mut y = match &self.weight {
            QMatMul::QTensor(q) if self.expand_quantized => {
                let dense = q.dequantize(flat.device())?.to_dtype(flat.dtype())?;
                flat.matmul(&dense.t()?)?
            }
            QMatMul::QTensor(q) => match qmatvec::quantized_matmul(q, &flat)? {
                Some(y) => y,
                None => self.weight.forward(&flat)?,
            },
            weight => weight.forward(&flat)?,
        };
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = self.out_dim;
        }
        y.reshape(out_dims)
    }
}
