//! Runs a slice kernel with AVX2+FMA code generation when the CPU has it (runtime check), so
//! default builds (baseline x86-64) still get 8-wide vector loops in the hot kernels.

/// Calls `kernel()` compiled for AVX2/FMA if available, else the baseline build of it.
///
/// `kernel` must be `#[inline(always)]`-friendly (a closure works): it is inlined into a
/// function carrying the target features, which is what changes its code generation.
#[inline(always)]
pub fn dispatch<R>(kernel: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the callee is compiled for (checked above).
            return unsafe { with_avx2(kernel) };
        }
    }
    kernel()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}
