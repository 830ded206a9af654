//! Gradient parity with the reference (PyTorch oracle, `tests/fixtures/magma-train`): loss,
//! every gradient, three AdamW steps, in full / projector / LoRA mode on both tiny models, and
//! gradient accumulation over two micro-batches. Tolerances are the fixture manifest's.

use candle_core::{Device, Tensor};
use magma_train::data::{collate, load_collated_samples, Sample};
use magma_train::lora::LoraPlan;
use magma_train::model::{Mode, ModelSetup, TrainModel};
use magma_train::optim::{AdamW, AdamWConfig};
use magma_train::rng::TrainRng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PAD_ID: u32 = 1256;
const MAX_LENGTH: usize = 2048;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn fixture(model: &str) -> PathBuf {
    root().join("magma-train").join(model)
}

fn model_dir(model: &str) -> PathBuf {
    root().join("magma-parity/models").join(model)
}

fn samples(model: &str) -> Vec<Sample> {
    let batch = fixture(model).join("batch");
    load_collated_samples(&batch, "", &batch.join("pixel_values.npy")).unwrap()
}

fn npy_f32(path: &Path) -> Vec<f32> {
    magma_processor::npy::read(path).unwrap().to_f32()
}

fn npy_i64(path: &Path) -> Vec<i64> {
    magma_processor::npy::read(path).unwrap().to_i64().unwrap()
}

fn safetensors(path: &Path) -> BTreeMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect()
}

fn load(model: &str, mode: Mode) -> TrainModel {
    let lora = mode
        .is_lora()
        .then(|| LoraPlan::from_peft_dir(&fixture(model).join("lora/adapter_init")).unwrap());
    let setup = ModelSetup {
        mode,
        lora,
        drop_path_rate: 0.0,
        seed: 0,
        device: Device::Cpu,
    };
    TrainModel::load(&model_dir(model), setup).unwrap()
}

/// `|ours − ref| ≤ atol + rtol·|ref|` for every element of every reference tensor, the same
/// key set on both sides, and relative L2 over all tensors ≤ 1e-5.
fn assert_grads_match(
    ours: &BTreeMap<String, Tensor>,
    reference: &BTreeMap<String, Tensor>,
    what: &str,
) {
    let ours_keys: Vec<_> = ours.keys().collect();
    let ref_keys: Vec<_> = reference.keys().collect();
    assert_eq!(ours_keys, ref_keys, "{what}: gradient key sets differ");
    let (mut diff2, mut ref2) = (0f64, 0f64);
    for (name, r) in reference {
        let o = ours[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let r = r.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(o.len(), r.len(), "{what}: {name} size");
        for (i, (a, b)) in o.iter().zip(&r).enumerate() {
            let tol = 2e-6 + 1e-4 * b.abs();
            assert!(
                (a - b).abs() <= tol,
                "{what}: {name}[{i}] = {a}, reference {b}"
            );
            diff2 += ((a - b) as f64).powi(2);
            ref2 += (*b as f64).powi(2);
        }
    }
    let rel = (diff2 / ref2.max(1e-30)).sqrt();
    assert!(rel <= 1e-5, "{what}: relative L2 {rel}");
}

/// Parameters after AdamW steps: well-conditioned elements (g₀ = 0 or |g₀| ≥ 1e-6) within
/// 2e-5, the others within the sanity bound 2·lr·steps.
fn assert_params_match(
    ours: &BTreeMap<String, Tensor>,
    reference: &BTreeMap<String, Tensor>,
    grads0: &BTreeMap<String, Tensor>,
    steps: usize,
    what: &str,
) {
    for (name, r) in reference {
        let Some(o) = ours.get(name) else {
            // tensors the forward never uses are not trained (and not ours to hold)
            assert!(!grads0.contains_key(name), "{what}: {name} was not trained");
            continue;
        };
        let o = o.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let r = r.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let g = grads0[name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for i in 0..r.len() {
            let ill = g[i] != 0.0 && g[i].abs() < 1e-6;
            let tol = if ill { 2.0 * 1e-3 * steps as f32 } else { 2e-5 };
            assert!(
                (o[i] - r[i]).abs() <= tol,
                "{what}: {name}[{i}] = {}, reference {}",
                o[i],
                r[i]
            );
        }
    }
}

fn grads_by_name(model: &TrainModel, grads: &[Option<Tensor>]) -> BTreeMap<String, Tensor> {
    model
        .params()
        .iter()
        .zip(grads)
        .map(|(p, g)| (model.export_name(p), g.clone().unwrap()))
        .collect()
}

fn check_mode(model_name: &str, mode: Mode, folder: &str) {
    let model = load(model_name, mode.clone());
    let samples = samples(model_name);
    let refs: Vec<&Sample> = samples.iter().collect();
    let batch = collate(&refs, PAD_ID, MAX_LENGTH).unwrap();
    let dir = fixture(model_name);
    // the collation reproduces the reference collator's arrays
    assert_eq!(
        batch
            .input_ids
            .concat()
            .iter()
            .map(|&x| x as i64)
            .collect::<Vec<_>>(),
        npy_i64(&dir.join("batch/input_ids.npy"))
    );
    assert_eq!(
        batch.labels.concat(),
        npy_i64(&dir.join("batch/labels.npy"))
    );
    let mut rng = TrainRng::new(0);
    let step0 = model
        .gradients(std::slice::from_ref(&batch), &mut rng)
        .unwrap();
    let expected_loss = npy_f32(&dir.join(format!("{folder}/loss.npy")))[0] as f64;
    assert!(
        (step0.loss - expected_loss).abs() <= 2e-5,
        "{model_name} {folder}: loss {} vs {expected_loss}",
        step0.loss
    );
    let reference_grads = safetensors(&dir.join(format!("{folder}/grads.safetensors")));
    let ours = grads_by_name(&model, &step0.grads);
    assert_grads_match(&ours, &reference_grads, &format!("{model_name} {folder}"));

    // three AdamW steps on the same batch (lr 1e-3, wd 0.01 on every tensor, constant lr)
    let losses = npy_f32(&dir.join(format!("{folder}/losses.npy")));
    let config = AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let mut opt = AdamW::new(config, model.params().len());
    let vars: Vec<_> = model.params().iter().map(|p| &p.var).collect();
    let decay = vec![true; vars.len()];
    let mut grads = step0.grads;
    for (step, &expected) in losses.iter().enumerate() {
        if step > 0 {
            let g = model
                .gradients(std::slice::from_ref(&batch), &mut rng)
                .unwrap();
            assert!(
                (g.loss - expected as f64).abs() <= 5e-5,
                "{model_name} {folder}: loss after step {step}: {} vs {expected}",
                g.loss
            );
            grads = g.grads;
        }
        if step < 3 {
            opt.step(&vars, &grads, &decay, 1e-3).unwrap();
        }
    }
    let after = model.state_tensors().unwrap();
    let reference_after = if mode.is_lora() {
        safetensors(&dir.join("lora/adapter_step3/adapter_model.safetensors"))
    } else {
        safetensors(&dir.join(format!("{folder}/params_after.safetensors")))
    };
    assert_params_match(
        &after,
        &reference_after,
        &reference_grads,
        3,
        &format!("{model_name} {folder} step 3"),
    );
    // every trained tensor is in the reference
    for name in after.keys() {
        assert!(
            reference_after.contains_key(name),
            "{name} not in the reference"
        );
    }
}

#[test]
fn full_crop() {
    check_mode("magma-tiny-crop", Mode::Full, "full");
}

#[test]
fn full_global() {
    check_mode("magma-tiny-global", Mode::Full, "full");
}

#[test]
fn projector_crop() {
    check_mode("magma-tiny-crop", Mode::Projector, "projector");
}

#[test]
fn projector_global() {
    check_mode("magma-tiny-global", Mode::Projector, "projector");
}

#[test]
fn lora_crop() {
    check_mode(
        "magma-tiny-crop",
        Mode::Lora {
            train_projector: false,
        },
        "lora",
    );
}

#[test]
fn lora_global() {
    check_mode(
        "magma-tiny-global",
        Mode::Lora {
            train_projector: false,
        },
        "lora",
    );
}

/// Two micro-batches (rows 0–1 and 2–3, each collated on its own): the accumulated gradient is
/// the mean of the micro-batch gradients, as HF Trainer hands it to the optimizer.
fn check_accumulation(model_name: &str) {
    let model = load(model_name, Mode::Full);
    let samples = samples(model_name);
    let dir = fixture(model_name).join("accum");
    let micro: Vec<_> = [&samples[0..2], &samples[2..4]]
        .iter()
        .enumerate()
        .map(|(k, part)| {
            let refs: Vec<&Sample> = part.iter().collect();
            let batch = collate(&refs, PAD_ID, MAX_LENGTH).unwrap();
            assert_eq!(
                batch
                    .input_ids
                    .concat()
                    .iter()
                    .map(|&x| x as i64)
                    .collect::<Vec<_>>(),
                npy_i64(&dir.join(format!("mb{k}_input_ids.npy")))
            );
            assert_eq!(
                batch.labels.concat(),
                npy_i64(&dir.join(format!("mb{k}_labels.npy")))
            );
            batch
        })
        .collect();
    let out = model.gradients(&micro, &mut TrainRng::new(0)).unwrap();
    let reference = safetensors(&dir.join("grads.safetensors"));
    assert_grads_match(
        &grads_by_name(&model, &out.grads),
        &reference,
        &format!("{model_name} accum"),
    );
}

#[test]
fn accumulation_crop() {
    check_accumulation("magma-tiny-crop");
}

#[test]
fn accumulation_global() {
    check_accumulation("magma-tiny-global");
}

/// The merge reproduces the reference's merged labels and position ids exactly.
#[test]
fn merged_layout_matches() {
    for model_name in ["magma-tiny-crop", "magma-tiny-global"] {
        let model = load(model_name, Mode::Projector);
        let samples = samples(model_name);
        let refs: Vec<&Sample> = samples.iter().collect();
        let batch = collate(&refs, PAD_ID, MAX_LENGTH).unwrap();
        // feature rows per image: rows·h · (cols·w + 1) with h = w = base / 32 (crop) or the
        // stitched picture's (global): both equal to feature_len of the grid
        let dir = fixture(model_name).join("batch");
        let merged_labels = npy_i64(&dir.join("merged_labels.npy"));
        let t = merged_labels.len() / batch.len();
        let side = if model_name.ends_with("crop") { 3 } else { 2 };
        let lens: Vec<Vec<usize>> = batch
            .image_grids
            .iter()
            .map(|g| {
                g.iter()
                    .map(|&(r, c)| magma_model::projector::feature_len(r, c, side, side))
                    .collect()
            })
            .collect();
        let layout = model.model.merged_layout(&batch, &lens).unwrap();
        assert_eq!(layout.labels.concat(), merged_labels, "{model_name}");
        assert_eq!(layout.labels[0].len(), t);
        assert_eq!(
            layout.position_ids.concat(),
            npy_i64(&dir.join("position_ids.npy")),
            "{model_name}"
        );
        assert_eq!(
            layout
                .attention_mask
                .concat()
                .iter()
                .map(|&m| m as i64)
                .collect::<Vec<_>>(),
            npy_i64(&dir.join("merged_attention_mask.npy"))
        );
        assert!(!layout.left_padded);
    }
}

/// QLoRA: the same adapters over a q8_0 base. The loss and the adapter gradients stay close to
/// the float32 LoRA ones (quantization error only), are not identical to them (the base really
/// is quantized), and three AdamW steps lower the loss as in the reference's LoRA run.
#[test]
fn qlora_q8_0_tracks_lora() {
    let name = "magma-tiny-crop";
    let exact = load(
        name,
        Mode::Lora {
            train_projector: false,
        },
    );
    let format = "q8_0".parse().unwrap();
    let quantized = load(
        name,
        Mode::Qlora {
            format,
            train_projector: false,
        },
    );
    let samples = samples(name);
    let refs: Vec<&Sample> = samples.iter().collect();
    let batch = collate(&refs, PAD_ID, MAX_LENGTH).unwrap();
    let mut rng = TrainRng::new(0);
    let e = exact
        .gradients(std::slice::from_ref(&batch), &mut rng)
        .unwrap();
    let q = quantized
        .gradients(std::slice::from_ref(&batch), &mut rng)
        .unwrap();
    assert!(q.loss != e.loss, "the base was not quantized");
    assert!(
        (q.loss - e.loss).abs() < 0.05,
        "loss {} vs {}",
        q.loss,
        e.loss
    );
    let (mut d2, mut r2) = (0f64, 0f64);
    for (a, b) in q.grads.iter().zip(&e.grads) {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        d2 += (a - b)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        r2 += b
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
    }
    assert!(
        (d2 / r2).sqrt() < 0.05,
        "adapter gradients differ by {}",
        (d2 / r2).sqrt()
    );
    let config = AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let mut opt = AdamW::new(config, quantized.params().len());
    let vars: Vec<_> = quantized.params().iter().map(|p| &p.var).collect();
    let decay = vec![true; vars.len()];
    let mut grads = q.grads;
    for _ in 0..3 {
        opt.step(&vars, &grads, &decay, 1e-3).unwrap();
        grads = quantized
            .gradients(std::slice::from_ref(&batch), &mut rng)
            .unwrap()
            .grads;
    }
    let after = quantized
        .gradients(std::slice::from_ref(&batch), &mut rng)
        .unwrap()
        .loss;
    let reference_after = npy_f32(&fixture(name).join("lora/losses.npy"))[3] as f64;
    assert!(after < q.loss - 0.3, "loss {} -> {after}", q.loss);
    assert!(
        (after - reference_after).abs() < 0.05,
        "{after} vs the f32 LoRA run's {reference_after}"
    );
}
