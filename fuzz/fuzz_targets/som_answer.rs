//! Set-of-Mark answers (mark ids and positions).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(marks) = magma_actions::marks::som::parse_answer(text) {
            let _ = magma_actions::marks::som::format_answer(&marks);
        }
    }
});
