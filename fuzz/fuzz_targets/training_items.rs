//! Training conversation items (`.json` / `.jsonl`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = if data.first() == Some(&b'[') { "items.json" } else { "items.jsonl" };
    let path = magma_fuzz::scratch_file(name, data);
    let _ = magma_processor::training::read_items(&path);
});
