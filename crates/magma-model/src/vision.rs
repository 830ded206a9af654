//! ConvNeXt trunk (open_clip / timm layout), computed channels-last.
//!
//! The whole trunk runs on `[N, H, W, C]` tensors: strided "patch" convolutions (stem 4x4, downsample
//! 2x2) become a reshape plus one matrix product, the depthwise 7x7 conv is a dedicated kernel, and
//! the per-pixel LayerNorm/MLP of each block need no transposes.

use crate::error::{ModelError, Result};
use crate::kernels::depthwise::depthwise_conv2d_nhwc;
use crate::kernels::elementwise::{bias_gelu, scaled_residual};
use crate::kernels::mlp::{convnext_mlp, MlpWeights};
use crate::linear::Linear;
use crate::weights::Weights;
use candle_core::{DType, Tensor};

/// Prefix of the trunk's tensors in a Magma checkpoint.
pub const TRUNK_PREFIX: &str = "vision_tower.clip_vision_model.trunk";
/// timm `convnext_xxlarge` (and Magma-8B) LayerNorm epsilon.
const LAYER_NORM_EPS: f64 = 1e-5;
const STEM_PATCH: usize = 4;
const DOWNSAMPLE_PATCH: usize = 2;
const DEPTHWISE_KERNEL: usize = 7;
const MLP_RATIO: usize = 4;
/// Widest stage that runs its MLP through the tiled kernel. Measured on 2 AVX2 cores
/// (fc1+fc2 per block, 4 crops): C = 96: 115 → 88 ms, C = 192: 112 → 85 ms, C = 384: a wash,
/// C = 768: 87 → 94 ms (there the whole-matrix products are already efficient).
const FUSED_MLP_MAX_DIM: usize = 192;

/// Blocks per stage and channels per stage; not in `config.json`, so read from the weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkGeometry {
    pub depths: Vec<usize>,
    pub dims: Vec<usize>,
}

impl TrunkGeometry {
    /// ConvNeXt-XXLarge, the tower of Magma-8B.
    pub fn convnext_xxlarge() -> Self {
        Self {
            depths: vec![3, 4, 30, 3],
            dims: vec![384, 768, 1536, 3072],
        }
    }

    /// Counts `stages.S.blocks.B` entries and reads each stage's width from its first block's norm.
    pub fn infer(weights: &Weights) -> Result<Self> {
        let mut geometry = Self {
            depths: Vec::new(),
            dims: Vec::new(),
        };
        for stage in 0.. {
            let block = |b: usize| format!("{TRUNK_PREFIX}.stages.{stage}.blocks.{b}.norm.weight");
            if !weights.contains(&block(0)) {
                break;
            }
            let depth = (0..).take_while(|&b| weights.contains(&block(b))).count();
            let shape = weights.shape_of(&block(0))?;
            let dim = match shape.as_slice() {
                [dim] => *dim,
                _ => {
                    return Err(ModelError::ShapeMismatch {
                        name: block(0),
                        expected: vec![0],
                        found: shape,
                    })
                }
            };
            geometry.depths.push(depth);
            geometry.dims.push(dim);
        }
        if geometry.dims.is_empty() {
            return Err(ModelError::MissingTensor {
                name: format!("{TRUNK_PREFIX}.stages.0.blocks.0.norm.weight"),
            });
        }
        Ok(geometry)
    }

    /// Output stride of the trunk (4 for the stem, 2 per later stage).
    pub fn stride(&self) -> usize {
        STEM_PATCH << self.dims.len().saturating_sub(1)
    }
}

/// LayerNorm over the channel (last) axis.
#[derive(Debug, Clone)]
struct ChannelNorm {
    weight: Tensor,
    bias: Tensor,
}

impl ChannelNorm {
    fn load(weights: &Weights, prefix: &str, dim: usize) -> Result<Self> {
        Ok(Self {
            weight: weights.get(&format!("{prefix}.weight"), &[dim])?,
            bias: weights.get(&format!("{prefix}.bias"), &[dim])?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, LAYER_NORM_EPS as f32)
    }
}

/// A convolution whose kernel equals its stride, as a matrix product over flattened patches.
#[derive(Debug, Clone)]
struct PatchConv {
    linear: Linear,
    patch: usize,
}

impl PatchConv {
    fn load(
        weights: &Weights,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        patch: usize,
    ) -> Result<Self> {
        let weight = weights.get(&format!("{prefix}.weight"), &[c_out, c_in, patch, patch])?;
        let bias = weights.get(&format!("{prefix}.bias"), &[c_out])?;
        // [out, in, ky, kx] -> [out, ky, kx, in] to match channels-last patches
        let weight = weight
            .permute((0, 2, 3, 1))?
            .reshape((c_out, patch * patch * c_in))?
            .contiguous()?;
        Ok(Self {
            linear: Linear::from_dense(weight, Some(bias))?,
            patch,
        })
    }

    /// `[N, H, W, C]` -> `[N, H/p, W/p, C_out]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let p = self.patch;
        let patches = x
            .reshape((n, h / p, p, w / p, p, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((n, h / p, w / p, p * p * c))?;
        self.linear.forward(&patches)
    }
}

#[derive(Debug, Clone)]
struct Block {
    dw_taps: Tensor,
    dw_bias: Tensor,
    norm: ChannelNorm,
    fc1: Linear,
    fc1_bias: Tensor,
    fc2: Linear,
    /// `[2, C]`: fc2 bias, then the layer scale (fused into one kernel with the residual add).
    fc2_bias_and_scale: Tensor,
}

impl Block {
    fn load(weights: &Weights, prefix: &str, dim: usize) -> Result<Self> {
        let k = DEPTHWISE_KERNEL;
        let hidden = MLP_RATIO * dim;
        let dw = weights.get(&format!("{prefix}.conv_dw.weight"), &[dim, 1, k, k])?;
        let dw_taps = dw
            .reshape((dim, k * k))?
            .t()?
            .reshape((k, k, dim))?
            .contiguous()?;
        // Magma-8B stores the layer scale as `gamma`; `weight` is accepted because stock
        // transformers' loader renames it so (see the "gamma" quirk in the spec).
        let layer_scale = weights.get_alias(
            &[&format!("{prefix}.gamma"), &format!("{prefix}.weight")],
            &[dim],
        )?;
        let fc2_bias = weights.get(&format!("{prefix}.mlp.fc2.bias"), &[dim])?;
        Ok(Self {
            dw_taps,
            dw_bias: weights.get(&format!("{prefix}.conv_dw.bias"), &[dim])?,
            norm: ChannelNorm::load(weights, &format!("{prefix}.norm"), dim)?,
            fc1: Linear::load(weights, &format!("{prefix}.mlp.fc1"), dim, hidden, false)?
                .expanding_quantized(),
            fc1_bias: weights.get(&format!("{prefix}.mlp.fc1.bias"), &[hidden])?,
            fc2: Linear::load(weights, &format!("{prefix}.mlp.fc2"), hidden, dim, false)?
                .expanding_quantized(),
            fc2_bias_and_scale: Tensor::stack(&[fc2_bias, layer_scale], 0)?,
        })
    }

    /// The MLP weights for the tiled CPU kernel, where it is the faster path: dense f32 on the
    /// CPU, and narrow stages only (C ≤ [`FUSED_MLP_MAX_DIM`]).
    fn fused_mlp_weights<'a>(&'a self, y: &Tensor) -> Option<MlpWeights<'a>> {
        let (fc1, fc2) = (self.fc1.dense_weight()?, self.fc2.dense_weight()?);
        let dim = fc2.dim(0).ok()?;
        let fits = y.device().is_cpu()
            && y.dtype() == DType::F32
            && fc1.dtype() == DType::F32
            && dim <= FUSED_MLP_MAX_DIM;
        fits.then_some(MlpWeights {
            fc1,
            fc1_bias: &self.fc1_bias,
            fc2,
            fc2_bias_and_scale: &self.fc2_bias_and_scale,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = depthwise_conv2d_nhwc(x, &self.dw_taps, &self.dw_bias)?;
        let y = self.norm.forward(&y)?;
        if let Some(weights) = self.fused_mlp_weights(&y) {
            return convnext_mlp(&y, &weights, x);
        }
        let y = bias_gelu(self.fc1.forward(&y)?, &self.fc1_bias)?;
        let y = self.fc2.forward(&y)?;
        scaled_residual(y, &self.fc2_bias_and_scale, x)
    }
}

#[derive(Debug, Clone)]
struct Stage {
    downsample: Option<(ChannelNorm, PatchConv)>,
    blocks: Vec<Block>,
}

/// The ConvNeXt trunk: stem, then stages; no final norm, no pooling (Magma's `clip_vis_dense`).
#[derive(Debug, Clone)]
pub struct ConvNextTrunk {
    stem: PatchConv,
    stem_norm: ChannelNorm,
    stages: Vec<Stage>,
    geometry: TrunkGeometry,
}

impl ConvNextTrunk {
    /// Loads the trunk with the given geometry from `vision_tower.clip_vision_model.trunk.*`.
    pub fn load(weights: &Weights, geometry: TrunkGeometry) -> Result<Self> {
        let p = TRUNK_PREFIX;
        let first_dim = geometry.dims.first().copied().unwrap_or(0);
        let stem = PatchConv::load(weights, &format!("{p}.stem.0"), 3, first_dim, STEM_PATCH)?;
        let stem_norm = ChannelNorm::load(weights, &format!("{p}.stem.1"), first_dim)?;
        let mut stages = Vec::with_capacity(geometry.dims.len());
        for (s, (&depth, &dim)) in geometry.depths.iter().zip(&geometry.dims).enumerate() {
            let prefix = format!("{p}.stages.{s}");
            let downsample = match s.checked_sub(1).and_then(|i| geometry.dims.get(i)) {
                Some(&c_in) => Some((
                    ChannelNorm::load(weights, &format!("{prefix}.downsample.0"), c_in)?,
                    PatchConv::load(
                        weights,
                        &format!("{prefix}.downsample.1"),
                        c_in,
                        dim,
                        DOWNSAMPLE_PATCH,
                    )?,
                )),
                None => None,
            };
            let blocks = (0..depth)
                .map(|b| Block::load(weights, &format!("{prefix}.blocks.{b}"), dim))
                .collect::<Result<Vec<_>>>()?;
            stages.push(Stage { downsample, blocks });
        }
        Ok(Self {
            stem,
            stem_norm,
            stages,
            geometry,
        })
    }

    /// The trunk's geometry.
    pub fn geometry(&self) -> &TrunkGeometry {
        &self.geometry
    }

    /// `pixels` `[N, 3, H, W]` (H, W multiples of the stride) -> features `[N, H/32, W/32, C]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = pixels.dims4()?;
        let stride = self.geometry.stride();
        if c != 3 || h % stride != 0 || w % stride != 0 || h == 0 || w == 0 {
            return Err(ModelError::InvalidImages(format!(
                "vision tower input {:?}: need 3 channels and sides that are non-zero multiples of {stride}",
                pixels.dims()
            )));
        }
        let x = pixels.permute((0, 2, 3, 1))?.contiguous()?;
        let mut x = self.stem_norm.forward(&self.stem.forward(&x)?)?;
        for stage in &self.stages {
            if let Some((norm, conv)) = &stage.downsample {
                x = conv.forward(&norm.forward(&x)?)?;
            }
            for block in &stage.blocks {
                x = block.forward(&x)?;
            }
        }
        Ok(x)
    }
}
