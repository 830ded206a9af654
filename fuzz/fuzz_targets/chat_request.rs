//! An OpenAI chat-completions body → a validated `ChatRequest` (data-URL images decoded).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        let limits = magma_serve::chat::ParseLimits {
            max_images: 4,
            max_image_pixels: 1 << 20,
            remote_images: None,
        };
        let _ = magma_serve::chat::ChatRequest::parse(&body, limits);
    }
});
