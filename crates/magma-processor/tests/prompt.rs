//! Prompt assembly on the tiny fixture model: placeholders, several images, message lists.

mod common;

use common::fixtures;
use magma_processor::{ChatMessage, Processor, DEFAULT_SYSTEM_PROMPT};

fn processor(model: &str) -> Processor {
    Processor::from_dir(&fixtures().join("models").join(model)).unwrap()
}

fn image(width: u32, height: u32, seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(seed),
            (y as u8).wrapping_add(seed),
            seed,
        ])
    })
}

#[test]
fn missing_placeholders_are_prepended_one_per_image() {
    let p = processor("magma-tiny-crop");
    let images = [image(60, 300, 3), image(600, 400, 7)];
    let implicit = p.process("Compare them.", &images, None).unwrap();
    let explicit = p
        .process("<image>\n<image>\nCompare them.", &images, None)
        .unwrap();
    assert_eq!(implicit, explicit);
    assert!(implicit.prompt.contains(
        "<image_start><image><image_end>\n<image_start><image><image_end>\nCompare them."
    ));
}

#[test]
fn several_images_concatenate_in_prompt_order() {
    let p = processor("magma-tiny-crop");
    let (tall, wide) = (image(60, 300, 3), image(600, 400, 7));
    let out = p
        .process("<image> then <image>", &[tall.clone(), wide.clone()], None)
        .unwrap();
    assert_eq!(out.image_grids, vec![(4, 1), (2, 2)]);
    // rows*f*(cols*f + 1) with f = 96/32 = 3.
    assert_eq!(out.image_tokens, vec![12 * 4, 6 * 7]);
    assert_eq!(out.merged_len, out.input_ids.len() - 2 + 48 + 42);
    assert_eq!(out.pixel_values.shape, [8, 3, 96, 96]);
    let first = p.image_processor().preprocess(&tall).unwrap();
    let second = p.image_processor().preprocess(&wide).unwrap();
    assert_eq!(&out.pixel_values.data[..first.crops().len()], first.crops());
    assert_eq!(
        &out.pixel_values.data[first.crops().len()..],
        second.crops()
    );
    let image_id = p.special_tokens().image;
    assert_eq!(
        out.input_ids.iter().filter(|&&id| id == image_id).count(),
        2
    );
}

#[test]
fn message_lists_get_the_default_system_prompt_and_trimmed_contents() {
    let p = processor("magma-tiny-global");
    let img = [image(32, 32, 1)];
    let single = p.process("  <image>\nWhat is it?\n\n", &img, None).unwrap();
    let messages = [ChatMessage::user("<image>\nWhat is it?")];
    let listed = p.process_messages(&messages, &img).unwrap();
    assert_eq!(single, listed);
    assert!(listed.prompt.contains(DEFAULT_SYSTEM_PROMPT));
    // The global model has no <image_start>/<image_end> rewrite.
    assert!(listed
        .prompt
        .contains("<|end_header_id|>\n\n<image>\nWhat is it?<|eot_id|>"));

    let custom = p.process("Hi", &[], Some("Be brief.")).unwrap();
    assert!(custom
        .prompt
        .contains("system<|end_header_id|>\n\nBe brief.<|eot_id|>"));
    assert!(!custom.prompt.contains(DEFAULT_SYSTEM_PROMPT));
}

#[test]
fn multi_turn_conversation_renders_every_turn() {
    let p = processor("magma-tiny-crop");
    let messages = [
        ChatMessage::system("S"),
        ChatMessage::user("Q1"),
        ChatMessage::assistant("A1"),
        ChatMessage::user("Q2"),
    ];
    let out = p.process_messages(&messages, &[]).unwrap();
    assert_eq!(
        out.prompt,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let bos = p.special_tokens().bos;
    assert_eq!(&out.input_ids[..3], &[bos, bos, 1006]);
}
