//! `PIPELINE.toml` of `magma data run`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = magma_fuzz::scratch_file("PIPELINE.toml", data);
    let _ = magma_data::pipeline::Pipeline::from_file(&path);
});
