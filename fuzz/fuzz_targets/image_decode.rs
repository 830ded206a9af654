//! Image bytes through the server's decoder and pixel limit (PNG, JPEG, GIF headers and data).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = magma_processor::decode_rgb_image(data, 1 << 20, "fuzz") {
        assert!(u64::from(image.width()) * u64::from(image.height()) <= 1 << 20);
    }
});
