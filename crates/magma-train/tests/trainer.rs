//! The training loop end to end on the public tiny model: resume after a crash reproduces the
//! uninterrupted run, a tiny model learns a small task, exports have PEFT's layout, bad input
//! gives clear errors.

use candle_core::Device;
use magma_train::config::TrainConfig;
use magma_train::trainer::StepRecord;
use magma_train::{TrainError, Trainer};
use std::path::{Path, PathBuf};

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/magma-parity/models/magma-tiny-crop")
}

/// Short text-only Q/A items (each gets the reference's black dummy image).
const QA: [(&str, &str); 4] = [
    ("What colour is the sky?", "blue"),
    ("What do cows drink?", "water"),
    ("Name a prime number.", "seven"),
    ("Which way is up?", "north"),
];

fn write_data(dir: &Path) -> PathBuf {
    let items: Vec<_> = QA
        .iter()
        .enumerate()
        .map(|(i, (q, a))| {
            serde_json::json!({
                "id": format!("qa{i}"),
                "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
            })
        })
        .collect();
    let path = dir.join("train.json");
    std::fs::write(&path, serde_json::to_string(&items).unwrap()).unwrap();
    path
}

fn config(dir: &Path, mode: &str, extra: &str) -> TrainConfig {
    let data = write_data(dir);
    let text = format!(
        r#"
model = "{model}"
mode = "{mode}"
[data]
train = "{data}"
max_length = 256
[lora]
r = 4
alpha = 8
targets = "q_proj|v_proj"
train_projector = true
[train]
batch_size = 2
micro_batch_size = 1
shuffle = true
seed = 3
out = "{out}"
{extra}
"#,
        model = model_dir().display(),
        data = data.display(),
        out = dir.join("out").display(),
    );
    TrainConfig::from_toml_str(&text).unwrap()
}

fn metrics(dir: &Path) -> Vec<StepRecord> {
    std::fs::read_to_string(dir.join("out/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn final_params(trainer: &Trainer) -> Vec<(String, Vec<f32>)> {
    trainer
        .model
        .params()
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.var.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect()
}

/// A run interrupted after step 3 (checkpoint at step 2, step 3's metrics line already written,
/// as after `kill -9` mid-run) and resumed gives the same loss curve and final weights as one
/// that was never interrupted. LoRA with dropout, so the generator state matters too.
#[test]
fn resume_reproduces_the_uninterrupted_run() {
    let extra = "steps = 5\nsave_every = 2";
    let straight = tempfile::tempdir().unwrap();
    let mut cfg = config(straight.path(), "lora", extra);
    cfg.lora.dropout = 0.1;
    let mut uninterrupted = Trainer::new(cfg, &model_dir(), Device::Cpu).unwrap();
    uninterrupted.run(&mut |_, _| {}).unwrap();
    let expected = metrics(straight.path());
    assert_eq!(expected.len(), 5);

    let crashed = tempfile::tempdir().unwrap();
    let mut cfg = config(crashed.path(), "lora", extra);
    cfg.lora.dropout = 0.1;
    {
        let mut first = Trainer::new(cfg.clone(), &model_dir(), Device::Cpu).unwrap();
        first.run_until(3, &mut |_, _| {}).unwrap();
        // the process dies here: no checkpoint for step 3
    }
    assert_eq!(metrics(crashed.path()).len(), 3);
    let mut resumed = Trainer::new(cfg, &model_dir(), Device::Cpu).unwrap();
    assert_eq!(resumed.resume().unwrap(), Some(2));
    assert_eq!(
        metrics(crashed.path()).len(),
        2,
        "lines after the checkpoint are dropped"
    );
    resumed.run(&mut |_, _| {}).unwrap();
    let got = metrics(crashed.path());
    let losses = |m: &[StepRecord]| m.iter().map(|r| (r.step, r.loss)).collect::<Vec<_>>();
    assert_eq!(losses(&got), losses(&expected));
    assert_eq!(final_params(&resumed), final_params(&uninterrupted));
}

/// A corrupt checkpoint is refused with its path named, and nothing is changed.
#[test]
fn corrupt_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "projector", "steps = 2\nsave_every = 1");
    let mut trainer = Trainer::new(cfg.clone(), &model_dir(), Device::Cpu).unwrap();
    trainer.run(&mut |_, _| {}).unwrap();
    let ckpt = dir
        .path()
        .join("out/checkpoints/step-00000002/params.safetensors");
    std::fs::write(&ckpt, b"not a safetensors file").unwrap();
    let mut again = Trainer::new(cfg, &model_dir(), Device::Cpu).unwrap();
    let before = final_params(&again);
    let err = again.resume().unwrap_err();
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("params.safetensors"), "{err}");
    assert_eq!(final_params(&again), before);
}

#[test]
fn unknown_lora_target_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "lora", "steps = 1");
    cfg.lora.targets = "qkv_proj".into();
    let err = Trainer::new(cfg, &model_dir(), Device::Cpu).err().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("qkv_proj") && text.contains("q_proj"),
        "{text}"
    );
}

#[test]
fn conversation_without_answer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "projector", "steps = 1");
    let items =
        serde_json::json!([{"id": "lonely", "conversations": [{"from": "human", "value": "hi"}]}]);
    std::fs::write(&cfg.data.train, items.to_string()).unwrap();
    let err = Trainer::new(cfg, &model_dir(), Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("lonely"), "{err}");
}

/// LoRA export: PEFT key names and config fields; `--dump-grads` names match the adapter's.
#[test]
fn lora_export_has_peft_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "lora", "steps = 1");
    let mut trainer = Trainer::new(cfg, &model_dir(), Device::Cpu).unwrap();
    let dump = dir.path().join("grads.safetensors");
    trainer.dump_grads = Some(dump.clone());
    trainer.run(&mut |_, _| {}).unwrap();
    let out = dir.path().join("adapter");
    magma_train::export::write_adapter(&trainer.model, trainer.lora_plan().unwrap(), "base", &out)
        .unwrap();
    let tensors =
        candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let key = magma_train::export::peft_lora_key(
        "language_model.model.layers.1.self_attn.v_proj",
        "lora_B",
    );
    assert_eq!(tensors[&key].dims(), &[32, 4]);
    assert!(tensors.contains_key("base_model.model.multi_modal_projector.proj.0.weight"));
    assert!(!tensors.keys().any(|k| k.contains("k_proj")));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["modules_to_save"][0], "multi_modal_projector");
    let re = regex_lite(config["target_modules"].as_str().unwrap());
    assert!(re("language_model.model.layers.0.self_attn.q_proj"));
    assert!(!re("language_model.model.layers.0.self_attn.k_proj"));
    let grads = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
    let mut a: Vec<_> = grads.keys().collect();
    let mut b: Vec<_> = tensors.keys().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

/// PEFT full-matches a string `target_modules`; this checks the one we write the same way.
fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    move |s| re.is_match(s)
}

/// The tiny random model learns four short answers: the loss falls by more than half and
/// greedy decoding of the exported model reproduces every answer.
#[test]
fn tiny_model_learns_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "full", "steps = 60");
    cfg.train.batch_size = 4;
    cfg.train.micro_batch_size = 4;
    cfg.optim.lr = 1e-2;
    cfg.optim.weight_decay = 0.0;
    let mut trainer = Trainer::new(cfg, &model_dir(), Device::Cpu).unwrap();
    trainer.run(&mut |_, _| {}).unwrap();
    let m = metrics(dir.path());
    let (first, last) = (m[0].loss, m[m.len() - 1].loss);
    assert!(last < first / 2.0, "loss {first} -> {last}");
    let out = dir.path().join("model");
    magma_train::export::write_model(&trainer.model, &out, false).unwrap();
    let pipeline =
        magma_model::MagmaPipeline::load(&out, candle_core::DType::F32, &Device::Cpu).unwrap();
    let base = 96;
    let black = image::RgbImage::new(base, base);
    for (q, a) in QA {
        let params = magma_model::GenerationParams {
            max_new_tokens: 8,
            ..Default::default()
        };
        let generation = pipeline
            .generate(
                &format!("<image>\n{q}"),
                std::slice::from_ref(&black),
                Some("You are agent that can see, talk and act."),
                &params,
                &mut |_, _| std::ops::ControlFlow::Continue(()),
            )
            .unwrap();
        assert_eq!(generation.text.trim(), a, "answer to {q:?}");
    }
}

/// A robot (RLDS) item: loss on its last 9 tokens (`\n\n`, 7 action ids, `<|eot_id|>`), and the
/// metrics report action-token accuracy.
#[test]
fn robot_sample_trains_on_its_actions() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "projector", "steps = 1");
    cfg.train.batch_size = 1;
    cfg.train.micro_batch_size = 1;
    let frame = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/magma-train/images/robot_frame_magma-tiny-crop.png");
    let item = serde_json::json!([{
        "id": "robot", "rlds": true,
        "language_instruction": "Pick up the red cup and place it on the plate",
        "action_token_ids": [904, 803, 828, 819, 889, 745, 872],
        "image": frame
    }]);
    std::fs::write(&cfg.data.train, item.to_string()).unwrap();
    let mut trainer = Trainer::new(cfg, &model_dir(), Device::Cpu).unwrap();
    trainer.run(&mut |_, _| {}).unwrap();
    let m = metrics(dir.path());
    assert_eq!(m[0].labelled_tokens, 9);
    // 7 of the 9 targets are action ids (the tiny tokenizer's action range is [744, 1000))
    assert!(m[0].action_accuracy.is_some());
}
