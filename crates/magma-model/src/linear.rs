//! Linear layers behind one small type, so quantized weights can replace dense ones later.

use crate::error::Result;
use crate::weights::Weights;
use candle_core::quantized::QMatMul;
use candle_core::{Module, Tensor};

/// `y = x·Wᵀ + b` over the last axis of `x`, whatever its rank.
///
/// The weight is held as a [`QMatMul`], so dense (`QMatMul::Tensor`) and GGUF-quantized
/// (`QMatMul::QTensor`) weights share one code path.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: QMatMul,
    bias: Option<Tensor>,
    out_dim: usize,
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
        })
    }

    /// A linear layer from a dense `[out, in]` weight (used for reshaped conv kernels).
    pub fn from_dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let out_dim = weight.dim(0)?;
        Ok(Self {
            weight: QMatMul::Tensor(weight),
            bias,
            out_dim,
        })
    }

    /// Applies the layer to the last axis; leading axes are flattened into one matrix product.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / in_dim.max(1);
        let flat = x.reshape((rows, in_dim))?;
        let mut y = self.weight.forward(&flat)?;
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
