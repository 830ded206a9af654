//! `.npy` arrays (header dict, dtype, shape, data length).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = magma_processor::npy::from_bytes(data, "fuzz.npy");
});
