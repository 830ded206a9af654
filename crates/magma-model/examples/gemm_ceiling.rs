//! f32 GEMM throughput of candle (the `gemm` crate) on every product shape of the bench-small
//! vision tower and prefill, to put the model's timings against the machine's ceiling.
//! Run beside PyTorch on the same shapes, in one quiet run:
//!
//! ```sh
//! cargo run --release -p magma-model --example gemm_ceiling
//! python3 crates/magma-model/examples/gemm_ceiling_torch.py
//! ```

use candle_core::{Device, Tensor};
use std::time::Instant;

/// (rows, in, out) of `x[rows, in] · w[out, in]ᵀ`: the ConvNeXt MLPs over 4 crops (stages 1-4)
/// and the decoder's projections over the 1117-token prefill.
const SHAPES: [(usize, usize, usize); 10] = [
    (65536, 96, 384),
    (65536, 384, 96),
    (16384, 192, 768),
    (16384, 768, 192),
    (4096, 384, 1536),
    (4096, 1536, 384),
    (1024, 768, 3072),
    (1024, 3072, 768),
    (1117, 768, 3072),
    (1117, 3072, 768),
];

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for (m, k, n) in SHAPES {
        let x = Tensor::randn(0f32, 1., (m, k), &dev)?;
        let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
        x.matmul(&w.t()?)?; // warm-up
        let reps = 5;
        let start = Instant::now();
        for _ in 0..reps {
            x.matmul(&w.t()?)?;
        }
        let secs = start.elapsed().as_secs_f64() / reps as f64;
        let gflops = 2.0 * (m * k * n) as f64 / secs / 1e9;
        println!(
            "candle [{m}x{k}]·[{n}x{k}]ᵀ: {:.1} ms, {gflops:.1} GFLOP/s",
            secs * 1e3
        );
    }
    Ok(())
}
