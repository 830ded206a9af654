//! `magma prompt --conversation` and `magma generate --adapter` end to end, on the tiny fixture
//! model: the ids and labels of a reference masking case, and the first greedy token of the
//! fixture's merged-adapter logits.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model() -> PathBuf {
    repo().join("tests/fixtures/magma-parity/models/magma-tiny-crop")
}

fn magma(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_magma"))
        .args(args)
        .output()
        .expect("magma runs")
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "magma failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

#[test]
fn prompt_conversation_shows_the_reference_labels() {
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/magma-train/masking/cases.json"))
            .unwrap(),
    )
    .unwrap();
    let case = cases["magma-tiny-crop"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "three_rounds")
        .unwrap();
    let dir = std::env::temp_dir().join(format!("magma-cli-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("item.json");
    let image = repo().join("tests/fixtures/magma-parity/images/coffee.png");
    let item = serde_json::json!({
        "id": "three_rounds",
        "image": image,
        "conversations": case["conversations"],
    });
    std::fs::write(&file, item.to_string()).unwrap();

    let out = json_of(&magma(&[
        "prompt",
        "--model",
        model().to_str().unwrap(),
        "--conversation",
        file.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(out["input_ids"], case["input_ids"]);
    assert_eq!(out["labels"], case["labels"]);
    assert_eq!(out["n_labelled"], case["n_labelled"]);
    let spans: Vec<&str> = out["loss_spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        spans,
        [
            "Three.<|eot_id|>",
            "Two.<|eot_id|>",
            "Five fruits in total.<|eot_id|>"
        ]
    );
    assert_eq!(out["image_grids"], serde_json::json!([[2, 2]]));

    // a cut sample is said on stderr
    let cut = magma(&[
        "prompt",
        "--model",
        model().to_str().unwrap(),
        "--conversation",
        file.to_str().unwrap(),
        "--max-length",
        "50",
        "--json",
    ]);
    assert!(cut.status.success());
    let stderr = String::from_utf8_lossy(&cut.stderr);
    assert!(stderr.contains("truncated to max_length 50"), "{stderr}");

    // neither --prompt nor --conversation
    let none = magma(&["prompt", "--model", model().to_str().unwrap()]);
    assert!(!none.status.success());
}

#[test]
fn generate_with_adapter_follows_the_merged_model() {
    let lora = repo().join("tests/fixtures/magma-train/magma-tiny-crop/lora");
    let logits =
        magma_processor::npy::read(&lora.join("merged_logits_step3.npy")).expect("fixture logits");
    let vocab = *logits.shape.last().unwrap();
    let values = logits.to_f32();
    let last = &values[values.len() - vocab..];
    let argmax = (0..vocab)
        .max_by(|&a, &b| last[a].total_cmp(&last[b]))
        .unwrap();

    // the prompt and image of parity case photo_coffee, whose prefill the fixture logits are
    let image = repo().join("tests/fixtures/magma-parity/images/coffee.png");
    let run = |adapter: Option<&Path>| {
        let mut args = vec![
            "generate".to_string(),
            "--model".into(),
            model().to_str().unwrap().into(),
            "--prompt".into(),
            "What is in this image?".into(),
            "--image".into(),
            image.to_str().unwrap().into(),
            "--max-new-tokens".into(),
            "4".into(),
            "--json".into(),
        ];
        if let Some(dir) = adapter {
            args.extend(["--adapter".into(), dir.to_str().unwrap().into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        json_of(&magma(&args))["generated_ids"].clone()
    };
    let adapted = run(Some(&lora.join("adapter_step3")));
    assert_eq!(adapted[0].as_u64().unwrap() as usize, argmax);
    assert_ne!(adapted, run(None), "the adapter changes the answer");

    // an adapter of the other model is refused, naming the tensor
    let other = magma(&[
        "generate",
        "--model",
        repo()
            .join("tests/fixtures/magma-parity/models/magma-tiny-global")
            .to_str()
            .unwrap(),
        "--adapter",
        lora.join("adapter_step3").to_str().unwrap(),
        "--prompt",
        "hi",
    ]);
    assert!(!other.status.success());
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(stderr.contains("lora_A.weight"), "{stderr}");
}
