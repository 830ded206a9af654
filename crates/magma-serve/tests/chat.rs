//! Chat completions, streaming, models, health and metrics over real HTTP against the tiny model,
//! checked against `MagmaPipeline::generate` run in-process with the same greedy settings.

mod common;

use candle_core::{DType, Device};
use common::*;
use magma_model::{GenerationParams, MagmaPipeline};
use serde_json::json;
use std::ops::ControlFlow;

fn reference(
    user_text: &str,
    images: &[image::RgbImage],
    params: &GenerationParams,
) -> magma_model::Generation {
    let pipeline = MagmaPipeline::load(&model_dir(), DType::F32, &Device::Cpu).expect("pipeline");
    pipeline
        .generate(user_text, images, None, params, &mut |_, _| {
            ControlFlow::Continue(())
        })
        .expect("reference generation")
}

fn greedy(max_new_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_new_tokens,
        ..Default::default()
    }
}

#[test]
fn chat_with_a_data_url_image_matches_the_pipeline_streamed_or_not() {
    let server = TestServer::start();
    let coffee = fixture_image("coffee");
    let expected = reference(
        "<image>\nWhat is in this image?",
        std::slice::from_ref(&coffee),
        &greedy(20),
    );
    assert!(!expected.text.is_empty());

    let response = server.post_json(
        "/v1/chat/completions",
        &image_chat(&coffee, "What is in this image?", 20),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.header("x-request-id").is_some());
    let body = response.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "magma-tiny-crop");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        expected.text.as_str()
    );
    assert_eq!(
        body["choices"][0]["finish_reason"],
        expected.finish_reason.as_str()
    );
    assert_eq!(body["usage"]["prompt_tokens"], expected.prompt_ids.len());
    assert_eq!(
        body["usage"]["completion_tokens"],
        expected.generated_ids.len()
    );
    assert_eq!(
        body["usage"]["total_tokens"],
        expected.prompt_ids.len() + expected.generated_ids.len()
    );

    let mut streaming = image_chat(&coffee, "What is in this image?", 20);
    streaming["stream"] = json!(true);
    streaming["stream_options"] = json!({"include_usage": true});
    let response = server.post_json("/v1/chat/completions", &streaming);
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let data = response.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(
        content.len() > 1,
        "text arrives in several chunks: {content:?}"
    );
    assert_eq!(content.concat(), expected.text);
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some(expected.finish_reason.as_str()));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], expected.generated_ids.len());
}

#[test]
fn text_only_chat_stop_strings_and_system_messages() {
    let server = TestServer::start();
    let expected = reference("Write a haiku about robots.", &[], &greedy(16));
    let body = server
        .post_json(
            "/v1/chat/completions",
            &text_chat("Write a haiku about robots.", 16),
        )
        .json();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        expected.text.as_str()
    );
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    // an explicit reference system prompt gives the same answer as none
    let explicit = json!({"messages": [
        {"role": "system", "content": magma_processor::DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "Write a haiku about robots."}], "max_tokens": 16});
    let body = server.post_json("/v1/chat/completions", &explicit).json();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        expected.text.as_str()
    );

    // a stop string cuts the text before its first occurrence, as the pipeline does
    let stop: String = expected.text.chars().skip(3).take(2).collect();
    let params = GenerationParams {
        stop_strings: vec![stop.clone()],
        ..greedy(16)
    };
    let cut = reference("Write a haiku about robots.", &[], &params);
    let mut request = text_chat("Write a haiku about robots.", 16);
    request["stop"] = json!(stop);
    let body = server.post_json("/v1/chat/completions", &request).json();
    assert_eq!(body["choices"][0]["message"]["content"], cut.text.as_str());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(cut.text.len() < expected.text.len());
}

#[test]
fn sampling_is_seeded() {
    let server = TestServer::start();
    let mut request = text_chat("Tell me a story.", 12);
    request["temperature"] = json!(1.0);
    request["seed"] = json!(7);
    let a = server.post_json("/v1/chat/completions", &request).json();
    let b = server.post_json("/v1/chat/completions", &request).json();
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
    let params = GenerationParams {
        temperature: 1.0,
        seed: 7,
        ..greedy(12)
    };
    let expected = reference("Tell me a story.", &[], &params);
    assert_eq!(
        a["choices"][0]["message"]["content"],
        expected.text.as_str()
    );
}

#[test]
fn models_health_and_metrics() {
    let server = TestServer::start();
    let health = server.get("/health").json();
    assert_eq!(health["model_loaded"], true);
    let models = server.get("/v1/models").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "magma-tiny-crop");
    server.post_json("/v1/chat/completions", &text_chat("Hi", 3));
    server.post("/v1/chat/completions", b"{not json", &[]);
    let metrics = server.get("/metrics");
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text();
    for needle in [
        "magma_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1",
        "magma_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 1",
        "magma_requests_total{route=\"/health\",status=\"200\"} 1",
        "magma_generated_tokens_total 3",
        "magma_request_duration_seconds_count 4",
        "magma_queue_depth 0",
        "# TYPE magma_engine_tokens_per_second gauge",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
}

#[test]
fn api_key_is_required_when_set() {
    let server = TestServer::with_config(|c| c.api_key = Some("sesame".into()));
    let body = text_chat("Hi", 2).to_string();
    server
        .post("/v1/chat/completions", body.as_bytes(), &[])
        .assert_error(401, "missing API key");
    server
        .post(
            "/v1/chat/completions",
            body.as_bytes(),
            &[("Authorization", "Bearer nope")],
        )
        .assert_error(401, "invalid API key");
    let ok = server.post(
        "/v1/chat/completions",
        body.as_bytes(),
        &[("Authorization", "Bearer sesame")],
    );
    assert_eq!(ok.status, 200);
    assert_eq!(server.get("/health").status, 200, "health stays open");
    request(server.addr, "GET", "/v1/models", &[], b"").assert_error(401, "missing API key");
}
