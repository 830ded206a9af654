//! Decoder-only speed and memory of a quantized LLaMA-3-8B-shaped Magma decoder with random
//! weights: build time, prefill of a prompt, greedy decode tokens/s and peak RSS.
//!
//! ```text
//! cargo run --release -p magma-model --example quant_decoder_speed -- q4k 32 300 24
//! #                                                     format layers prompt decode
//! ```

use candle_core::{DType, Device, Tensor};
use magma_model::llama::LlamaDecoder;
use magma_model::{MagmaConfig, Weights};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let format = arg(0, "q4k").parse()?;
    let layers: usize = arg(1, "32").parse()?;
    let prompt: usize = arg(2, "300").parse()?;
    let new_tokens: usize = arg(3, "24").parse()?;
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/bench-small"
    );
    let mut config = MagmaConfig::from_file(&std::path::Path::new(dir).join("config.json"))?;
    let text = &mut config.text;
    text.hidden_size = 4096;
    text.intermediate_size = 14336;
    text.num_hidden_layers = layers;
    text.num_attention_heads = 32;
    text.num_key_value_heads = Some(8);
    text.head_dim = None;
    text.vocab_size = 128_261;
    text.tie_word_embeddings = false;

    let built = Instant::now();
    let weights = Weights::random(DType::F32, &Device::Cpu).with_quantization(Some(format));
    let decoder = LlamaDecoder::load(&weights, &config.text)?;
    let build_s = built.elapsed().as_secs_f64();

    let ids: Vec<u32> = (0..prompt as u32).map(|i| 1000 + i % 2000).collect();
    let mut cache = decoder.new_cache();
    let t0 = Instant::now();
    let embeds = decoder.embed(&ids)?.unsqueeze(0)?;
    let mut logits = decoder.forward(&embeds, &mut cache, true)?;
    let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    for _ in 0..new_tokens {
        let next = logits.flatten_all()?.argmax(0)?.to_scalar::<u32>()?;
        let step: Tensor = decoder.embed(&[next])?.unsqueeze(0)?;
        logits = decoder.forward(&step, &mut cache, true)?;
    }
    let decode_tok_s = new_tokens as f64 / t1.elapsed().as_secs_f64();
    println!(
        "{{\"format\":\"{format}\",\"layers\":{layers},\"build_s\":{build_s:.1},\"prompt\":{prompt},\
         \"prefill_ms\":{prefill_ms:.0},\"decode_tok_s\":{decode_tok_s:.3},\"peak_rss_mb\":{:.0}}}",
        peak_rss_mb()
    );
    Ok(())
}

/// Peak resident memory (`VmHWM`, Linux; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
