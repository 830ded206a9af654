//! `/act`: OpenVLA's deploy-server protocol on the tiny model, decoded with magma-actions.

mod common;

use candle_core::{DType, Device};
use common::*;
use magma_actions::robot::{extract_action_ids, ActionTokenizer, StatisticsSet};
use magma_model::{FinishReason, GenerationParams, MagmaPipeline};
use magma_serve::numpy::decode_f64_array;
use serde_json::json;
use std::ops::ControlFlow;

fn robot_frame() -> image::RgbImage {
    image::RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 9) as u8, ((x + y) * 3) as u8])
    })
}

/// The ids MagmaPipeline generates for the robot prompt, with the reference's trailing stop token.
fn reference_output(instruction: &str, max_new_tokens: usize) -> Vec<u32> {
    let pipeline = MagmaPipeline::load(&model_dir(), DType::F32, &Device::Cpu).expect("pipeline");
    let prompt = magma_actions::prompts::robot_action(&instruction.to_lowercase());
    let params = GenerationParams {
        max_new_tokens,
        ..Default::default()
    };
    let out = pipeline
        .generate(&prompt, &[robot_frame()], None, &params, &mut |_, _| {
            ControlFlow::Continue(())
        })
        .expect("generate");
    let mut ids = out.generated_ids;
    if out.finish_reason == FinishReason::Stop {
        ids.push(pipeline.stop_ids()[0]);
    }
    ids
}

#[test]
fn act_returns_the_decoded_unnormalised_action() {
    let server = TestServer::start();
    let body = json!({
        "image": numpy_image(&robot_frame(), "|u1"),
        "instruction": "Pick up the Coke can",
        "unnorm_key": "bridge_orig",
        "max_tokens": 12,
    });
    let response = server.post_json("/act", &body);
    assert_eq!(response.status, 200, "{}", response.text());
    let action = decode_f64_array(&response.json()).expect("a json-numpy <f8 array");
    assert_eq!(action.len(), 7);

    let output = reference_output("Pick up the Coke can", 12);
    let ids = extract_action_ids(&output, 7).unwrap();
    let header: Vec<u32> = response
        .header("x-magma-action-ids")
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(header, ids);
    // tiny model: tokenizer_vocab_size 1000, action ids 744..=999
    let tokenizer = ActionTokenizer::new(1000).unwrap();
    let stats = StatisticsSet::builtin();
    let expected = stats
        .get(Some("bridge_orig"))
        .unwrap()
        .action
        .unnormalize(&tokenizer.decode(ids))
        .unwrap();
    assert_eq!(action, expected);

    // the double-encoded forms answer with a JSON string holding the same array
    for double in [
        json!(body.to_string()),
        json!({"encoded": body.to_string()}),
    ] {
        let response = server.post_json("/act", &double);
        assert_eq!(response.status, 200, "{}", response.text());
        let inner: serde_json::Value =
            serde_json::from_str(response.json().as_str().unwrap()).unwrap();
        assert_eq!(decode_f64_array(&inner).unwrap(), expected);
    }
}

#[test]
fn act_errors_are_json_or_openvla_strings() {
    let server = TestServer::start();
    let frame = robot_frame();
    let too_short = json!({"image": numpy_image(&frame, "uint8"), "instruction": "wave",
        "unnorm_key": "bridge_orig", "max_tokens": 3});
    server
        .post_json("/act", &too_short)
        .assert_error(422, "fewer than the 7 action tokens");
    let no_key = json!({"image": numpy_image(&frame, "<u1"), "instruction": "wave"});
    server
        .post_json("/act", &no_key)
        .assert_error(400, "bridge_orig");
    let bad_key =
        json!({"image": numpy_image(&frame, "<u1"), "instruction": "wave", "unnorm_key": "mars"});
    server
        .post_json("/act", &bad_key)
        .assert_error(400, "unknown unnorm_key `mars`");
    let mut wrong_dtype = numpy_image(&frame, "<f4");
    server
        .post_json("/act", &json!({"image": wrong_dtype.clone(), "instruction": "wave", "unnorm_key": "bridge_orig"}))
        .assert_error(400, "dtype `<f4`");
    wrong_dtype["dtype"] = json!("|u1");
    wrong_dtype["shape"] = json!([24, 32, 4]);
    server
        .post_json(
            "/act",
            &json!({"image": wrong_dtype, "instruction": "wave", "unnorm_key": "bridge_orig"}),
        )
        .assert_error(400, "[height, width, 3]");
    server
        .post_json(
            "/act",
            &json!({"image": numpy_image(&frame, "|u1"), "unnorm_key": "bridge_orig"}),
        )
        .assert_error(400, "instruction");

    let compat = TestServer::with_config(|c| c.openvla_compat_errors = true);
    let response = compat.post_json("/act", &too_short);
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!("error"));
}
