//! Parity with the Python reference on every case of the fixture manifest
//! (`tests/fixtures/magma-parity/cases.json`).

mod common;

use common::*;
use magma_processor::{
    load_rgb_image, ImageProcessor, ImageProcessorConfig, Processor, DEFAULT_MAX_PIXELS,
};
use serde_json::Value;

fn image_path(manifest: &Value, name: &str) -> std::path::PathBuf {
    let file = manifest["images"][name]["file"]
        .as_str()
        .unwrap_or_else(|| panic!("image {name} not in the manifest"));
    fixtures().join(file)
}

#[test]
fn every_model_case_matches_the_reference_inputs() {
    let manifest = manifest();
    let tol = tolerance(&manifest, "pixel_values");
    let mut checked = 0;
    for model in manifest["models"].as_array().expect("models") {
        let model_dir = fixtures().join(model["folder"].as_str().expect("folder"));
        let processor = Processor::from_dir(&model_dir).unwrap_or_else(|e| panic!("{e}"));
        for case in model["cases"].as_array().expect("cases") {
            let name = format!(
                "{}/{}",
                model["name"].as_str().unwrap(),
                case["name"].as_str().unwrap()
            );
            let case_dir = fixtures().join("cases").join(&name);
            let images: Vec<_> = case["images"]
                .as_array()
                .expect("images")
                .iter()
                .map(|n| {
                    load_rgb_image(
                        &image_path(&manifest, n.as_str().unwrap()),
                        DEFAULT_MAX_PIXELS,
                    )
                    .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            let user_text = case["user_text"].as_str().expect("user_text");
            let out = processor
                .process(user_text, &images, None)
                .unwrap_or_else(|e| panic!("{name}: {e}"));

            let prompt = std::fs::read_to_string(case_dir.join("prompt.txt")).unwrap();
            assert_eq!(out.prompt, prompt, "{name}: prompt");
            let ids: Vec<i64> = out.input_ids.iter().map(|&i| i as i64).collect();
            assert_eq!(
                ids,
                read_i64(&case_dir.join("input_ids.npy")),
                "{name}: input_ids"
            );
            let mask: Vec<i64> = out.attention_mask.iter().map(|&i| i as i64).collect();
            assert_eq!(
                mask,
                read_i64(&case_dir.join("attention_mask.npy")),
                "{name}: attention_mask"
            );
            assert_eq!(
                out.input_ids.len() as u64,
                case["prompt_len"].as_u64().unwrap(),
                "{name}: prompt_len"
            );
            assert_eq!(
                out.merged_len as u64,
                case["merged_len"].as_u64().unwrap(),
                "{name}: merged_len"
            );
            assert_eq!(
                out.image_tokens.iter().sum::<usize>() as u64,
                case["num_image_tokens"].as_u64().unwrap(),
                "{name}: image tokens"
            );

            if images.is_empty() {
                assert_eq!(
                    out.pixel_values.shape[0], 0,
                    "{name}: no crops without images"
                );
                assert!(!case_dir.join("pixel_values.npy").exists());
            } else {
                let sizes: Vec<i64> = out
                    .image_grids
                    .iter()
                    .flat_map(|&(r, c)| [r as i64, c as i64])
                    .collect();
                assert_eq!(
                    sizes,
                    read_i64(&case_dir.join("image_sizes.npy")),
                    "{name}: image_sizes"
                );
                let lens: Vec<i64> = out.image_tokens.iter().map(|&n| n as i64).collect();
                assert_eq!(
                    lens,
                    read_i64(&case_dir.join("feature_lens.npy")),
                    "{name}: feature_lens"
                );
                let reference = read_npy(&case_dir.join("pixel_values.npy"));
                assert_eq!(
                    &reference.shape[1..],
                    &out.pixel_values.shape,
                    "{name}: pixel_values shape"
                );
                assert_close(
                    &format!("{name}: pixel_values"),
                    &out.pixel_values.data,
                    &reference.to_f32(),
                    tol,
                );
            }

            let generated: Vec<u32> = read_i64(&case_dir.join("generated_ids.npy"))
                .iter()
                .map(|&i| i as u32)
                .collect();
            let text = std::fs::read_to_string(case_dir.join("generated.txt")).unwrap();
            assert_eq!(
                processor.decode(&generated).unwrap(),
                text,
                "{name}: decoded text"
            );
            assert_eq!(
                case["generated_text"].as_str().unwrap(),
                text,
                "{name}: manifest text"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 8, "every case of both models");
}

/// Checks one processor-only case against its fixture files (full or strided pixel values).
fn check_processor_case(case: &Value, processor: &ImageProcessor, manifest: &Value) {
    let name = format!(
        "{} ({})",
        case["name"].as_str().unwrap(),
        case["config"]["model"].as_str().unwrap()
    );
    let image = load_rgb_image(
        &fixtures().join(case["image"].as_str().unwrap()),
        DEFAULT_MAX_PIXELS,
    )
    .unwrap();
    let wh = as_usize_pair(&case["image_size_wh"]);
    assert_eq!(
        (image.width() as usize, image.height() as usize),
        wh,
        "{name}: image size"
    );
    let out = processor.preprocess(&image).unwrap();
    assert_eq!(
        out.grid(),
        as_usize_pair(&case["grid_rows_cols"]),
        "{name}: grid"
    );
    assert_eq!(
        out.resized_hw(),
        as_usize_pair(&case["resized_hw"]),
        "{name}: resized size"
    );
    let (rows, cols) = out.grid();
    assert_eq!(
        processor.num_image_tokens(rows, cols) as u64,
        case["num_image_tokens"].as_u64().unwrap(),
        "{name}: image tokens"
    );
    let shape: Vec<usize> = case["pixel_values_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(out.crops_shape().to_vec(), shape, "{name}: shape");

    // Per-channel sums over millions of values: float32 noise of ~1e-6 per element.
    let base = processor.base_img_size();
    let sums = channel_sums(out.crops(), base * base);
    for (c, reference) in case["pixel_values_sum_per_channel"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let reference = reference.as_f64().unwrap();
        let allowed = 1e-2 + 1e-6 * out.crops().len() as f64 + 1e-5 * reference.abs();
        assert!(
            (sums[c] - reference).abs() <= allowed,
            "{name}: channel {c} sum {} vs {reference}",
            sums[c]
        );
    }

    let tol = tolerance(manifest, "pixel_values");
    if let Some(sample) = case.get("pixel_values_sample") {
        let indices = sample["flat_indices"].as_array().unwrap();
        let values = sample["values"].as_array().unwrap();
        let ours: Vec<f32> = indices
            .iter()
            .map(|i| out.crops()[i.as_u64().unwrap() as usize])
            .collect();
        let reference: Vec<f32> = values.iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert!(!ours.is_empty());
        assert_close(&format!("{name}: sampled values"), &ours, &reference, tol);
    }
    for file in case
        .get("files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let rel = file["file"].as_str().unwrap();
        let path = fixtures().join(rel);
        if rel.ends_with("image_sizes.npy") {
            assert_eq!(
                read_i64(&path),
                vec![rows as i64, cols as i64],
                "{name}: image_sizes"
            );
        } else if rel.ends_with("pixel_values.npy") {
            let reference = read_npy(&path);
            assert_eq!(reference.shape, shape, "{name}: fixture shape");
            assert_close(
                &format!("{name}: pixel_values"),
                out.crops(),
                &reference.to_f32(),
                tol,
            );
        } else if rel.ends_with("pixel_values_strided.npy") {
            let stride = ["stride", "k"]
                .iter()
                .find_map(|k| {
                    file.get(*k)
                        .or_else(|| case.get(*k))
                        .and_then(Value::as_u64)
                })
                .unwrap_or_else(|| panic!("{name}: no stride given for {rel}"))
                as usize;
            let ours: Vec<f32> = out.crops().iter().step_by(stride).copied().collect();
            assert_close(
                &format!("{name}: strided pixel_values"),
                &ours,
                &read_npy(&path).to_f32(),
                tol,
            );
        } else {
            panic!("{name}: unexpected fixture file {rel}");
        }
    }
}

#[test]
fn every_processor_case_matches_the_reference() {
    let manifest = manifest();
    let mut tiny = 0;
    let mut magma_8b = 0;
    let magma_8b_processor = ImageProcessor::new(ImageProcessorConfig::magma_8b()).unwrap();
    for case in manifest["processor_cases"]
        .as_array()
        .expect("processor_cases")
    {
        let config = &case["config"];
        let model = config["model"].as_str().unwrap();
        if model.starts_with("Magma-8B") {
            assert_eq!(config["base_img_size"], 512);
            assert_eq!(config["num_crops"], 4);
            check_processor_case(case, &magma_8b_processor, &manifest);
            magma_8b += 1;
        } else {
            let processor = ImageProcessor::from_file(
                &fixtures()
                    .join("models")
                    .join(model)
                    .join("preprocessor_config.json"),
            )
            .unwrap();
            assert_eq!(
                processor.base_img_size() as u64,
                config["base_img_size"].as_u64().unwrap()
            );
            check_processor_case(case, &processor, &manifest);
            tiny += 1;
        }
    }
    // 7 images (incl. 7x5, 40x320, 320x40, 1280x720) x 2 tiny models, and Magma-8B statistics.
    assert_eq!((tiny, magma_8b), (14, 7));
}
