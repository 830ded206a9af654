//! Parity on the real LLaMA-3 vocabulary with Magma's added tokens (`tokenizer-real/`): raw
//! strings to ids with and without special tokens, decoding, and full chat prompts.

mod common;

use std::io::Read;
use std::path::Path;

use common::fixtures;
use magma_processor::Processor;
use serde_json::{json, Value};

/// A model folder around the real tokenizer: gunzipped `tokenizer.json`, the real
/// `tokenizer_config.json`, the tiny model's image settings and a minimal `config.json`.
fn real_processor(root: &Path, use_image_start_end: bool) -> Processor {
    let dir = root.join(format!("start_end_{use_image_start_end}"));
    std::fs::create_dir_all(&dir).unwrap();
    let real = fixtures().join("tokenizer-real");
    let tokenizer_json = root.join("tokenizer.json");
    if !tokenizer_json.exists() {
        let gz = std::fs::File::open(real.join("tokenizer.json.gz")).unwrap();
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut text)
            .unwrap();
        std::fs::write(&tokenizer_json, text).unwrap();
    }
    std::fs::copy(&tokenizer_json, dir.join("tokenizer.json")).unwrap();
    std::fs::copy(
        real.join("tokenizer_config.json"),
        dir.join("tokenizer_config.json"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("models/magma-tiny-crop/preprocessor_config.json"),
        dir.join("preprocessor_config.json"),
    )
    .unwrap();
    let config =
        json!({"image_token_index": 128257, "mm_use_image_start_end": use_image_start_end});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    Processor::from_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn real_vocabulary_matches_the_reference() {
    let root = tempfile::tempdir().unwrap();
    let processors = [
        real_processor(root.path(), false),
        real_processor(root.path(), true),
    ];
    let special = processors[0].special_tokens();
    assert_eq!(
        (
            special.bos,
            special.eos,
            special.pad,
            special.image,
            special.image_start,
            special.image_end
        ),
        (
            128000,
            128009,
            Some(128256),
            128257,
            Some(128259),
            Some(128260)
        ),
        "ids read from the real tokenizer files"
    );

    let path = fixtures().join("tokenizer-real/cases.json");
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut raw, mut chat) = (0, 0);
    for case in cases["cases"].as_array().unwrap() {
        match case["kind"].as_str().unwrap() {
            "raw" => {
                let text = case["text"].as_str().unwrap();
                let tokenizer = processors[0].tokenizer();
                let with = tokenizer.encode(text, true).unwrap().get_ids().to_vec();
                let without = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
                assert_eq!(
                    with,
                    ids(&case["ids_add_special_tokens"]),
                    "{text:?} with specials"
                );
                assert_eq!(
                    without,
                    ids(&case["ids_no_special"]),
                    "{text:?} without specials"
                );
                let decoded = processors[0].decode(&with).unwrap();
                assert_eq!(
                    decoded,
                    case["decoded_skip_special"].as_str().unwrap(),
                    "decode {text:?}"
                );
                raw += 1;
            }
            "chat" => {
                let processor =
                    &processors[case["mm_use_image_start_end"].as_bool().unwrap() as usize];
                let user_text = case["user_text"].as_str().unwrap();
                let n_images = user_text.matches("<image>").count();
                let images =
                    vec![image::RgbImage::from_pixel(64, 48, image::Rgb([1, 2, 3])); n_images];
                let out = processor
                    .process(user_text, &images, Some(case["system"].as_str().unwrap()))
                    .unwrap();
                assert_eq!(
                    out.prompt,
                    case["rendered_prompt"].as_str().unwrap(),
                    "prompt of {user_text:?}"
                );
                assert_eq!(
                    out.input_ids,
                    ids(&case["input_ids"]),
                    "ids of {user_text:?}"
                );
                chat += 1;
            }
            other => panic!("unknown case kind {other}"),
        }
    }
    assert_eq!((raw, chat), (6, 8));
}
