//! The in-process runtime as a [`ChatPolicy`].

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use magma_model::{GenerationParams, MagmaPipeline};

use crate::{ChatAnswer, ChatPolicy, ChatRequest, ClientError};

/// A Magma model loaded in this process.
pub struct LocalModel {
    pipeline: MagmaPipeline,
    dir: PathBuf,
}

impl LocalModel {
    /// Loads the model folder in f32 on the CPU.
    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        Self::load_on(dir, DType::F32, &Device::Cpu)
    }

    pub fn load_on(dir: &Path, dtype: DType, device: &Device) -> Result<Self, ClientError> {
        Ok(Self::from_pipeline(
            MagmaPipeline::load(dir, dtype, device)?,
            dir,
        ))
    }

    /// Wraps an already loaded pipeline (e.g. a quantized one).
    pub fn from_pipeline(pipeline: MagmaPipeline, dir: &Path) -> Self {
        Self {
            pipeline,
            dir: dir.to_path_buf(),
        }
    }

    pub fn pipeline(&self) -> &MagmaPipeline {
        &self.pipeline
    }
}

impl ChatPolicy for LocalModel {
    fn answer(&mut self, request: &ChatRequest) -> Result<ChatAnswer, ClientError> {
        request.check_placeholders()?;
        let start = Instant::now();
        let params = GenerationParams {
            max_new_tokens: request.max_new_tokens,
            temperature: request.temperature,
            seed: request.seed,
            ..Default::default()
        };
        let generation = self.pipeline.generate(
            &request.text,
            &request.images,
            request.system.as_deref(),
            &params,
            &mut |_, _| ControlFlow::Continue(()),
        )?;
        Ok(ChatAnswer {
            text: generation.text,
            finish_reason: generation.finish_reason.as_str().to_string(),
            elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn describe(&self) -> String {
        format!("local:{}", self.dir.display())
    }
}
