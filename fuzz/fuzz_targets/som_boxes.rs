//! Box files of `/v1/som` and `magma marks`, in every format, for a fuzzed image size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use magma_marks::BoxFormat;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let width = u32::from(u16::from_le_bytes([data[0], data[1]]));
    let height = u32::from(u16::from_le_bytes([data[2], data[3]]));
    let format = [
        BoxFormat::OmniParser,
        BoxFormat::Pixels,
        BoxFormat::Ratios,
        BoxFormat::Yxhw,
        BoxFormat::YxhwRatios,
    ][usize::from(data[4]) % 5];
    if let Ok(text) = std::str::from_utf8(&data[5..]) {
        let _ = magma_marks::parse_boxes(text, "boxes", format, width, height);
    }
});
