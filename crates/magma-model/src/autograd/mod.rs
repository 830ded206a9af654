//! The training path: differentiable ops and a differentiable Magma forward.
//!
//! The inference model (`model.rs`, `llama.rs`, `vision.rs`) runs fused kernels that record no
//! backward; [`TrainableMagma`] computes the same function with ops that do, so
//! `magma-train` can take gradients of every parameter (see `docs/training.md`).

pub mod model;
pub mod ops;

pub use model::{
    LoraInit, LossOutput, MergedLayout, Param, RandomSource, TrainBatch, TrainSpec, TrainableMagma,
    IGNORE_INDEX,
};
