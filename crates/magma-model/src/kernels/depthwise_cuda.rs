//! CUDA forward pass of the channels-last depthwise convolution ([`super::depthwise`]).
//!
//! candle's `conv2d(groups = C)` launches one convolution per channel (1536 launches for one
//! ConvNeXt-XXLarge layer). This is one launch: each thread owns one channel of a strip of
//! [`STRIP`] neighbouring output pixels in a row, keeps the `STRIP + k - 1` input pixels of each
//! tap row in registers, and accumulates in f32 in the same tap order as the CPU kernel. Threads
//! of a warp take neighbouring channels, so every global load is coalesced (channels innermost).
//!
//! The CUDA C source is compiled at run time with NVRTC (through candle's cudarc), once per
//! kernel size, and the PTX is cached; f32, bf16 and f16 are supported natively (bf16/f16 are
//! converted with bit operations and PTX `cvt`, so NVRTC needs no CUDA headers).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaDevice, CudaStorage, Layout, Result, Shape};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Output pixels per thread along a row.
const STRIP: usize = 8;
const THREADS_PER_BLOCK: u32 = 256;

/// `KSIZE` (the odd kernel size) and `STRIP` are prepended as `#define`s.
const SOURCE: &str = r#"
#define PAD (KSIZE / 2)
#define WINDOW (STRIP + KSIZE - 1)

__device__ __forceinline__ float load_f32(const float* p, size_t i) { return p[i]; }
__device__ __forceinline__ void store_f32(float* p, size_t i, float v) { p[i] = v; }

__device__ __forceinline__ float load_bf16(const unsigned short* p, size_t i) {
    return __uint_as_float(((unsigned int)p[i]) << 16);
}
__device__ __forceinline__ void store_bf16(unsigned short* p, size_t i, float v) {
    unsigned int bits = __float_as_uint(v);
    if ((bits & 0x7fffffffu) > 0x7f800000u) { p[i] = 0x7fc0; return; }  /* NaN stays NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u);                               /* round half to even */
    p[i] = (unsigned short)(bits >> 16);
}

__device__ __forceinline__ float load_f16(const unsigned short* p, size_t i) {
    float v;
    asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(p[i]));
    return v;
}
__device__ __forceinline__ void store_f16(unsigned short* p, size_t i, float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    p[i] = h;
}

#define DEPTHWISE_KERNEL(NAME, T, LOAD, STORE)                                                    \
extern "C" __global__ void NAME(const T* __restrict__ input, const T* __restrict__ taps,        \
                                const T* __restrict__ bias, T* __restrict__ output,             \
                                int batch, int height, int width, int channels) {               \
    const int strips = (width + STRIP - 1) / STRIP;                                             \
    const size_t total = (size_t)batch * height * strips * channels;                            \
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;               \
         idx += (size_t)gridDim.x * blockDim.x) {                                               \
        const int c = (int)(idx % channels);                                                    \
        size_t rest = idx / channels;                                                           \
        const int x0 = (int)(rest % strips) * STRIP;                                            \
        rest /= strips;                                                                         \
        const int y = (int)(rest % height);                                                     \
        const size_t b = rest / height;                                                         \
        float acc[STRIP];                                                                       \
        const float b0 = LOAD(bias, c);                                                         \
        for (int i = 0; i < STRIP; ++i) acc[i] = b0;                                            \
        for (int ky = 0; ky < KSIZE; ++ky) {                                                    \
            const int iy = y + ky - PAD;                                                        \
            if (iy < 0 || iy >= height) continue;                                               \
            const size_t row = (b * height + iy) * (size_t)width;                               \
            float window[WINDOW];                                                               \
            for (int j = 0; j < WINDOW; ++j) {                                                  \
                const int ix = x0 + j - PAD;                                                    \
                window[j] = (ix >= 0 && ix < width) ? LOAD(input, (row + ix) * channels + c)    \
                                                    : 0.0f;                                     \
            }                                                                                   \
            for (int kx = 0; kx < KSIZE; ++kx) {                                                \
                const float tap = LOAD(taps, (size_t)(ky * KSIZE + kx) * channels + c);         \
                for (int i = 0; i < STRIP; ++i) acc[i] += window[i + kx] * tap;                 \
            }                                                                                   \
        }                                                                                       \
        const size_t out_row = (b * height + y) * (size_t)width;                                \
        for (int i = 0; i < STRIP; ++i) {                                                       \
            if (x0 + i < width) STORE(output, (out_row + x0 + i) * channels + c, acc[i]);       \
        }                                                                                       \
    }                                                                                           \
}

DEPTHWISE_KERNEL(depthwise_nhwc_f32, float, load_f32, store_f32)
DEPTHWISE_KERNEL(depthwise_nhwc_bf16, unsigned short, load_bf16, store_bf16)
DEPTHWISE_KERNEL(depthwise_nhwc_f16, unsigned short, load_f16, store_f16)
"#;

/// PTX per kernel size, compiled on first use (NVRTC takes tens of milliseconds).
fn ptx_for(kernel: usize) -> Result<Arc<str>> {
    static CACHE: OnceLock<Mutex<HashMap<usize, Arc<str>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .map_err(|_| candle_core::Error::Msg("depthwise conv: PTX cache poisoned".into()))?;
    if let Some(ptx) = cache.get(&kernel) {
        return Ok(ptx.clone());
    }
    let source = format!("#define KSIZE {kernel}\n#define STRIP {STRIP}\n{SOURCE}");
    let options = CompileOptions {
        name: Some(format!("magma_depthwise_k{kernel}.cu")),
        ..Default::default()
    };
    let ptx: Arc<str> = compile_ptx_with_opts(source, options).w()?.to_src().into();
    cache.insert(kernel, ptx.clone());
    Ok(ptx)
}

/// Runs the kernel for `x: [N, H, W, C]`, `taps: [k, k, C]`, `bias: [C]`, all of one dtype
/// (f32, bf16 or f16) and contiguous; returns `[N, H, W, C]` in that dtype.
pub(super) fn depthwise_nhwc_cuda(
    kernel: usize,
    (x, x_layout): (&CudaStorage, &Layout),
    (taps, taps_layout): (&CudaStorage, &Layout),
    (bias, bias_layout): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let (n, h, w, c) = x_layout.shape().dims4()?;
    if taps_layout.shape().dims() != [kernel, kernel, c] || bias_layout.shape().dims() != [c] {
        candle_core::bail!(
            "depthwise conv (cuda): taps {:?} / bias {:?} do not fit input {:?} and kernel {kernel}",
            taps_layout.dims(),
            bias_layout.dims(),
            x_layout.dims()
        )
    }
    let launch = Launch {
        kernel,
        dims: [n, h, w, c],
        device: x.device(),
    };
    use CudaStorageSlice::{BF16, F16, F32};
    let slice = match (&x.slice, &taps.slice, &bias.slice) {
        (F32(x), F32(t), F32(b)) => F32(launch.run("depthwise_nhwc_f32", [(x, x_layout), (t, taps_layout), (b, bias_layout)])?),
        (BF16(x), BF16(t), BF16(b)) => BF16(launch.run("depthwise_nhwc_bf16", [(x, x_layout), (t, taps_layout), (b, bias_layout)])?),
        (F16(x), F16(t), F16(b)) => F16(launch.run("depthwise_nhwc_f16", [(x, x_layout), (t, taps_layout), (b, bias_layout)])?),
        _ => candle_core::bail!(
            "depthwise conv (cuda): input, taps and bias must all be f32, bf16 or f16, got {:?}, {:?}, {:?}",
            x.dtype(),
            taps.dtype(),
            bias.dtype()
        ),
    };
    let output = CudaStorage {
        slice,
        device: x.device().clone(),
    };
    Ok((output, x_layout.shape().clone()))
}

struct Launch<'a> {
    kernel: usize,
    dims: [usize; 4],
    device: &'a CudaDevice,
}

impl Launch<'_> {
    /// Launches `function` on `[input, taps, bias]` and returns the new output buffer.
    fn run<T: DeviceRepr>(
        &self,
        function: &str,
        operands: [(&CudaSlice<T>, &Layout); 3],
    ) -> Result<CudaSlice<T>> {
        let [n, h, w, c] = self.dims;
        let as_i32 = |v: usize, what: &str| {
            i32::try_from(v).map_err(|_| {
                candle_core::Error::Msg(format!("depthwise conv (cuda): {what} = {v} exceeds i32"))
            })
        };
        let args = [
            as_i32(n, "batch")?,
            as_i32(h, "height")?,
            as_i32(w, "width")?,
            as_i32(c, "channels")?,
        ];
        let mut views = Vec::with_capacity(3);
        for ((slice, layout), what) in operands.into_iter().zip(["input", "taps", "bias"]) {
            match layout.contiguous_offsets() {
                Some((start, end)) => views.push(slice.slice(start..end)),
                None => candle_core::bail!("depthwise conv (cuda): {what} must be contiguous"),
            }
        }
        let threads = n * h * w.div_ceil(STRIP) * c;
        let blocks = threads
            .div_ceil(THREADS_PER_BLOCK as usize)
            .clamp(1, 65_535 * 16);
        let config = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (THREADS_PER_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let ptx = ptx_for(self.kernel)?;
        let module = format!("magma_depthwise_k{}", self.kernel);
        let func = self
            .device
            .get_or_load_custom_func(function, &module, &ptx)?;
        // SAFETY: every element is written by the kernel before the buffer is read.
        let output = unsafe { self.device.alloc::<T>(n * h * w * c)? };
        let mut builder = func.builder();
        for view in &views {
            builder.arg(view);
        }
        builder.arg(&output);
        for arg in &args {
            builder.arg(arg);
        }
        // SAFETY: the argument list matches the kernel signature (3 inputs, output, 4 ints), and
        // the buffers hold n·h·w·c, k·k·c and c elements as checked above.
        unsafe { builder.launch(config) }.w()?;
        Ok(output)
    }
}
