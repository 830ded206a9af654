//! `model.gguf`: header, metadata and tensor table, checked against the file length.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = magma_fuzz::scratch_dir();
    std::fs::write(dir.join("model.gguf"), data).expect("gguf");
    let _ = magma_model::quant::GgufTensors::open_dir(dir);
});
