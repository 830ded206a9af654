#!/usr/bin/env python3
"""Ray throughput of the labelling job with 1 and 2 local worker nodes (one CPU each), beside
the single-process run, on the same manifest (clips per minute; cluster start-up excluded).

    python bench_ray_throughput.py clips.jsonl [--nodes 1 2] [--height 0] [--grid 15]

Make a manifest with `ray_label_videos.py --demo N ...`. Every run's shards are checked to be
byte-identical to the single-process run's. Each node's workers run RAYON_NUM_THREADS=1 (one
CPU per node); run this script with RAYON_NUM_THREADS=1 too for a one-core single-process line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from magma_rs.pipeline import LabelConfig, LocalCluster, label_videos, label_videos_local


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path)
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--height", type=int, default=0)
    p.add_argument("--grid", type=int, default=15)
    p.add_argument("--window", type=int, default=16)
    args = p.parse_args()
    cfg = LabelConfig(window=args.window, window_step=args.window, grid=args.grid, height=args.height)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        local = label_videos_local(args.manifest, tmp / "local", cfg)
        seconds = time.perf_counter() - start
        results.append({"run": "single process, no Ray", "seconds": round(seconds, 2),
                        "clips_per_minute": round(local["clips"] * 60 / seconds, 1)})
        for nodes in args.nodes:
            with LocalCluster(nodes=nodes, cpus_per_node=1):
                out = tmp / f"ray{nodes}"
                start = time.perf_counter()
                summary = label_videos(args.manifest, out, cfg, clip_actors=1, clip_actor_cpus=0.25, label_cpus=0.75)
                seconds = time.perf_counter() - start
            same = all((out / f.name).read_bytes() == f.read_bytes() for f in (tmp / "local").glob("data-*"))
            results.append({"run": f"Ray, {nodes} node(s) x 1 CPU", "seconds": round(seconds, 2),
                            "clips_per_minute": round(summary["clips"] * 60 / seconds, 1),
                            "same_shards_as_single_process": same})
    print(json.dumps({"clips": local["clips"], "windows": local["windows"], "results": results}, indent=2))


if __name__ == "__main__":
    main()
