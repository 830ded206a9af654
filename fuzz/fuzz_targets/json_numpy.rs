//! json-numpy arrays of `/act` (`{"__numpy__": base64, "dtype", "shape"}`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = magma_serve::numpy::decode_rgb_array(&value, "image");
        let _ = magma_serve::numpy::decode_f64_array(&value);
    }
});
