//! `dataset_statistics.json` (un-normalisation statistics).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(set) = magma_actions::robot::StatisticsSet::from_json_str(text, "fuzz") {
            let _ = set.get(None);
        }
    }
});
