"""Random-weight, text-only Magma-8B-shaped bf16 checkpoint (sharded, HF layout) to measure the
peak memory of `magma quantize` on full-size tensors. Values come from a small random pool.

    python3 scripts/make-random-8b-checkpoint.py /tmp/ckpt8b [layers=32]     # needs torch, safetensors
    /usr/bin/time -v magma quantize --model /tmp/ckpt8b --format q4k --out /tmp/ckpt8b-q4k
"""
import json, os, shutil, sys, torch
from safetensors.torch import save_file
src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "bench-small")
out = sys.argv[1]
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 32
os.makedirs(out, exist_ok=True)
cfg = json.load(open(f"{src}/config.json"))
shape = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
             num_attention_heads=32, num_key_value_heads=8, vocab_size=128256)
cfg.update(shape); cfg["text_config"].update(shape)
for k in ("hidden_size", "mm_hidden_size"):  # the projector maps the vision tower to the decoder width
    if k in cfg["vision_config"]:
        cfg["vision_config"][k] = 4096
json.dump(cfg, open(f"{out}/config.json", "w"), indent=1)
for f in os.listdir(src):
    if f.endswith(".json") and f != "config.json" or f.endswith(".model"):
        shutil.copy(f"{src}/{f}", out)
pool = (torch.randn(1 << 20) * 0.02).to(torch.bfloat16)
def rand(*s):
    n = 1
    for x in s: n *= x
    return pool.repeat(n // pool.numel() + 1)[:n].reshape(s).clone()
d, ff, kv = 4096, 14336, 1024
shards, cur, size, index = [], {}, 0, {}
def flush():
    global cur, size
    if cur:
        name = f"model-{len(shards) + 1:05d}.safetensors"
        save_file(cur, f"{out}/{name}"); shards.append(name)
        for k in cur: index[k] = name
        cur, size = {}, 0
def add(name, t):
    global size
    cur[name] = t; size += t.numel() * 2
    if size > 2 << 30: flush()
m = "language_model.model"
add(f"{m}.embed_tokens.weight", rand(128256, d))
for l in range(layers):
    p = f"{m}.layers.{l}"
    for n, s in [("self_attn.q_proj", (d, d)), ("self_attn.k_proj", (kv, d)), ("self_attn.v_proj", (kv, d)),
                 ("self_attn.o_proj", (d, d)), ("mlp.gate_proj", (ff, d)), ("mlp.up_proj", (ff, d)), ("mlp.down_proj", (d, ff))]:
        add(f"{p}.{n}.weight", rand(*s))
    add(f"{p}.input_layernorm.weight", torch.ones(d, dtype=torch.bfloat16))
    add(f"{p}.post_attention_layernorm.weight", torch.ones(d, dtype=torch.bfloat16))
add(f"{m}.norm.weight", torch.ones(d, dtype=torch.bfloat16))
add("language_model.lm_head.weight", rand(128256, d))
flush()
json.dump({"metadata": {}, "weight_map": index}, open(f"{out}/model.safetensors.index.json", "w"), indent=1)
print("wrote", len(shards), "shards")
