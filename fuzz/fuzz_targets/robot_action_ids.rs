//! Generated ids → robot action: token extraction, de-tokenisation and un-normalisation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use magma_actions::robot::{extract_action_ids, ActionTokenizer, RobotActionDecoder, StatisticsSet};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let vocab = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let ids: Vec<u32> = data[4..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let _ = extract_action_ids(&ids, 7);
    let Ok(tokenizer) = ActionTokenizer::new(vocab) else {
        return;
    };
    let stats = StatisticsSet::builtin();
    let Ok(dataset) = stats.get(Some("bridge_orig")) else {
        return;
    };
    let mut decoder = RobotActionDecoder::new(tokenizer, dataset.action.clone(), None);
    let _ = decoder.decode_generated(&ids);
    let _ = decoder.decode_ids(&ids);
});
