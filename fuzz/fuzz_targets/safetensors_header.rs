//! A safetensors file: our length check and the safetensors crate's header parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = magma_fuzz::scratch_file("model.safetensors", data);
    let _ = magma_model::weights::check_safetensors_file(&path);
    let _ = safetensors::SafeTensors::deserialize(data);
});
