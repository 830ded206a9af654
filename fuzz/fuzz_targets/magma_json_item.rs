//! One item of a Magma-format `conversations.json` → `Record`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = magma_data::magma_json::item_to_record(&item, "fuzz", "conversations.json", 0);
    }
});
