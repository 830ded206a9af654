#!/usr/bin/env python3
"""Label video clips with Trace-of-Mark on a Ray cluster (or on this machine).

    # a manifest: one {"id", "path", "task"} per line (path: frame folder or MP4)
    python ray_label_videos.py clips.jsonl out/ --address 10.0.0.1:6379 --clip-model clip-vit-l-336/
    # try it: generate a dozen synthetic clips and label them on a local 2-node cluster
    python ray_label_videos.py --demo 12 /tmp/demo/clips.jsonl /tmp/demo/out --local-nodes 2
    # the same job without Ray (the single-machine reference run)
    python ray_label_videos.py /tmp/demo/clips.jsonl /tmp/demo/out-local --no-ray

Prints a JSON summary with the throughput in clips per minute. The shards are the same bytes
whichever way the job ran (deterministic ids, seeds and tar metadata).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import magma_rs
from magma_rs.pipeline import LabelConfig, LocalCluster, label_videos, label_videos_local

DEMO_KINDS = ["pan-objects", "objects", "combined", "static", "pan", "zoom"]


def write_demo(manifest: Path, clips: int, width: int, height: int, frames: int) -> None:
    """Synthetic scenes of magma-traces as frame folders plus their manifest."""
    from PIL import Image

    root = manifest.parent
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(clips):
        kind = DEMO_KINDS[i % len(DEMO_KINDS)]
        folder = root / f"clip{i:03d}"
        folder.mkdir(exist_ok=True)
        for t, frame in enumerate(magma_rs.synthetic_scene(kind, width, height, frames, seed=i)):
            Image.fromarray(frame).save(folder / f"frame_{t:04d}.png")
        lines.append(json.dumps({"id": folder.name, "path": folder.name, "task": f"{kind} motion"}))
    manifest.write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS or a new local Ray)")
    p.add_argument("--local-nodes", type=int, default=0, help="start a local cluster of N one-CPU nodes")
    p.add_argument("--no-ray", action="store_true", help="run the single-machine reference job")
    p.add_argument("--demo", type=int, default=0, metavar="N", help="first write N synthetic clips and their manifest")
    p.add_argument("--demo-size", default="256x192", help="WxH of the demo clips")
    p.add_argument("--demo-frames", type=int, default=32)
    p.add_argument("--clip-model", help="CLIP model folder for the filter (default: no filter)")
    p.add_argument("--clip-threshold", type=float, default=0.25)
    p.add_argument("--clip-actors", type=int, default=1)
    p.add_argument("--clip-actor-cpus", type=float, default=1.0)
    p.add_argument("--label-cpus", type=float, default=1.0, help="CPUs per ToM task")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--window-step", type=int, default=16)
    p.add_argument("--grid", type=int, default=15)
    p.add_argument("--height", type=int, default=512, help="resize height before tracking (0: keep)")
    p.add_argument("--clips-per-shard", type=int, default=4)
    args = p.parse_args()

    if args.demo:
        w, h = (int(v) for v in args.demo_size.lower().split("x"))
        write_demo(args.manifest, args.demo, w, h, args.demo_frames)
    cfg = LabelConfig(
        window=args.window, window_step=args.window_step, grid=args.grid, height=args.height,
        clip_model=args.clip_model, clip_threshold=args.clip_threshold, clips_per_shard=args.clips_per_shard,
    )
    started = time.perf_counter()
    if args.no_ray:
        summary = label_videos_local(args.manifest, args.out, cfg)
    else:
        import ray

        def run():
            return label_videos(args.manifest, args.out, cfg, clip_actors=args.clip_actors,
                                clip_actor_cpus=args.clip_actor_cpus, label_cpus=args.label_cpus)

        if args.local_nodes:
            with LocalCluster(nodes=args.local_nodes, cpus_per_node=1):
                started = time.perf_counter()
                summary = run()
        else:
            ray.init(address=args.address)
            summary = run()
    seconds = time.perf_counter() - started
    summary["seconds"] = round(seconds, 2)
    summary["clips_per_minute"] = round(summary["clips"] * 60 / seconds, 1)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
