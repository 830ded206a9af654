//! Bad input gives a clear error naming the file, field or count, never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::fixtures;
use magma_processor::{
    decode_rgb_image, load_rgb_image, ImageProcessor, Processor, ProcessorError, DEFAULT_MAX_PIXELS,
};

fn tiny_model() -> PathBuf {
    fixtures().join("models/magma-tiny-crop")
}

/// A copy of the tiny model's processor files in a temp folder, with `edit` applied.
fn model_copy(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(tiny_model().join(file), dir.path().join(file)).unwrap();
    }
    edit(dir.path());
    dir
}

fn png_bytes(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(width, height, image::Rgb([10, 20, 30]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

#[test]
fn truncated_png_names_the_file() {
    let bytes = std::fs::read(fixtures().join("images/coffee.png")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.png");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_rgb_image(&path, DEFAULT_MAX_PIXELS).unwrap_err();
    assert!(matches!(err, ProcessorError::ImageDecode { .. }), "{err:?}");
    assert!(err.to_string().contains("cut.png"), "{err}");
}

#[test]
fn garbage_and_missing_files_are_errors() {
    let err =
        decode_rgb_image(b"\x89PNG\r\n\x1a\nnope", DEFAULT_MAX_PIXELS, "upload #1").unwrap_err();
    assert!(err.to_string().contains("upload #1"), "{err}");
    let err =
        load_rgb_image(Path::new("/nonexistent/picture.jpg"), DEFAULT_MAX_PIXELS).unwrap_err();
    assert!(
        matches!(err, ProcessorError::Io { .. }) && err.to_string().contains("picture.jpg"),
        "{err}"
    );
}

#[test]
fn zero_sized_image_is_rejected() {
    // A PNG header may claim 0x0 (the encoder refuses it, so patch the IHDR of a valid file).
    let mut bytes = png_bytes(1, 1);
    bytes[16..24].fill(0);
    let err = decode_rgb_image(&bytes, DEFAULT_MAX_PIXELS, "empty.png").unwrap_err();
    assert!(
        matches!(
            err,
            ProcessorError::EmptyImage { .. } | ProcessorError::ImageDecode { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("empty.png"), "{err}");

    let processor = Processor::from_dir(&tiny_model()).unwrap();
    let err = processor
        .process("<image>", &[image::RgbImage::new(0, 5)], None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProcessorError::EmptyImage {
                width: 0,
                height: 5,
                ..
            }
        ),
        "{err:?}"
    );
    let err = processor
        .image_processor()
        .preprocess(&image::RgbImage::new(7, 0))
        .unwrap_err();
    assert!(matches!(err, ProcessorError::EmptyImage { .. }), "{err:?}");
}

#[test]
fn image_over_the_pixel_limit_is_rejected_before_decoding() {
    let bytes = png_bytes(100, 50);
    let err = decode_rgb_image(&bytes, 4999, "big.png").unwrap_err();
    match &err {
        ProcessorError::ImageTooLarge {
            width,
            height,
            pixels,
            max_pixels,
            ..
        } => {
            assert_eq!(
                (*width, *height, *pixels, *max_pixels),
                (100, 50, 5000, 4999)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("big.png"));
    assert_eq!(
        decode_rgb_image(&bytes, 5000, "ok.png")
            .unwrap()
            .dimensions(),
        (100, 50)
    );

    // A header claiming 100000 x 100000 with no pixel data: refused from the header alone.
    let mut bomb = png_bytes(1, 1);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let err = decode_rgb_image(&bomb, DEFAULT_MAX_PIXELS, "bomb.png").unwrap_err();
    assert!(
        matches!(
            err,
            ProcessorError::ImageTooLarge { .. } | ProcessorError::ImageDecode { .. }
        ),
        "{err:?}"
    );

    let processor = Processor::from_dir(&tiny_model())
        .unwrap()
        .with_pixel_limit(100);
    let err = processor
        .process("<image>", &[image::RgbImage::new(11, 10)], None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProcessorError::ImageTooLarge {
                pixels: 110,
                max_pixels: 100,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn missing_or_malformed_tokenizer_json_names_the_file() {
    let dir = model_copy(|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    let err = Processor::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    let dir = model_copy(|d| std::fs::write(d.join("tokenizer.json"), "{\"model\": 42").unwrap());
    let err = Processor::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, ProcessorError::TokenizerLoad { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn missing_or_malformed_preprocessor_config_names_file_and_field() {
    let dir = model_copy(|d| std::fs::remove_file(d.join("preprocessor_config.json")).unwrap());
    let err = Processor::from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("preprocessor_config.json"),
        "{err}"
    );

    let dir =
        model_copy(|d| std::fs::write(d.join("preprocessor_config.json"), "{ not json").unwrap());
    let err = Processor::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, ProcessorError::Json { .. })
            && err.to_string().contains("preprocessor_config.json"),
        "{err}"
    );

    for (body, field) in [
        (
            r#"{"base_img_size": "big", "num_crops": 4}"#,
            "base_img_size",
        ),
        (r#"{"base_img_size": 96, "num_crops": 0}"#, "num_crops"),
        (
            r#"{"base_img_size": 96, "num_crops": 4, "image_mean": [0.5, 0.5]}"#,
            "image_mean",
        ),
        (
            r#"{"base_img_size": 96, "num_crops": 4, "image_std": [0.5, 0.0, 0.5]}"#,
            "image_std",
        ),
    ] {
        let dir = model_copy(|d| std::fs::write(d.join("preprocessor_config.json"), body).unwrap());
        let err =
            ImageProcessor::from_file(&dir.path().join("preprocessor_config.json")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(field) && text.contains("preprocessor_config.json"),
            "{body}: {text}"
        );
    }
}

#[test]
fn malformed_model_configs_name_the_field() {
    let dir = model_copy(|d| {
        let path = d.join("tokenizer_config.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        json["chat_template"] = "{% for m in messages %}{{ m['content'] }".into();
        std::fs::write(&path, json.to_string()).unwrap();
    });
    let err = Processor::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, ProcessorError::Template { .. })
            && err.to_string().contains("tokenizer_config.json"),
        "{err}"
    );

    let dir = model_copy(|d| {
        std::fs::write(
            d.join("config.json"),
            r#"{"image_token_index": 5, "mm_use_image_start_end": true}"#,
        )
        .unwrap()
    });
    let err = Processor::from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("image_token_index") && err.to_string().contains("config.json"),
        "{err}"
    );
}

#[test]
fn placeholder_count_mismatch_states_both_numbers() {
    let processor = Processor::from_dir(&tiny_model()).unwrap();
    let image = image::RgbImage::from_pixel(40, 30, image::Rgb([5, 6, 7]));
    let err = processor
        .process(
            "<image> and <image>\nCompare.",
            std::slice::from_ref(&image),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProcessorError::PlaceholderMismatch {
                placeholders: 2,
                images: 1
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains('2') && text.contains('1'), "{text}");

    let err = processor
        .process("<image>\nWhat is this?", &[], None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProcessorError::PlaceholderMismatch {
                placeholders: 1,
                images: 0
            }
        ),
        "{err:?}"
    );
}
