//! Processor + model: user text and images in, generated text out.

use crate::config::GenerationConfig;
use crate::error::Result;
use crate::generation::{decode_loop, Generation, GenerationParams, Timings};
use crate::model::{ImageBatch, MagmaModel};
use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use magma_processor::{ProcessedInputs, Processor};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

/// Everything needed to answer a prompt: the processor, the model and the stop ids.
///
/// ```no_run
/// use magma_model::{GenerationParams, MagmaPipeline};
/// use std::ops::ControlFlow;
/// let pipeline = MagmaPipeline::load("Magma-8B".as_ref(), candle_core::DType::F32, &candle_core::Device::Cpu)?;
/// let image = image::open("photo.png").unwrap().to_rgb8();
/// let out = pipeline.generate("<image>\nWhat is in this image?", &[image], None,
///     &GenerationParams::default(), &mut |_id, delta| { print!("{delta}"); ControlFlow::Continue(()) })?;
/// println!("\n{} ({})", out.text, out.finish_reason.as_str());
/// # Ok::<(), magma_model::ModelError>(())
/// ```
#[derive(Debug)]
pub struct MagmaPipeline {
    processor: Processor,
    model: MagmaModel,
    generation_config: GenerationConfig,
}

impl MagmaPipeline {
    /// Loads processor, model and `generation_config.json` from one model folder.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let processor = Processor::from_dir(dir)?;
        let model = MagmaModel::load(dir, dtype, device)?;
        let generation_config =
            GenerationConfig::from_file_or_default(&dir.join("generation_config.json"))?;
        Ok(Self::new(processor, model, generation_config))
    }

    /// Puts already loaded parts together.
    pub fn new(
        processor: Processor,
        model: MagmaModel,
        generation_config: GenerationConfig,
    ) -> Self {
        Self {
            processor,
            model,
            generation_config,
        }
    }

    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    pub fn model(&self) -> &MagmaModel {
        &self.model
    }

    /// Ids that end generation: `generation_config.json`'s eos, else the tokenizer's stop tokens.
    pub fn stop_ids(&self) -> Vec<u32> {
        if self.generation_config.eos_token_ids.is_empty() {
            self.processor.special_tokens().stop.clone()
        } else {
            self.generation_config.eos_token_ids.clone()
        }
    }

    /// Chat-templates `user_text` (with `<image>` placeholders) and generates a reply.
    ///
    /// `on_token(id, text_delta)` is called for every generated token; return
    /// `ControlFlow::Break(())` to cancel.
    pub fn generate(
        &self,
        user_text: &str,
        images: &[RgbImage],
        system: Option<&str>,
        params: &GenerationParams,
        on_token: &mut dyn FnMut(u32, &str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let start = Instant::now();
        let inputs = self.processor.process(user_text, images, system)?;
        let preprocess_ms = start.elapsed().as_secs_f64() * 1e3;
        let mut out = self.generate_from_inputs(&inputs, params, on_token)?;
        out.timings.preprocess_ms = preprocess_ms;
        Ok(out)
    }

    /// Generates from processor output (e.g. when the caller processed the inputs itself).
    pub fn generate_from_inputs(
        &self,
        inputs: &ProcessedInputs,
        params: &GenerationParams,
        on_token: &mut dyn FnMut(u32, &str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let vision_start = Instant::now();
        let images = self.image_batch(inputs)?;
        let features = match &images {
            Some(images) => self.model.image_features(images)?,
            None => Vec::new(),
        };
        let embeds = self.model.merge(&inputs.input_ids, &features)?;
        let vision_ms = vision_start.elapsed().as_secs_f64() * 1e3;
        let outcome = decode_loop(
            &self.model,
            &embeds,
            &inputs.input_ids,
            params,
            &self.stop_ids(),
            &mut |ids| Ok(self.processor.decode(ids)?),
            on_token,
        )?;
        Ok(Generation {
            prompt_ids: inputs.input_ids.clone(),
            generated_ids: outcome.generated_ids,
            text: outcome.text,
            finish_reason: outcome.finish_reason,
            timings: Timings {
                preprocess_ms: 0.0,
                vision_ms,
                prefill_ms: outcome.prefill_ms,
                decode_ms: outcome.decode_ms,
                decode_tokens_per_s: outcome.decode_tokens_per_s,
            },
        })
    }

    /// The processor's pixel values as a tensor on the model's device (None without images).
    pub fn image_batch(&self, inputs: &ProcessedInputs) -> Result<Option<ImageBatch>> {
        if inputs.image_grids.is_empty() {
            return Ok(None);
        }
        let pixels = &inputs.pixel_values;
        let pixel_values =
            Tensor::from_slice(&pixels.data, pixels.shape.to_vec(), self.model.device())?;
        Ok(Some(ImageBatch {
            pixel_values,
            grids: inputs.image_grids.clone(),
        }))
    }
}
