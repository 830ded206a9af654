//! `MagmaForCausalLM`: vision tower + projector + LLaMA decoder, and the merge of image features.

use crate::config::{AnyresStrategy, MagmaConfig};
use crate::error::{ModelError, Result};
use crate::llama::{Cache, LlamaDecoder};
use crate::projector::{stitch_crops, tile_crops, Projector};
use crate::vision::{ConvNextTrunk, TrunkGeometry};
use crate::weights::Weights;
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// Images of one prompt, as the processor hands them over.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// `[total_crops, 3, base, base]`: every image's crops, row-major per image, images in order.
    pub pixel_values: Tensor,
    /// `(rows, cols)` crop grid of each image.
    pub grids: Vec<(usize, usize)>,
}

/// Stage-by-stage results of the image path (for parity checks and debugging).
#[derive(Debug, Clone)]
pub struct ImageFeatureTrace {
    /// Tower input per tower call: the crops (`crop`) or each stitched image (`global`), NCHW.
    pub tower_inputs: Vec<Tensor>,
    /// Tower output per tower call, channels-last `[n, h, w, C]`.
    pub vision_features: Vec<Tensor>,
    /// Projector output per tower call, `[n, h, w, hidden]`.
    pub projector_outputs: Vec<Tensor>,
    /// Final feature sequence per image, `[feature_len, hidden]`, separators included.
    pub image_features: Vec<Tensor>,
}

/// A loaded Magma model.
///
/// ```no_run
/// use magma_model::MagmaModel;
/// let model = MagmaModel::load("path/to/Magma-8B".as_ref(), candle_core::DType::F32, &candle_core::Device::Cpu)?;
/// let mut cache = model.new_cache();
/// let embeds = model.embed_prompt(&[128000, 128000, 9906], None)?;
/// let logits = model.forward(&embeds, &mut cache, true)?; // [1, 1, vocab], f32
/// # Ok::<(), magma_model::ModelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MagmaModel {
    config: MagmaConfig,
    tower: ConvNextTrunk,
    projector: Projector,
    pub(crate) decoder: LlamaDecoder,
    device: Device,
    dtype: DType,
}

impl MagmaModel {
    /// Loads `config.json` and the safetensors weights of a model folder.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config = MagmaConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::from_dir(dir, dtype, device)?;
        let geometry = TrunkGeometry::infer(&weights)?;
        Self::from_weights(config, &weights, geometry)
    }

    /// Builds the model from any weight store (e.g. [`Weights::random`] for benches).
    pub fn from_weights(
        config: MagmaConfig,
        weights: &Weights,
        geometry: TrunkGeometry,
    ) -> Result<Self> {
        let vision_dim = geometry.dims.last().copied().unwrap_or(0);
        if vision_dim != config.vision.mm_hidden_size {
            return Err(ModelError::Config {
                path: "config.json".into(),
                message: format!(
                    "vision_config.mm_hidden_size {} differs from the last ConvNeXt width {vision_dim} in the weights",
                    config.vision.mm_hidden_size
                ),
            });
        }
        let tower = ConvNextTrunk::load(weights, geometry)?;
        let projector = Projector::load(
            weights,
            config.projector_depth,
            vision_dim,
            config.text.hidden_size,
        )?;
        let decoder = LlamaDecoder::load(weights, &config.text)?;
        Ok(Self {
            config,
            tower,
            projector,
            decoder,
            device: weights.device().clone(),
            dtype: weights.dtype(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &MagmaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of the weights and activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The ConvNeXt geometry in use.
    pub fn trunk_geometry(&self) -> &TrunkGeometry {
        self.tower.geometry()
    }

    /// A fresh, empty KV cache.
    pub fn new_cache(&self) -> Cache {
        self.decoder.new_cache()
    }

    /// Vision tower: `[n, 3, H, W]` -> channels-last `[n, H/32, W/32, C]`.
    pub fn vision_tower(&self, pixels: &Tensor) -> Result<Tensor> {
        self.tower.forward(&pixels.to_dtype(self.dtype)?)
    }

    /// Feature sequences of every image, with the intermediate tensors of each stage.
    pub fn image_features_traced(&self, images: &ImageBatch) -> Result<ImageFeatureTrace> {
        let (total_crops, _, _, _) = images.pixel_values.dims4()?;
        let needed: usize = images.grids.iter().map(|(r, c)| r * c).sum();
        if images.grids.iter().any(|&(r, c)| r == 0 || c == 0) || needed > total_crops {
            return Err(ModelError::InvalidImages(format!(
                "grids {:?} need {needed} crops, pixel_values has {total_crops}",
                images.grids
            )));
        }
        let mut trace = ImageFeatureTrace {
            tower_inputs: Vec::new(),
            vision_features: Vec::new(),
            projector_outputs: Vec::new(),
            image_features: Vec::new(),
        };
        match self.config.strategy {
            AnyresStrategy::Crop => {
                // all crops of all images in one tower batch, as the reference does
                let crops = images.pixel_values.narrow(0, 0, needed)?;
                let features = self.vision_tower(&crops)?;
                let projected = self.projector.forward(&features)?;
                let mut offset = 0;
                for &(rows, cols) in &images.grids {
                    let own = projected.narrow(0, offset, rows * cols)?;
                    offset += rows * cols;
                    let canvas = tile_crops(&own, rows, cols)?;
                    trace
                        .image_features
                        .push(self.projector.append_row_separators(&canvas)?);
                }
                trace.tower_inputs.push(crops);
                trace.vision_features.push(features);
                trace.projector_outputs.push(projected);
            }
            AnyresStrategy::Global => {
                let mut offset = 0;
                for &(rows, cols) in &images.grids {
                    let own = images.pixel_values.narrow(0, offset, rows * cols)?;
                    offset += rows * cols;
                    let picture = stitch_crops(&own, rows, cols)?;
                    let features = self.vision_tower(&picture)?;
                    let projected = self.projector.forward(&features)?;
                    let canvas = projected.squeeze(0)?;
                    trace
                        .image_features
                        .push(self.projector.append_row_separators(&canvas)?);
                    trace.tower_inputs.push(picture);
                    trace.vision_features.push(features);
                    trace.projector_outputs.push(projected);
                }
            }
        }
        Ok(trace)
    }

    /// Feature sequence `[feature_len, hidden]` of every image, in order.
    pub fn image_features(&self, images: &ImageBatch) -> Result<Vec<Tensor>> {
        Ok(self.image_features_traced(images)?.image_features)
    }

    /// The decoder input `[1, L', hidden]`: token embeddings with the k-th `<image>` token replaced
    /// by the k-th image's feature sequence.
    pub fn embed_prompt(&self, input_ids: &[u32], images: Option<&ImageBatch>) -> Result<Tensor> {
        let features = match images {
            Some(images) => self.image_features(images)?,
            None => Vec::new(),
        };
        self.merge(input_ids, &features)
    }

    /// Merges precomputed image feature sequences into the token embeddings of `input_ids`.
    pub fn merge(&self, input_ids: &[u32], image_features: &[Tensor]) -> Result<Tensor> {
        let image_token = self.config.image_token_index;
        let image_positions: Vec<usize> = input_ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| id == image_token)
            .map(|(i, _)| i)
            .collect();
        if image_positions.len() != image_features.len() {
            return Err(ModelError::ImageCountMismatch {
                tokens: image_positions.len(),
                images: image_features.len(),
            });
        }
        if input_ids.is_empty() {
            return Err(ModelError::InvalidParams("empty prompt".into()));
        }
        // the reference embeds `<image>` positions as id 0 before overwriting them
        let ids: Vec<u32> = input_ids
            .iter()
            .map(|&id| if id == image_token { 0 } else { id })
            .collect();
        let text = self.decoder.embed(&ids)?;
        let merged_len = input_ids.len() - image_features.len()
            + image_features
                .iter()
                .map(|f| f.dim(0))
                .sum::<candle_core::Result<usize>>()?;
        let max = self.config.text.max_position_embeddings;
        if merged_len > max {
            return Err(ModelError::PromptTooLong {
                len: merged_len,
                max,
            });
        }
        let mut pieces = Vec::with_capacity(2 * image_features.len() + 1);
        let mut start = 0;
        for (&pos, features) in image_positions.iter().zip(image_features) {
            if pos > start {
                pieces.push(text.narrow(0, start, pos - start)?);
            }
            pieces.push(features.to_dtype(self.dtype)?);
            start = pos + 1;
        }
        if start < input_ids.len() {
            pieces.push(text.narrow(0, start, input_ids.len() - start)?);
        }
        Ok(Tensor::cat(&pieces, 0)?.unsqueeze(0)?)
    }

    /// Runs the decoder on `[1, len, hidden]` embeddings at positions `cache.len()..`.
    ///
    /// Returns f32 logits for every position, or for the last one only when `last_only`.
    pub fn forward(&self, embeds: &Tensor, cache: &mut Cache, last_only: bool) -> Result<Tensor> {
        self.decoder.forward(embeds, cache, last_only)
    }

    /// Embeds plain token ids (no images), e.g. the token just generated.
    pub fn embed_tokens(&self, ids: &[u32]) -> Result<Tensor> {
        Ok(self.decoder.embed(ids)?.unsqueeze(0)?)
    }
}
