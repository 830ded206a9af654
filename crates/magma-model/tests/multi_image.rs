//! Two images in one prompt: both are placed, in order, at their `<image>` tokens.

mod common;

use candle_core::{Tensor, D};
use common::*;
use magma_model::{GenerationParams, MagmaPipeline};
use std::ops::ControlFlow;

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn two_images_are_merged_in_order_at_their_tokens() {
    for model_name in ["magma-tiny-crop", "magma-tiny-global"] {
        let dir = fixtures().join("models").join(model_name);
        let pipeline =
            MagmaPipeline::load(&dir, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let processor = pipeline.processor();
        let model = pipeline.model();
        let load = |n: &str| {
            processor
                .load_image(&fixtures().join("images").join(n))
                .unwrap()
        };
        let (tall, coffee) = (load("synth_tall_60x300.png"), load("coffee.png"));
        let inputs = processor
            .process(
                "<image>\nand\n<image>\nWhich is brighter?",
                &[tall.clone(), coffee.clone()],
                None,
            )
            .unwrap();
        let images = pipeline.image_batch(&inputs).unwrap().unwrap();
        let features = model.image_features(&images).unwrap();
        assert_eq!(features.len(), 2);
        let lens: Vec<usize> = features.iter().map(|f| f.dim(0).unwrap()).collect();
        assert_eq!(lens, inputs.image_tokens, "{model_name}: feature counts");
        assert_ne!(
            lens[0], lens[1],
            "the two grids differ, so a swap would be visible"
        );

        // each image's features equal those of the same image processed alone
        for (k, image) in [tall, coffee].into_iter().enumerate() {
            let single = processor
                .process("<image>\nDescribe.", &[image], None)
                .unwrap();
            let alone = model
                .image_features(&pipeline.image_batch(&single).unwrap().unwrap())
                .unwrap();
            assert!(
                max_abs(&alone[0], &features[k]) < 1e-5,
                "{model_name}: image {k} features"
            );
        }

        let embeds = model
            .merge(&inputs.input_ids, &features)
            .unwrap()
            .squeeze(0)
            .unwrap();
        assert_eq!(embeds.dim(0).unwrap(), inputs.merged_len);
        let image_token = model.config().image_token_index;
        let positions: Vec<usize> = inputs
            .input_ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| id == image_token)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(positions.len(), 2);
        // image k starts at its token's index shifted by the earlier images' extra vectors
        let first_start = positions[0];
        let second_start = positions[1] + lens[0] - 1;
        assert!(
            max_abs(
                &embeds.narrow(0, first_start, lens[0]).unwrap(),
                &features[0]
            ) == 0.0
        );
        assert!(
            max_abs(
                &embeds.narrow(0, second_start, lens[1]).unwrap(),
                &features[1]
            ) == 0.0
        );
        // the text between the images is the embedding of the ids between the tokens
        let between: Vec<u32> = inputs.input_ids[positions[0] + 1..positions[1]].to_vec();
        let text = model.embed_tokens(&between).unwrap().squeeze(0).unwrap();
        let merged_between = embeds
            .narrow(0, first_start + lens[0], between.len())
            .unwrap();
        assert!(max_abs(&merged_between, &text) == 0.0);

        let out = pipeline
            .generate_from_inputs(
                &inputs,
                &GenerationParams {
                    max_new_tokens: 4,
                    ..Default::default()
                },
                &mut |_, _| ControlFlow::Continue(()),
            )
            .unwrap();
        assert_eq!(out.generated_ids.len(), 4);
    }
}
