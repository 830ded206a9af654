//! Stage-by-stage parity with the Python reference on every fixture case of both tiny models.

mod common;

use candle_core::Tensor;
use common::*;
use magma_model::AnyresStrategy;

fn check_model(model_name: &str) {
    let manifest = manifest();
    let model = load_model(model_name);
    let entry = manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model_name)
        .expect("model in manifest");
    // the geometry read from the weights matches the manifest's
    let geometry = &entry["trunk_geometry"];
    let as_vec = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    assert_eq!(model.trunk_geometry().depths, as_vec(&geometry["depths"]));
    assert_eq!(model.trunk_geometry().dims, as_vec(&geometry["dims"]));

    let tol = |name| tolerance(&manifest, name);
    for case_entry in entry["cases"].as_array().unwrap() {
        let case_name = case_entry["name"].as_str().unwrap();
        let case = Case::new(model_name, case_name);
        let what = |stage: &str| format!("{model_name}/{case_name}: {stage}");
        let input_ids = case.ids("input_ids");

        let features = match case.images() {
            Some(images) => {
                let trace = model
                    .image_features_traced(&images)
                    .expect("image features");
                match model.config().strategy {
                    AnyresStrategy::Crop => {
                        let (a, r) = tol("vision_features");
                        let nchw = trace.vision_features[0].permute((0, 3, 1, 2)).unwrap();
                        assert_close(
                            &what("vision_features"),
                            &nchw,
                            &case.tensor("vision_features"),
                            a,
                            r,
                        );
                        let (a, r) = tol("projector_output");
                        assert_close(
                            &what("projector_output"),
                            &trace.projector_outputs[0],
                            &case.tensor("projector_output"),
                            a,
                            r,
                        );
                    }
                    AnyresStrategy::Global => {
                        for k in 0..images.grids.len() {
                            let (a, r) = tol("vision_tower_input");
                            assert_close(
                                &what("tower input"),
                                &trace.tower_inputs[k],
                                &case.tensor(&format!("vision_tower_input_img{k}")),
                                a,
                                r,
                            );
                            let (a, r) = tol("vision_features");
                            let nchw = trace.vision_features[k].permute((0, 3, 1, 2)).unwrap();
                            assert_close(
                                &what("vision_features"),
                                &nchw,
                                &case.tensor(&format!("vision_features_img{k}")),
                                a,
                                r,
                            );
                            let (a, r) = tol("projector_output");
                            assert_close(
                                &what("projector_output"),
                                &trace.projector_outputs[k],
                                &case.tensor(&format!("projector_output_img{k}")),
                                a,
                                r,
                            );
                        }
                    }
                }
                let lens: Vec<u32> = trace
                    .image_features
                    .iter()
                    .map(|f| f.dim(0).unwrap() as u32)
                    .collect();
                assert_eq!(lens, case.ids("feature_lens"), "{}", what("feature_lens"));
                let all = Tensor::cat(&trace.image_features, 0).unwrap();
                let (a, r) = tol("image_features");
                assert_close(
                    &what("image_features"),
                    &all,
                    &case.tensor("image_features"),
                    a,
                    r,
                );
                trace.image_features
            }
            None => Vec::new(),
        };

        let embeds = model.merge(&input_ids, &features).expect("merge");
        let (a, r) = tol("inputs_embeds");
        assert_close(
            &what("inputs_embeds"),
            &embeds,
            &case.tensor("inputs_embeds"),
            a,
            r,
        );
        assert_eq!(
            embeds.dim(1).unwrap() as u64,
            case_entry["merged_len"].as_u64().unwrap()
        );

        // full prefill through the cache, then greedy steps that reuse it
        let mut cache = model.new_cache();
        let logits = model.forward(&embeds, &mut cache, false).expect("prefill");
        let (a, r) = tol("logits");
        assert_close(&what("logits"), &logits, &case.tensor("logits"), a, r);

        let step_logits = case.tensor("generated_step_logits");
        let expected_ids = case.ids("generated_ids");
        let mut last = logits
            .get(0)
            .unwrap()
            .get(embeds.dim(1).unwrap() - 1)
            .unwrap();
        let mut generated = Vec::new();
        for (step, &expected) in expected_ids.iter().enumerate() {
            assert_close(
                &what(&format!("step {step} logits")),
                &last,
                &step_logits.get(step).unwrap(),
                a,
                r,
            );
            let next = argmax(&last.to_vec1::<f32>().unwrap());
            generated.push(next);
            assert_eq!(next, expected, "{}", what(&format!("greedy token {step}")));
            assert_eq!(
                cache.len(),
                embeds.dim(1).unwrap() + step,
                "positions continue from the merged length"
            );
            let next_embeds = model.embed_tokens(&[next]).unwrap();
            last = model
                .forward(&next_embeds, &mut cache, true)
                .unwrap()
                .flatten_all()
                .unwrap();
        }
        assert_eq!(generated, expected_ids);
    }
}

#[test]
fn magma_tiny_crop_matches_reference() {
    check_model("magma-tiny-crop");
}

#[test]
fn magma_tiny_global_matches_reference() {
    check_model("magma-tiny-global");
}
