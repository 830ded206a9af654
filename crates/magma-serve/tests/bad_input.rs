//! Bad requests get a 4xx JSON error saying what was wrong, and the server keeps working.

mod common;

use common::*;
use serde_json::json;

fn chat_with_parts(parts: serde_json::Value) -> serde_json::Value {
    json!({"messages": [{"role": "user", "content": parts}], "max_tokens": 2})
}

#[test]
fn malformed_requests_get_precise_4xx_errors() {
    let server = TestServer::with_config(|c| {
        c.limits.max_images = 2;
        c.limits.max_body_bytes = 4 << 20;
    });
    let post = |body: serde_json::Value| server.post_json("/v1/chat/completions", &body);
    let tiny = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10]));
    let url = png_data_url(&tiny);

    server
        .post("/v1/chat/completions", b"{\"messages\": [", &[])
        .assert_error(400, "invalid JSON");
    post(json!([1, 2])).assert_error(400, "expected a JSON object");
    post(json!({"messages": "hi"})).assert_error(400, "messages: expected an array");
    post(json!({"messages": []})).assert_error(400, "at least one message");
    post(json!({"messages": [{"role": "user", "content": 5}]})).assert_error(
        400,
        "messages[0].content: expected a string or an array of parts, got a number",
    );
    post(json!({"messages": [{"role": "wizard", "content": "hi"}]}))
        .assert_error(400, "unknown role `wizard`");
    post(json!({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}))
        .assert_error(400, "temperature: expected a number, got a string");
    post(json!({"messages": [{"role": "user", "content": "hi"}], "n": 2}))
        .assert_error(400, "only n = 1");
    post(json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}))
        .assert_error(400, "max_tokens: expected a non-negative integer");
    post(json!({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}))
        .assert_error(400, "top_p: must be in (0, 1]");
    post(chat_with_parts(json!([{"type": "audio", "data": "x"}])))
        .assert_error(400, "unsupported part type `audio`");
    post(chat_with_parts(
        json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]),
    ))
    .assert_error(400, "invalid base64");
    post(chat_with_parts(
        json!([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]),
    ))
    .assert_error(400, "remote image URLs are disabled");
    let text_file = format!(
        "data:image/png;base64,{}",
        base64_of(b"just some text, not an image")
    );
    post(chat_with_parts(
        json!([{"type": "image_url", "image_url": {"url": text_file}}]),
    ))
    .assert_error(400, "cannot decode image");
    let bomb = bomb_png(20_000);
    assert!(bomb.len() < 100_000, "bomb is {} bytes", bomb.len());
    let bomb_url = format!("data:image/png;base64,{}", base64_of(&bomb));
    post(chat_with_parts(
        json!([{"type": "image_url", "image_url": {"url": bomb_url}}]),
    ))
    .assert_error(400, "20000x20000");
    let three: Vec<_> = (0..3)
        .map(|_| json!({"type": "image_url", "image_url": {"url": url}}))
        .collect();
    post(chat_with_parts(json!(three))).assert_error(400, "too many images: at most 2");
    post(chat_with_parts(
        json!([{"type": "text", "text": "<image> where is it?"}]),
    ))
    .assert_error(400, "placeholder");
    post(json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 9000}))
        .assert_error(400, "too many tokens");
    let huge = vec![b'x'; 5 << 20];
    server
        .post("/v1/chat/completions", &huge, &[])
        .assert_error(413, "over the limit");
    server
        .get("/v2/everything")
        .assert_error(404, "GET /v2/everything");
    server
        .post_json("/v1/som", &json!({"image": "%%%", "boxes": []}))
        .assert_error(400, "image: invalid base64");

    // still healthy and answering
    assert_eq!(server.get("/health").status, 200);
    assert_eq!(post(text_chat("hi", 2)).status, 200);
}

#[test]
fn som_marks_a_screenshot() {
    let server = TestServer::start();
    let shot = image::RgbImage::from_pixel(320, 200, image::Rgb([240, 240, 240]));
    let boxes = json!([[20, 30, 120, 70], [150, 100, 300, 180]]);
    let response = server.post_json(
        "/v1/som",
        &json!({"image": png_data_url(&shot), "boxes": boxes, "format": "pixels"}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    // the same marks as magma-marks computes directly
    let parsed = magma_marks::parse_boxes(
        &boxes.to_string(),
        "boxes",
        magma_marks::BoxFormat::Pixels,
        320,
        200,
    )
    .unwrap();
    let direct = magma_marks::mark_screenshot(&shot, &parsed.boxes, &Default::default()).unwrap();
    assert_eq!(body["marks"], serde_json::to_value(&direct.marks).unwrap());
    assert_eq!(body["prompt_list"], direct.prompt_list());
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        body["image"].as_str().unwrap(),
    )
    .unwrap();
    let marked = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(marked, direct.image);
    server
        .post_json(
            "/v1/som",
            &json!({"image": png_data_url(&shot), "boxes": boxes, "format": "hexagons"}),
        )
        .assert_error(400, "format");
}

fn base64_of(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}
