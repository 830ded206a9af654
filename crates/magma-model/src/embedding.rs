//! Token embedding tables, looked up row by row in their stored dtype.
//!
//! The LLaMA-3 table is 128256 × 4096: 2.1 GB in f32 but 1.05 GB as stored in the bf16
//! checkpoint. A lookup is a gather, not a product, so quantized runs keep the table as stored and
//! convert only the gathered rows to the activation dtype.

use crate::error::{ModelError, Result};
use crate::weights::Weights;
use candle_core::{DType, Tensor};

/// A `[vocab, hidden]` embedding table.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use magma_model::embedding::Embedding;
/// let table = Tensor::new(&[[0f32, 1.0], [2.0, 3.0], [4.0, 5.0]], &Device::Cpu)?
///     .to_dtype(DType::BF16)?;
/// let embedding = Embedding::new(table, DType::F32);
/// let rows = embedding.lookup(&[2, 0])?;
/// assert_eq!(rows.dtype(), DType::F32);
/// assert_eq!(rows.to_vec2::<f32>()?, [[4.0, 5.0], [0.0, 1.0]]);
/// # Ok::<(), magma_model::ModelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Embedding {
    /// The table in its storage dtype.
    table: Tensor,
    /// The dtype looked-up rows are returned in.
    dtype: DType,
}

impl Embedding {
    /// A table stored as `table` whose rows are handed out as `dtype`.
    pub fn new(table: Tensor, dtype: DType) -> Self {
        Self { table, dtype }
    }

    /// Loads `name` of shape `shape`; see [`Weights::embedding_table`] for the stored dtype.
    pub fn load(weights: &Weights, name: &str, shape: &[usize]) -> Result<Self> {
        Ok(Self::new(
            weights.embedding_table(name, shape)?,
            weights.dtype(),
        ))
    }

    /// The rows of `ids` as `[ids.len(), hidden]`; every id must be below the table's length.
    pub fn lookup(&self, ids: &[u32]) -> Result<Tensor> {
        let vocab = self.table.dim(0)?;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ModelError::InvalidParams(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        let ids = Tensor::new(ids, self.table.device())?;
        Ok(self.table.index_select(&ids, 0)?.to_dtype(self.dtype)?)
    }

    /// The whole table in the activation dtype (for an LM head tied to the embeddings).
    pub fn table(&self) -> Result<Tensor> {
        Ok(self.table.to_dtype(self.dtype)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn an_id_past_the_table_names_itself_and_the_vocabulary() -> Result<()> {
        let table = Tensor::zeros((3, 2), DType::BF16, &Device::Cpu)?;
        let err = Embedding::new(table, DType::F32)
            .lookup(&[1, 3])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("token id 3") && err.contains("size 3"),
            "{err}"
        );
        Ok(())
    }
}
