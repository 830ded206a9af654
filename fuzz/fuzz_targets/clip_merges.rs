//! A CLIP `merges.txt` (BPE merge rules) → tokenizer, then a short text through it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(tokenizer) = magma_data::curate::clip_tokenizer::ClipTokenizer::from_merges(text) {
            let _ = tokenizer.encode("a photo of a cat");
        }
    }
});
