//! The CLIP filter against OpenAI's `clip` package (`tests/fixtures/curate/clip_expected.json`,
//! written by `make_clip_fixture.py` from a tiny random CLIP with the real 49 408-token BPE,
//! converted to the Hugging Face layout in `fixtures/curate/clip/`): token ids exact,
//! preprocessed pixels within 1e-6, embeddings and cosines within 1e-4 (feature `clip`).

use std::path::{Path, PathBuf};

use magma_data::curate::clip_preprocess::preprocess;
use magma_data::curate::clip_tokenizer::ClipTokenizer;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/curate")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("clip_expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn texts(e: &Value) -> Vec<String> {
    serde_json::from_value(e["texts"].clone()).unwrap()
}

#[test]
fn tokens_equal_clip_tokenize() {
    let e = expected();
    let tok = ClipTokenizer::from_folder(&fixtures().join("clip")).unwrap();
    assert_eq!(tok.vocab_size(), 49408);
    let want: Vec<Vec<u32>> = serde_json::from_value(e["tokens"].clone()).unwrap();
    for (text, want) in texts(&e).iter().zip(&want) {
        assert_eq!(&tok.tokenize(text, true).unwrap(), want, "{text:?}");
    }
    let long = texts(&e)[5].clone();
    assert!(
        tok.tokenize(&long, false).is_err(),
        "77+ tokens need truncate"
    );
}

#[test]
fn pixels_equal_clip_preprocess() {
    let e = expected();
    for name in e["images"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let img = image::open(fixtures().join("clip/images").join(name)).unwrap();
        let got = preprocess(&img, 32);
        let want: Vec<f32> = serde_json::from_value(e["pixels"][name].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-6, "{name}: max pixel difference {worst}");
    }
}

#[cfg(feature = "clip")]
#[test]
fn embeddings_and_cosines_equal_the_clip_package() {
    use magma_data::curate::clip::ClipScorer;
    let e = expected();
    let scorer = ClipScorer::load(&fixtures().join("clip")).unwrap();
    let names: Vec<String> = serde_json::from_value(e["images"].clone()).unwrap();
    let images: Vec<_> = names
        .iter()
        .map(|n| image::open(fixtures().join("clip/images").join(n)).unwrap())
        .collect();
    let texts = texts(&e);
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let close = |got: &[Vec<f32>], key: &str| {
        let want: Vec<Vec<f32>> = serde_json::from_value(e[key].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{key}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            for (j, (a, b)) in g.iter().zip(w).enumerate() {
                assert!((a - b).abs() <= 1e-4, "{key}[{i}][{j}]: {a} vs clip {b}");
            }
        }
    };
    close(
        &scorer.image_embeddings(&images).unwrap(),
        "image_embeddings",
    );
    close(
        &scorer.text_embeddings(&text_refs).unwrap(),
        "text_embeddings",
    );
    close(&scorer.cosine(&images, &text_refs).unwrap(), "cosine");
}

#[cfg(feature = "clip")]
#[test]
fn a_folder_without_weights_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("clip/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let err = magma_data::curate::clip::ClipScorer::load(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}
