//! `config.json` → `MagmaConfig` and `generation_config.json` → `GenerationConfig`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = magma_model::MagmaConfig::from_json_str(text, "config.json".as_ref());
        let _ = magma_model::GenerationConfig::from_json_str(text, "generation_config.json".as_ref());
    }
});
