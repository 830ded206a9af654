//! End-to-end generation through the pipeline (processor + model) on the fixture models.

mod common;

use candle_core::{DType, Device};
use common::*;
use magma_model::{FinishReason, GenerationParams, MagmaPipeline};
use std::ops::ControlFlow;

fn pipeline(model: &str) -> MagmaPipeline {
    MagmaPipeline::load(
        &fixtures().join("models").join(model),
        DType::F32,
        &Device::Cpu,
    )
    .expect("pipeline loads")
}

fn image(name: &str) -> image::RgbImage {
    image::open(fixtures().join("images").join(format!("{name}.png")))
        .expect("fixture image")
        .to_rgb8()
}

fn greedy(max_new_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_new_tokens,
        ..Default::default()
    }
}

fn keep_going(_: u32, _: &str) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

#[test]
fn greedy_generation_reproduces_reference_ids_and_text() {
    for model in ["magma-tiny-crop", "magma-tiny-global"] {
        let pipeline = pipeline(model);
        for (case, images) in [
            ("photo_coffee", vec![image("coffee")]),
            ("text_only", vec![]),
        ] {
            let fixture = Case::new(model, case);
            let user_text = if images.is_empty() {
                "Write a haiku about robots."
            } else {
                "<image>\nWhat is in this image?"
            };
            let mut streamed = String::new();
            let out = pipeline
                .generate(user_text, &images, None, &greedy(24), &mut |_, delta| {
                    streamed.push_str(delta);
                    ControlFlow::Continue(())
                })
                .expect("generate");
            assert_eq!(
                out.prompt_ids,
                fixture.ids("input_ids"),
                "{model}/{case}: prompt ids"
            );
            assert_eq!(
                out.generated_ids,
                fixture.ids("generated_ids"),
                "{model}/{case}: greedy ids"
            );
            let expected_text = std::fs::read_to_string(fixture.dir.join("generated.txt")).unwrap();
            assert_eq!(out.text, expected_text, "{model}/{case}: text");
            assert_eq!(out.finish_reason, FinishReason::Length);
            assert!(
                expected_text.starts_with(&streamed)
                    || streamed.starts_with(expected_text.trim_end_matches('\u{FFFD}'))
            );
        }
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_seed_dependent() {
    let pipeline = pipeline("magma-tiny-crop");
    let sample = |seed| {
        let params = GenerationParams {
            max_new_tokens: 16,
            temperature: 1.0,
            top_k: Some(50),
            top_p: Some(0.95),
            seed,
            ..Default::default()
        };
        pipeline
            .generate(
                "Write a haiku about robots.",
                &[],
                None,
                &params,
                &mut keep_going,
            )
            .unwrap()
            .generated_ids
    };
    let first = sample(11);
    assert_eq!(first, sample(11));
    assert_ne!(first, sample(12));
    let greedy_ids = Case::new("magma-tiny-crop", "text_only").ids("generated_ids");
    assert_ne!(
        first,
        greedy_ids[..16],
        "sampling at temperature 1 differs from greedy"
    );
}

#[test]
fn stop_ids_stop_strings_cancel_and_length() {
    let pipeline = pipeline("magma-tiny-crop");
    let reference = Case::new("magma-tiny-crop", "text_only").ids("generated_ids");
    let prompt = "Write a haiku about robots.";
    // the first greedy token that did not occur before, used as an extra stop id
    let stop_at = (1..reference.len())
        .find(|&i| !reference[..i].contains(&reference[i]))
        .unwrap();
    let params = GenerationParams {
        max_new_tokens: 24,
        stop_token_ids: vec![reference[stop_at]],
        ..Default::default()
    };
    let out = pipeline
        .generate(prompt, &[], None, &params, &mut keep_going)
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.generated_ids, reference[..stop_at]);

    let mut calls = 0;
    let out = pipeline
        .generate(prompt, &[], None, &greedy(24), &mut |_, _| {
            calls += 1;
            if calls == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(out.generated_ids, reference[..3]);

    let out = pipeline
        .generate(prompt, &[], None, &greedy(5), &mut keep_going)
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!(out.generated_ids, reference[..5]);

    // a stop string taken from the middle of the greedy text cuts the text before it
    let full = pipeline.processor().decode(&reference).unwrap();
    let needle: String = full.chars().skip(8).take(3).collect();
    let params = GenerationParams {
        max_new_tokens: 24,
        stop_strings: vec![needle.clone()],
        ..Default::default()
    };
    let out = pipeline
        .generate(prompt, &[], None, &params, &mut keep_going)
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, full[..full.find(&needle).unwrap()]);
}
