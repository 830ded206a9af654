//! Hand-decoded `tf.train.Example` / `SequenceExample` protobufs and their typed accessors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(example) = magma_data::example::Example::decode(data) {
        for name in ["steps/observation/image", "image/encoded", "episode_id", "x"] {
            let _ = example.floats(name);
            let _ = example.ints(name);
            let _ = example.bytes(name);
            let _ = example.string(name, 0);
        }
    }
    let _ = magma_data::example::SequenceExample::decode(data);
});
