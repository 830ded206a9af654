//! Device selection from a command-line spec (`--device cpu|cuda|cuda:N`) and the default
//! compute dtype of each device.
//!
//! CUDA support is a cargo feature (`cuda`, off by default, built by `scripts/build-cuda.sh`), so a
//! CPU build knows the `cuda` spec but answers it with an error that says how to get it.

use crate::error::{ModelError, Result};
use candle_core::{DType, Device};

/// What the fix is when a CPU-only build is asked for a GPU.
#[cfg(not(feature = "cuda"))]
const REBUILD_HINT: &str =
    "this magma was built without CUDA support; rebuild with `--features cuda` (scripts/build-cuda.sh)";

/// A parsed device spec, before anything is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = ModelError;

    /// Parses `cpu`, `cuda` or `cuda:N` (case-insensitive, surrounding blanks ignored).
    ///
    /// ```
    /// use magma_model::device::DeviceSpec;
    /// assert_eq!("cpu".parse::<DeviceSpec>()?, DeviceSpec::Cpu);
    /// assert_eq!("cuda".parse::<DeviceSpec>()?, DeviceSpec::Cuda(0));
    /// assert_eq!("CUDA:1".parse::<DeviceSpec>()?, DeviceSpec::Cuda(1));
    /// assert!("gpu".parse::<DeviceSpec>().is_err());
    /// # Ok::<(), magma_model::ModelError>(())
    /// ```
    fn from_str(spec: &str) -> Result<Self> {
        let normalized = spec.trim().to_ascii_lowercase();
        let invalid = |reason: String| ModelError::Device {
            spec: spec.to_string(),
            reason,
        };
        match normalized.split_once(':') {
            None if normalized == "cpu" => Ok(Self::Cpu),
            None if normalized == "cuda" => Ok(Self::Cuda(0)),
            Some(("cuda", ordinal)) => ordinal.parse().map(Self::Cuda).map_err(|_| {
                invalid(format!(
                    "`{ordinal}` is not a GPU index (expected `cuda:N` with N = 0, 1, ...)"
                ))
            }),
            _ => Err(invalid(
                "unknown device (expected `cpu`, `cuda` or `cuda:N`)".to_string(),
            )),
        }
    }
}

impl DeviceSpec {
    /// Opens the device: the CPU always, a GPU only in a build with the `cuda` feature and on a
    /// machine with an NVIDIA driver and that GPU.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => open_cuda(ordinal),
        }
    }
}

/// Parses a device spec (`cpu`, `cuda`, `cuda:N`) and opens that device.
///
/// Errors name the spec and the fix: a malformed spec lists the accepted forms, `cuda` on a
/// CPU-only build says to rebuild with `--features cuda`, and a CUDA build without a usable GPU
/// or driver says what the driver answered.
///
/// ```
/// let device = magma_model::device::parse_device("cpu")?;
/// assert!(device.is_cpu());
/// # Ok::<(), magma_model::ModelError>(())
/// ```
pub fn parse_device(spec: &str) -> Result<Device> {
    spec.parse::<DeviceSpec>()?.open()
}

/// The compute dtype to use when the user names none: f32 on the CPU (candle's CPU bf16
/// matrix-vector products are very slow), bf16 on a GPU (the checkpoint's own dtype; tensor cores).
///
/// ```
/// use candle_core::{DType, Device};
/// assert_eq!(magma_model::device::default_dtype(&Device::Cpu), DType::F32);
/// ```
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|source| ModelError::Device {
        spec: format!("cuda:{ordinal}"),
        reason: format!(
            "cannot open CUDA GPU {ordinal} ({source}); check that an NVIDIA driver is installed, \
             that `nvidia-smi` lists GPU {ordinal}, and that the CUDA libraries (libcublas, \
             libcurand, libnvrtc) are on LD_LIBRARY_PATH"
        ),
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(ModelError::Device {
        spec: format!("cuda:{ordinal}"),
        reason: REBUILD_HINT.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_accepted_forms() -> Result<()> {
        assert_eq!("cpu".parse::<DeviceSpec>()?, DeviceSpec::Cpu);
        assert_eq!(" Cpu ".parse::<DeviceSpec>()?, DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>()?, DeviceSpec::Cuda(0));
        assert_eq!("cuda:0".parse::<DeviceSpec>()?, DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>()?, DeviceSpec::Cuda(3));
        assert!(parse_device("cpu")?.is_cpu());
        Ok(())
    }

    #[test]
    fn malformed_specs_name_the_accepted_forms() {
        for (spec, expected) in [
            ("gpu", "expected `cpu`, `cuda` or `cuda:N`"),
            ("", "expected `cpu`, `cuda` or `cuda:N`"),
            ("cpu:0", "expected `cpu`, `cuda` or `cuda:N`"),
            ("metal", "expected `cpu`, `cuda` or `cuda:N`"),
            ("cuda:", "`` is not a GPU index"),
            ("cuda:x", "`x` is not a GPU index"),
            ("cuda:-1", "`-1` is not a GPU index"),
        ] {
            let message = match parse_device(spec) {
                Ok(device) => panic!("`{spec}` was accepted as {device:?}"),
                Err(err) => err.to_string(),
            };
            assert!(
                message.starts_with(&format!("device `{spec}`: ")),
                "{message}"
            );
            assert!(message.contains(expected), "`{spec}`: {message}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_on_a_cpu_build_says_how_to_rebuild() {
        for (spec, shown) in [("cuda", "cuda:0"), ("cuda:1", "cuda:1")] {
            let message = match parse_device(spec) {
                Ok(device) => panic!("a CPU build opened {device:?}"),
                Err(err) => err.to_string(),
            };
            assert_eq!(message, format!("device `{shown}`: {REBUILD_HINT}"));
            assert!(
                message.contains("--features cuda") && message.contains("scripts/build-cuda.sh")
            );
        }
    }

    #[test]
    fn default_dtype_is_f32_on_cpu() {
        assert_eq!(default_dtype(&Device::Cpu), DType::F32);
    }
}
