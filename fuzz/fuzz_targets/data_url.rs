//! `data:image/...;base64,` URLs of chat image parts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(url) = std::str::from_utf8(data) {
        let _ = magma_serve::chat::decode_data_url(url, "url");
        let _ = magma_serve::remote::scheme(url);
    }
});
