//! File names of a frame folder (numbered frames sorted by their last number).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = magma_fuzz::empty_dir("frames");
    for name in text.split('\n').take(32) {
        if name.is_empty() || name.len() > 200 || name.contains(['/', '\0']) || name == "." || name == ".." {
            continue;
        }
        let _ = std::fs::write(dir.join(name), b"");
    }
    let _ = magma_traces::frames::frame_files(&dir);
});
