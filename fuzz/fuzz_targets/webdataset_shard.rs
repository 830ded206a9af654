//! A WebDataset `.tar` shard → samples.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = magma_fuzz::scratch_file("shard.tar", data);
    let _ = magma_data::webdataset::read_shard(&path);
});
