//! UI-agent answers (marks, coordinates, actions) and their mark annotations.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = magma_actions::ui::UiAnswer::parse(text);
        let _ = magma_actions::ui::answer::strip_mark_annotations(text);
    }
});
