"""PyTorch side of `cargo bench -p magma-processor --bench preprocess`: the reference's
`preprocess()` from ../shared/bench/cpu_reference.py on the same 1280x720 image, 2 threads,
median of 30 (run both in one quiet run and compare the ratio).

    python3 crates/magma-processor/benches/torch_preprocess.py [path/to/shared/bench]
"""
import statistics
import sys
import time
from pathlib import Path

bench = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / ".." / "shared" / "bench")
sys.path.insert(0, str(bench))
import cpu_reference  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(2)
img = Image.open(bench / "bench-small" / "bench_image_1280x720.png").convert("RGB")
cpu_reference.preprocess(img)
times = []
for _ in range(30):
    start = time.perf_counter()
    cpu_reference.preprocess(img)
    times.append((time.perf_counter() - start) * 1e3)
print(f"torch preprocess median {statistics.median(times):.2f} ms")
