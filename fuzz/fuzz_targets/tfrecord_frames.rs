//! TFRecord framing (length, masked CRC32C of length and payload; plain or GZIP), each payload
//! then decoded as a `tf.train.Example` and a `SequenceExample`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = magma_fuzz::scratch_file("fuzz.tfrecord", data);
    let Ok(reader) = magma_data::tfrecord::TfRecordReader::open(&path) else {
        return;
    };
    for frame in reader.take(64) {
        let Ok(frame) = frame else {
            break;
        };
        let _ = magma_data::example::Example::decode(&frame.payload);
        let _ = magma_data::example::SequenceExample::decode(&frame.payload);
    }
});
