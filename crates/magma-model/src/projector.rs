//! Multimodal projector (`mlpNx_gelu`) and the arrangement of projected features into tokens.

use crate::error::{ModelError, Result};
use crate::linear::Linear;
use crate::weights::Weights;
use candle_core::Tensor;

const PREFIX: &str = "multi_modal_projector";

/// `N` linear layers with exact-erf GELU between them, plus the learned row separator.
#[derive(Debug, Clone)]
pub struct Projector {
    layers: Vec<Linear>,
    /// `[hidden]`, appended after every feature row (`row_seperator`, sic, in the checkpoint).
    row_separator: Tensor,
}

impl Projector {
    /// Loads `multi_modal_projector.proj.{0,2,4,…}` and `multi_modal_projector.row_seperator`.
    pub fn load(weights: &Weights, depth: usize, vision_dim: usize, hidden: usize) -> Result<Self> {
        let layers = (0..depth)
            .map(|i| {
                let in_dim = if i == 0 { vision_dim } else { hidden };
                // odd indices of the reference's nn.Sequential are the GELUs
                Linear::load(
                    weights,
                    &format!("{PREFIX}.proj.{}", 2 * i),
                    in_dim,
                    hidden,
                    true,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let row_separator = weights
            .get(&format!("{PREFIX}.row_seperator"), &[1, 1, hidden])?
            .flatten_all()?;
        Ok(Self {
            layers,
            row_separator,
        })
    }

    /// Channels-last features `[…, C_vis]` -> `[…, hidden]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                x = x.gelu_erf()?;
            }
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    /// A feature canvas `[rows, cols, hidden]` -> `[rows · (cols + 1), hidden]`, with the row
    /// separator after every row (the last one too, as in the reference).
    pub fn append_row_separators(&self, canvas: &Tensor) -> candle_core::Result<Tensor> {
        let (rows, cols, hidden) = canvas.dims3()?;
        let separators = self
            .row_separator
            .to_dtype(canvas.dtype())?
            .reshape((1, 1, hidden))?
            .broadcast_as((rows, 1, hidden))?;
        Tensor::cat(&[canvas, &separators], 1)?.reshape((rows * (cols + 1), hidden))
    }
}

/// Tiles one image's projected crops `[rows·cols, h, w, D]` (row-major) into `[rows·h, cols·w, D]`.
pub fn tile_crops(crops: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
    let (n, h, w, d) = crops.dims4()?;
    if n != rows * cols {
        return Err(ModelError::InvalidImages(format!(
            "{n} crop feature maps for a {rows}x{cols} grid"
        )));
    }
    Ok(crops
        .reshape((rows, cols, h, w, d))?
        .permute((0, 2, 1, 3, 4))?
        .contiguous()?
        .reshape((rows * h, cols * w, d))?)
}

/// Stitches one image's crops `[rows·cols, 3, b, b]` back into one picture `[1, 3, rows·b, cols·b]`.
pub fn stitch_crops(crops: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
    let (n, c, h, w) = crops.dims4()?;
    if n != rows * cols {
        return Err(ModelError::InvalidImages(format!(
            "{n} crops for a {rows}x{cols} grid"
        )));
    }
    Ok(crops
        .reshape((rows, cols, c, h, w))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()?
        .reshape((1, c, rows * h, cols * w))?)
}

/// Number of feature vectors an image contributes: `(rows·h) · (cols·w + 1)`.
///
/// ```
/// // Magma-8B: 512-px crops, 16x16 features per crop; a 2x2 grid gives 32 rows of 33 vectors
/// assert_eq!(magma_model::projector::feature_len(2, 2, 16, 16), 1056);
/// ```
pub fn feature_len(rows: usize, cols: usize, crop_h: usize, crop_w: usize) -> usize {
    rows * crop_h * (cols * crop_w + 1)
}
