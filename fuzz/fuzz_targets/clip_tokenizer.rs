//! CLIP tokenizer input text (cleaning, byte-level BPE with the fixture's real merges).
#![no_main]

use libfuzzer_sys::fuzz_target;
use magma_data::curate::clip_tokenizer::ClipTokenizer;
use std::sync::OnceLock;

fn tokenizer() -> &'static ClipTokenizer {
    static TOKENIZER: OnceLock<ClipTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/magma-data/tests/fixtures/curate/clip");
        ClipTokenizer::from_folder(dir.as_ref()).expect("fixture CLIP tokenizer")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let ids = tokenizer().encode(text);
        assert!(ids.iter().all(|&id| (id as usize) < tokenizer().vocab_size()));
        let _ = tokenizer().tokenize(text, true);
        let _ = tokenizer().tokenize(text, false);
    }
});
