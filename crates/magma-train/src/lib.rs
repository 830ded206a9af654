//! Fine-tuning Magma (projector, LoRA, QLoRA, full) with gradients equal to the reference.
//!
//! * [`model::TrainModel`]: the differentiable model of `magma-model` set up for a mode,
//!   with gradients accumulated as HF Trainer does.
//! * [`lora`]: PEFT-compatible LoRA (targets, init, key names).
//! * [`optim`]: AdamW, schedules, clipping.
//! * [`data`]: samples and the reference's collation.
//! * [`rng`]: the seeded generator whose state checkpoints store.
//! * [`config`]: `train.toml` and presets; [`trainer`]: the loop, metrics, checkpoints, resume;
//!   [`export`]: PEFT adapter and HF model folders.

pub mod config;
pub mod data;
pub mod error;
pub mod export;
pub mod lora;
pub mod model;
pub mod optim;
pub mod rng;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Result, TrainError};
pub use trainer::Trainer;
