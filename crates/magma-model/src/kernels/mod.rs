//! Hand-written CPU kernels for operations candle runs slowly (single-threaded or per-group).
//! Each falls back to plain candle ops on other devices.

pub mod attention;
pub mod depthwise;
#[cfg(feature = "cuda")]
mod depthwise_cuda;
pub mod elementwise;
mod gemm;
pub mod mlp;
pub mod qmatvec;
mod simd;
