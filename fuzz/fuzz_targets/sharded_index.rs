//! `model.safetensors.index.json` of a sharded checkpoint.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = magma_fuzz::scratch_dir();
    std::fs::write(dir.join("model.safetensors.index.json"), data).expect("index");
    let _ = std::fs::remove_file(dir.join("model.safetensors"));
    if let Ok(files) = magma_model::weights::checkpoint_files(dir) {
        assert!(files.iter().all(|f| f.starts_with(dir) || f.is_absolute()));
    }
});
