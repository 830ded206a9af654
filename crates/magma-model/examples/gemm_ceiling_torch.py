"""PyTorch side of examples/gemm_ceiling.rs: the same shapes through F.linear, 2 threads."""
import time
import torch

SHAPES = [(65536, 96, 384), (65536, 384, 96), (16384, 192, 768), (16384, 768, 192),
          (4096, 384, 1536), (4096, 1536, 384), (1024, 768, 3072), (1024, 3072, 768),
          (1117, 768, 3072), (1117, 3072, 768)]
torch.set_num_threads(2)
for m, k, n in SHAPES:
    x, w = torch.randn(m, k), torch.randn(n, k)
    torch.nn.functional.linear(x, w)
    start = time.perf_counter()
    for _ in range(5):
        torch.nn.functional.linear(x, w)
    secs = (time.perf_counter() - start) / 5
    print(f"torch  [{m}x{k}]·[{n}x{k}]ᵀ: {secs * 1e3:.1f} ms, {2 * m * k * n / secs / 1e9:.1f} GFLOP/s")
