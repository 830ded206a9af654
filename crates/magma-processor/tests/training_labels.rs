//! Training examples against the reference: every masking case of both tiny models' tokenizers
//! (ids and labels identical) and the collated fixture batches (ids, labels, attention mask,
//! image sizes, pixel values, and the merged labels / mask / position ids).

mod common;

use std::path::{Path, PathBuf};

use magma_processor::training::{
    merged_layout, ConversationItem, ExampleError, ExampleImage, ExampleKind, ExampleWarning,
    ImageField, PaddingSide, TrainingExampleBuilder, Turn, IGNORE_INDEX,
};
use serde_json::Value;

const MODELS: [&str; 2] = ["magma-tiny-crop", "magma-tiny-global"];

fn train_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/magma-train")
}

fn model_dir(model: &str) -> PathBuf {
    common::fixtures().join("models").join(model)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn as_i64s(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn every_masking_case_matches_the_reference() {
    let cases = read_json(&train_fixtures().join("masking/cases.json"));
    for model in MODELS {
        let entry = &cases[model];
        let builder = TrainingExampleBuilder::from_dir(&model_dir(model)).unwrap();
        assert_eq!(
            builder.options().use_image_start_end,
            entry["mm_use_image_start_end"].as_bool().unwrap()
        );
        for case in entry["cases"].as_array().unwrap() {
            let name = format!("{model}/{}", case["id"].as_str().unwrap());
            let mut item: ConversationItem = serde_json::from_value(case.clone()).unwrap();
            let has_image = case["has_image"].as_bool().unwrap_or(true);
            if item.rlds {
                item.image = Some(ImageField::One("frame.png".into()));
            } else if has_image {
                let n = case["n_images"].as_u64().unwrap() as usize;
                item.image = Some(ImageField::Many(
                    (0..n).map(|k| format!("img{k}.png").into()).collect(),
                ));
            }
            let max_length = case["model_max_length"].as_u64().unwrap_or(2048) as usize;
            let builder = TrainingExampleBuilder::from_dir(&model_dir(model))
                .unwrap()
                .with_max_length(max_length)
                .unwrap();
            let example = builder
                .build(&item)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                example.text,
                case["rendered_text"].as_str().unwrap(),
                "{name}: rendered text"
            );
            let ids: Vec<i64> = example.input_ids.iter().map(|&i| i64::from(i)).collect();
            assert_eq!(ids, as_i64s(&case["input_ids"]), "{name}: input_ids");
            assert_eq!(example.labels, as_i64s(&case["labels"]), "{name}: labels");
            assert_eq!(
                example.n_labelled() as u64,
                case["n_labelled"].as_u64().unwrap(),
                "{name}: labelled count"
            );
            if let Some(truncated) = case["truncated"].as_bool() {
                assert_eq!(example.truncated(), truncated, "{name}: truncated flag");
            }
            if let Some(masked) = case["whole_sample_masked_by_length_check"].as_bool() {
                let warned = example
                    .warnings
                    .iter()
                    .any(|w| matches!(w, ExampleWarning::LengthMismatch { .. }));
                assert_eq!(warned, masked, "{name}: length-check warning");
            }
            if item.rlds {
                // the ids derived from the normalised actions are the fixture's
                let actions = item.actions_normalized.as_ref().unwrap();
                assert_eq!(
                    &builder.action_token_ids(actions).unwrap(),
                    item.action_token_ids.as_ref().unwrap(),
                    "{name}: action tokenizer"
                );
                assert_eq!(example.kind, ExampleKind::Rlds);
            }
            if !has_image {
                assert_eq!(example.images, vec![ExampleImage::Blank], "{name}");
            }
        }
    }
}

/// The four fixture samples in batch order, built from `conversations.json`.
fn fixture_items(model: &str) -> (Vec<ConversationItem>, PathBuf) {
    let root = train_fixtures();
    let json = read_json(&root.join(model).join("conversations.json"));
    let files = &json["image_files"];
    let mut items: Vec<ConversationItem> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    // image names resolve through `image_files` (paths relative to the fixture root)
    for item in &mut items {
        if let Some(ImageField::One(name)) = &item.image {
            let file = files[name.to_str().unwrap()].as_str().unwrap();
            item.image = Some(ImageField::One(file.into()));
        }
    }
    items.push(serde_json::from_value(json["robot"].clone()).unwrap());
    (items, root)
}

fn npy_i64(path: &Path) -> Vec<i64> {
    common::read_i64(path)
}

#[test]
fn collated_batches_match_the_reference() {
    for model in MODELS {
        let builder = TrainingExampleBuilder::from_dir(&model_dir(model)).unwrap();
        let (items, root) = fixture_items(model);
        let examples: Vec<_> = items.iter().map(|i| builder.build(i).unwrap()).collect();
        let texts = read_json(&root.join(model).join("batch/texts.json"));
        for (example, text) in examples.iter().zip(texts.as_array().unwrap()) {
            assert_eq!(example.text, text["rendered_text"].as_str().unwrap());
            assert!(example.warnings.is_empty(), "{:?}", example.warnings);
        }
        let pixels: Vec<_> = examples
            .iter()
            .map(|e| builder.pixels(e, &root).unwrap())
            .collect();
        let batch = builder.collate(&examples, Some(&pixels)).unwrap();
        let dir = root.join(model).join("batch");
        let ids: Vec<i64> = batch.input_ids.iter().map(|&i| i64::from(i)).collect();
        assert_eq!(
            ids,
            npy_i64(&dir.join("input_ids.npy")),
            "{model}: input_ids"
        );
        assert_eq!(
            batch.labels,
            npy_i64(&dir.join("labels.npy")),
            "{model}: labels"
        );
        let mask: Vec<i64> = batch.attention_mask.iter().map(|&m| i64::from(m)).collect();
        assert_eq!(
            mask,
            npy_i64(&dir.join("attention_mask.npy")),
            "{model}: mask"
        );
        let sizes: Vec<i64> = batch
            .image_sizes
            .iter()
            .flat_map(|rc| rc.map(|x| x as i64))
            .collect();
        assert_eq!(
            sizes,
            npy_i64(&dir.join("image_sizes.npy")),
            "{model}: image_sizes"
        );
        let reference = common::read_npy(&dir.join("pixel_values.npy"));
        assert_eq!(
            reference.shape,
            batch.pixel_shape.to_vec(),
            "{model}: pixel shape"
        );
        let reference = reference.to_f32();
        let worst = batch
            .pixel_values
            .iter()
            .zip(&reference)
            .map(|(a, b)| ((a - b).abs() - 1e-4 * b.abs()) as f64)
            .fold(0f64, f64::max);
        assert!(worst <= 1e-3, "{model}: pixel values off by {worst}");
        let per_sample: Vec<usize> = examples.iter().map(|e| e.n_labelled()).collect();
        assert_eq!(
            per_sample,
            vec![24, 38, 18, 9],
            "{model}: labelled per sample"
        );

        // the model-side merge of these rows
        let feature_rows: Vec<Vec<usize>> = pixels.iter().map(|p| p.image_tokens.clone()).collect();
        let image_id = builder.processor().special_tokens().image;
        let merged = merged_layout(&batch, image_id, &feature_rows, PaddingSide::Left).unwrap();
        assert_eq!(merged.padding_side, PaddingSide::Right);
        assert_eq!(
            merged.labels,
            npy_i64(&dir.join("merged_labels.npy")),
            "{model}: merged labels"
        );
        let mask: Vec<i64> = merged
            .attention_mask
            .iter()
            .map(|&m| i64::from(m))
            .collect();
        assert_eq!(mask, npy_i64(&dir.join("merged_attention_mask.npy")));
        assert_eq!(merged.position_ids, npy_i64(&dir.join("position_ids.npy")));
    }
}

#[test]
fn bad_items_get_clear_errors() {
    let builder = TrainingExampleBuilder::from_dir(&model_dir("magma-tiny-crop")).unwrap();
    let turn = |from: &str, value: &str| Turn {
        from: from.into(),
        value: value.into(),
    };
    let no_answer = ConversationItem {
        id: Some("q-only".into()),
        conversations: vec![turn("human", "Hello?")],
        ..Default::default()
    };
    let err = builder.build(&no_answer).unwrap_err();
    assert!(matches!(err, ExampleError::NoAssistantTurn { .. }), "{err}");
    assert!(err.to_string().contains("q-only"), "{err}");

    let two_images_one_placeholder = ConversationItem {
        id: Some("x".into()),
        conversations: vec![turn("human", "<image>\nCompare."), turn("gpt", "Same.")],
        image: Some(ImageField::Many(vec!["a.png".into(), "b.png".into()])),
        ..Default::default()
    };
    let err = builder.build(&two_images_one_placeholder).unwrap_err();
    assert!(
        matches!(
            err,
            ExampleError::ImageCountMismatch {
                placeholders: 1,
                images: 2,
                ..
            }
        ),
        "{err}"
    );

    let robot_without_action = ConversationItem {
        rlds: true,
        language_instruction: Some("Open the drawer".into()),
        image: Some(ImageField::One("f.png".into())),
        ..Default::default()
    };
    let err = builder.build(&robot_without_action).unwrap_err();
    assert!(err.to_string().contains("action_token_ids"), "{err}");

    // too long: cut as the reference does, and said
    let long = ConversationItem {
        conversations: vec![
            turn("human", "Tell me everything about the sea."),
            turn("gpt", &"The sea is wide and deep. ".repeat(20)),
        ],
        ..Default::default()
    };
    let short = builder.with_max_length(64).unwrap();
    let example = short.build(&long).unwrap();
    assert_eq!(example.input_ids.len(), 64);
    assert_eq!(example.labels.len(), 64);
    assert!(
        matches!(
            example.warnings[..],
            [ExampleWarning::Truncated { max_length: 64, .. }]
        ),
        "{:?}",
        example.warnings
    );
    // the cut answer keeps loss on its surviving tokens, without <|eot_id|>
    assert_ne!(*example.labels.last().unwrap(), IGNORE_INDEX);
}

#[test]
fn examples_round_trip_through_serde() {
    let builder = TrainingExampleBuilder::from_dir(&model_dir("magma-tiny-global")).unwrap();
    let (items, _) = fixture_items("magma-tiny-global");
    for item in &items {
        let example = builder.build(item).unwrap();
        let json = serde_json::to_string(&example).unwrap();
        assert_eq!(
            serde_json::from_str::<magma_processor::training::TrainingExample>(&json).unwrap(),
            example
        );
        let item_json = serde_json::to_string(item).unwrap();
        assert_eq!(
            &serde_json::from_str::<ConversationItem>(&item_json).unwrap(),
            item
        );
    }
}

/// A model folder around the real LLaMA-3 tokenizer (`tokenizer-real/`, gunzipped) with the
/// tiny model's image settings.
fn real_tokenizer_model(root: &Path, use_image_start_end: bool) -> PathBuf {
    use std::io::Read;
    let dir = root.join(format!("real_start_end_{use_image_start_end}"));
    std::fs::create_dir_all(&dir).unwrap();
    let real = common::fixtures().join("tokenizer-real");
    let gz = std::fs::File::open(real.join("tokenizer.json.gz")).unwrap();
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut text)
        .unwrap();
    std::fs::write(dir.join("tokenizer.json"), text).unwrap();
    for (from, to) in [
        (real.join("tokenizer_config.json"), "tokenizer_config.json"),
        (
            model_dir("magma-tiny-crop").join("preprocessor_config.json"),
            "preprocessor_config.json",
        ),
    ] {
        std::fs::copy(from, dir.join(to)).unwrap();
    }
    let config = serde_json::json!({
        "image_token_index": 128257,
        "mm_use_image_start_end": use_image_start_end,
        "tokenizer_vocab_size": 128000,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

/// Cases run through Magma's own `preprocess_multimodal` / `preprocess` with the real 128k
/// vocabulary (where pieces tokenised apart could differ from the whole): ids and labels equal.
#[test]
fn real_tokenizer_cases_match_the_reference() {
    let cases = read_json(&train_fixtures().join("masking/real_tokenizer_cases.json"));
    let root = tempfile::tempdir().unwrap();
    // one builder per flag (loading the 128k vocabulary is the slow part), max_length per case
    let mut builders = [false, true].map(|flag| {
        Some(TrainingExampleBuilder::from_dir(&real_tokenizer_model(root.path(), flag)).unwrap())
    });
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let flag = case["mm_use_image_start_end"].as_bool().unwrap();
        let name = format!("{} (start/end {flag})", case["id"].as_str().unwrap());
        let mut item: ConversationItem = serde_json::from_value(case.clone()).unwrap();
        let n = case["n_images"].as_u64().unwrap() as usize;
        if n > 0 {
            item.image = Some(ImageField::Many(
                (0..n).map(|k| format!("img{k}.png").into()).collect(),
            ));
        }
        let max_length = case["model_max_length"].as_u64().unwrap() as usize;
        let slot = &mut builders[usize::from(flag)];
        let builder = slot.take().unwrap().with_max_length(max_length).unwrap();
        let example = builder
            .build(&item)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            example.text,
            case["rendered_text"].as_str().unwrap(),
            "{name}"
        );
        let ids: Vec<i64> = example.input_ids.iter().map(|&i| i64::from(i)).collect();
        assert_eq!(ids, as_i64s(&case["input_ids"]), "{name}: input_ids");
        assert_eq!(example.labels, as_i64s(&case["labels"]), "{name}: labels");
        let warned = example
            .warnings
            .iter()
            .any(|w| matches!(w, ExampleWarning::LengthMismatch { .. }));
        assert_eq!(
            warned,
            case["whole_sample_masked_by_length_check"]
                .as_bool()
                .unwrap(),
            "{name}"
        );
        *slot = Some(builder);
        checked += 1;
    }
    assert_eq!(checked, 34);
}

/// Map-style robot items (OXE-ToM): `<action>` placeholders in the last answer, labelled by the
/// round rule (the 7 actions and `<|eot_id|>`, not the `\n\n`), then replaced by the action ids.
#[test]
fn action_placeholders_are_replaced_after_labelling() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("with-action-token");
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = model_dir("magma-tiny-crop");
    for entry in std::fs::read_dir(&tiny).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    // the fixture tokenizers have no `<action>`; Magma's training adds one
    let mut tokenizer = tokenizers::Tokenizer::from_file(tiny.join("tokenizer.json")).unwrap();
    tokenizer
        .add_special_tokens([tokenizers::AddedToken::from("<action>", true)])
        .unwrap();
    tokenizer.save(dir.join("tokenizer.json"), false).unwrap();

    let actions = vec![872u32, 904, 744, 999, 808, 872, 745];
    let item = ConversationItem {
        id: Some("tom".into()),
        conversations: vec![
            Turn {
                from: "human".into(),
                value: "<image>\nWhat should the robot do next?".into(),
            },
            Turn {
                from: "gpt".into(),
                value: "<action>".repeat(7),
            },
        ],
        image: Some(ImageField::One("frame.png".into())),
        action_token_ids: Some(actions.clone()),
        ..Default::default()
    };
    let builder = TrainingExampleBuilder::from_dir(&dir).unwrap();
    let example = builder.build(&item).unwrap();
    let eot = 1009;
    let n = example.input_ids.len();
    assert_eq!(&example.input_ids[n - 8..n - 1], &actions[..]);
    let expected: Vec<i64> = actions.iter().map(|&a| i64::from(a)).chain([eot]).collect();
    assert_eq!(&example.labels[n - 8..], &expected[..]);
    assert_eq!(
        example.n_labelled(),
        8,
        "the \\n\\n before the actions is not labelled"
    );

    // one action id too few is refused, naming the item
    let short = ConversationItem {
        action_token_ids: Some(actions[..6].to_vec()),
        ..item.clone()
    };
    let err = builder.build(&short).unwrap_err().to_string();
    assert!(
        err.contains("tom") && err.contains("6 action id(s) for 7"),
        "{err}"
    );

    // without an `<action>` token in the tokenizer the placeholders cannot be filled
    let plain = TrainingExampleBuilder::from_dir(&tiny).unwrap();
    let err = plain.build(&item).unwrap_err().to_string();
    assert!(err.contains("no `<action>` token"), "{err}");
}
