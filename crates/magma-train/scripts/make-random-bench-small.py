"""Random float32 weights for the bench-small configuration in Magma's checkpoint layout, so
`magma train` can be timed beside ../shared/bench/cpu_train_reference.py (same shapes).

    python3 crates/magma-train/scripts/make-random-bench-small.py /tmp/bench-small-ckpt   # torch, safetensors
"""
import json, os, shutil, sys, torch
from safetensors.torch import save_file
src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "fixtures", "bench-small")
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for f in os.listdir(src):
    if f.endswith(".json"):
        shutil.copy(f"{src}/{f}", out)
cfg = json.load(open(f"{src}/config.json"))
geo = json.load(open(f"{src}/bench_notes.json"))["trunk_geometry"]
g = torch.Generator().manual_seed(0)
def rand(*s): return torch.randn(*s, generator=g) * 0.02
t, T = {}, "vision_tower.clip_vision_model.trunk"
dims, depths = geo["dims"], geo["depths"]
t[f"{T}.stem.0.weight"], t[f"{T}.stem.0.bias"] = rand(dims[0], 3, 4, 4), rand(dims[0])
t[f"{T}.stem.1.weight"], t[f"{T}.stem.1.bias"] = torch.ones(dims[0]), torch.zeros(dims[0])
for s, (n, c) in enumerate(zip(depths, dims)):
    p = f"{T}.stages.{s}"
    if s > 0:
        t[f"{p}.downsample.0.weight"], t[f"{p}.downsample.0.bias"] = torch.ones(dims[s - 1]), torch.zeros(dims[s - 1])
        t[f"{p}.downsample.1.weight"], t[f"{p}.downsample.1.bias"] = rand(c, dims[s - 1], 2, 2), rand(c)
    for b in range(n):
        q = f"{p}.blocks.{b}"
        t[f"{q}.conv_dw.weight"], t[f"{q}.conv_dw.bias"] = rand(c, 1, 7, 7), rand(c)
        t[f"{q}.norm.weight"], t[f"{q}.norm.bias"] = torch.ones(c), torch.zeros(c)
        t[f"{q}.mlp.fc1.weight"], t[f"{q}.mlp.fc1.bias"] = rand(4 * c, c), rand(4 * c)
        t[f"{q}.mlp.fc2.weight"], t[f"{q}.mlp.fc2.bias"] = rand(c, 4 * c), rand(c)
        t[f"{q}.gamma"] = torch.ones(c)
d, ff, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
h, kv, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
hd = d // h
M = "multi_modal_projector"
t[f"{M}.proj.0.weight"], t[f"{M}.proj.0.bias"] = rand(d, dims[-1]), rand(d)
t[f"{M}.proj.2.weight"], t[f"{M}.proj.2.bias"] = rand(d, d), rand(d)
t[f"{M}.row_seperator"] = rand(1, 1, d)
m = "language_model.model"
t[f"{m}.embed_tokens.weight"], t[f"{m}.norm.weight"] = rand(V, d), torch.ones(d)
t["language_model.lm_head.weight"] = rand(V, d)
for i in range(L):
    p = f"{m}.layers.{i}"
    t[f"{p}.input_layernorm.weight"] = t[f"{p}.post_attention_layernorm.weight"] = None
    t[f"{p}.input_layernorm.weight"], t[f"{p}.post_attention_layernorm.weight"] = torch.ones(d), torch.ones(d)
    for name, shape in [("self_attn.q_proj", (h * hd, d)), ("self_attn.k_proj", (kv * hd, d)),
                        ("self_attn.v_proj", (kv * hd, d)), ("self_attn.o_proj", (d, h * hd)),
                        ("mlp.gate_proj", (ff, d)), ("mlp.up_proj", (ff, d)), ("mlp.down_proj", (d, ff))]:
        t[f"{p}.{name}.weight"] = rand(*shape)
save_file({k: v.contiguous() for k, v in t.items()}, f"{out}/model.safetensors", metadata={"format": "pt"})
print(sum(v.numel() for v in t.values()), "parameters")
