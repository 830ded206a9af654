//! Magma model runtime on candle.
//!
//! * [`MagmaModel`]: ConvNeXt vision tower, `mlpNx_gelu` projector with row separators, the
//!   anyres `crop`/`global` arrangement, the merge of image features at `<image>` tokens, and a
//!   LLaMA decoder with KV cache — loaded from a Hugging Face style folder of safetensors.
//! * [`generation`]: greedy / sampled decoding with a streaming callback.
//! * [`MagmaPipeline`]: processor + model, text and images in, text out.
//! * [`hub`]: resolves `--model` (a folder or a hub id in the local Hugging Face cache).

pub mod adapter;
pub mod autograd;
pub mod batch;
pub mod config;
pub mod device;
pub mod embedding;
pub mod error;
pub mod generation;
pub mod hub;
pub mod kernels;
pub mod linear;
pub mod llama;
pub mod model;
pub mod pipeline;
pub mod projector;
pub mod quant;
pub mod random;
pub mod vision;
pub mod weights;

pub use config::{AnyresStrategy, GenerationConfig, MagmaConfig, TextConfig, VisionConfig};
pub use error::{ModelError, Result};
pub use generation::{FinishReason, Generation, GenerationParams, Timings};
pub use llama::Cache;
pub use model::{ImageBatch, ImageFeatureTrace, MagmaModel};
pub use pipeline::MagmaPipeline;
pub use vision::TrunkGeometry;
pub use weights::Weights;
