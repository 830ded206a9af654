#!/usr/bin/env python3
"""Per-call overhead of the Python layer: `magma_rs.som` on a 1920x1080 screenshot with 100
boxes, against the same Rust work (box parsing + `mark_screenshot`) timed inside Rust, in the same
process, interleaved round by round so machine load hits both alike.

    python bench_som_overhead.py [--rounds 15] [--calls 10] [--style magma]

The Python side pays for: boxes list -> JSON, numpy checks, the copy of the pixels into Rust, and
the marked image back as a numpy array (no copy) plus the marks as dicts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import magma_rs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--boxes", type=int, default=100)
    p.add_argument("--style", default="magma")
    args = p.parse_args()

    rng = np.random.default_rng(0)
    shot = np.full((1080, 1920, 3), 235, np.uint8)
    for _ in range(60):
        x, y = rng.integers(0, 1800), rng.integers(0, 1000)
        shot[y : y + 60, x : x + 120] = rng.integers(0, 255, 3, dtype=np.uint8)
    x1 = rng.uniform(0, 1800, args.boxes)
    y1 = rng.uniform(0, 1040, args.boxes)
    boxes = np.stack([x1, y1, x1 + rng.uniform(20, 120, args.boxes), y1 + rng.uniform(12, 40, args.boxes)], 1)
    boxes_list = boxes.round(1).tolist()
    boxes_json = json.dumps(boxes_list)

    # Same output from both paths.
    marked, marks = magma_rs.som(shot, boxes_list, format="pixels", style=args.style)
    assert len(marks) == args.boxes

    magma_rs._native._bench_som_rust(shot, boxes_json, 3, style=args.style)  # warm-up
    rust, python = [], []
    for _ in range(args.rounds):
        rust.append(magma_rs._native._bench_som_rust(shot, boxes_json, args.calls, style=args.style))
        start = time.perf_counter()
        for _ in range(args.calls):
            magma_rs.som(shot, boxes_list, format="pixels", style=args.style)
        python.append((time.perf_counter() - start) / args.calls)
    r, py = statistics.median(rust), statistics.median(python)
    print(json.dumps({
        "image": "1920x1080", "boxes": args.boxes, "style": args.style,
        "rounds": args.rounds, "calls_per_round": args.calls,
        "rust_ms_median": round(r * 1e3, 3), "python_ms_median": round(py * 1e3, 3),
        "overhead_pct": round((py / r - 1) * 100, 2),
        "rust_ms_min": round(min(rust) * 1e3, 3), "python_ms_min": round(min(python) * 1e3, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
