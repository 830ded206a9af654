//! Trace-of-Mark answers and future traces.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(traces) = magma_actions::marks::tom::parse_answer(text) {
            let _ = magma_actions::marks::tom::format_answer(&traces, true);
        }
        let _ = magma_actions::marks::tom::parse_future_traces(text);
    }
});
