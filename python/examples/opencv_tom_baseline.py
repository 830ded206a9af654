#!/usr/bin/env python3
"""The labelling job's tracking core in pure Python with OpenCV, for a throughput comparison:
the reference's own building blocks (`cv2.calcOpticalFlowPyrLK` frame to frame and
`cv2.findHomography` with RANSAC 4.0 to frame 0) on the same manifest and windows.

    python opencv_tom_baseline.py clips.jsonl [--window 16] [--grid 15] [--compare]

Per window: read the frames, track an s x s grid (the CoTracker grid: margin width/64), drop
points lost by LK, remove camera motion by a homography per frame when more than 80% of the
points move over 1 px/frame, and call a point moving when its mean step exceeds 3 px. It writes
no record text or images, and has none of magma-rs' forward-backward, appearance and
re-acquisition checks: it is a lower bound on the work of the same job in Python.
With --compare the same windows also run through `magma_rs.pipeline` on one process
(`tom` + record + PNG), and both throughputs are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np


def frame_files(folder: Path):
    files = [p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    return sorted(files, key=lambda p: (int("".join(c for c in p.stem if c.isdigit()) or -1), p.name))


def grid_points(s: int, w: int, h: int) -> np.ndarray:
    margin = w / 64
    xs = np.linspace(margin, w - margin, s)
    ys = np.linspace(margin, h - margin, s)
    return np.array([[x, y] for y in ys for x in xs], np.float32)


def label_window(files, grid: int) -> dict:
    frames = [cv2.imread(str(f)) for f in files]
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    h, w = grey[0].shape
    pts = grid_points(grid, w, h).reshape(-1, 1, 2)
    tracks = [pts.reshape(-1, 2).copy()]
    alive = np.ones(len(tracks[0]), bool)
    for t in range(1, len(grey)):
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(grey[t - 1], grey[t], pts, None, winSize=(21, 21), maxLevel=3)
        alive &= status.reshape(-1).astype(bool)
        pts = nxt
        tracks.append(nxt.reshape(-1, 2).copy())
    tracks = np.stack(tracks)  # T x N x 2
    steps = np.linalg.norm(np.diff(tracks[:, alive], axis=0), axis=2).mean(axis=0)
    camera = (steps > 1.0).mean() > 0.8
    stabilized = tracks[:, alive].copy()
    failures = 0
    if camera:
        for t in range(1, len(tracks)):
            hmat, _ = cv2.findHomography(tracks[t, alive], tracks[0, alive], cv2.RANSAC, 4.0)
            if hmat is None:
                failures += 1
                continue
            stabilized[t] = cv2.perspectiveTransform(tracks[t, alive].reshape(-1, 1, 2), hmat).reshape(-1, 2)
    moving = np.linalg.norm(np.diff(stabilized, axis=0), axis=2).mean(axis=0) > 3.0
    return {"points": int(alive.sum()), "moving": int(moving.sum()), "camera": bool(camera), "failures": failures}


def windows(manifest: Path, window: int, step: int):
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        clip = json.loads(line)
        folder = Path(clip["path"]) if os.path.isabs(clip["path"]) else manifest.parent / clip["path"]
        files = frame_files(folder)
        for start in range(0, len(files) - window + 1, step):
            yield clip["id"], files[start : start + window]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--grid", type=int, default=15)
    p.add_argument("--compare", action="store_true", help="also time magma_rs on the same windows")
    p.add_argument("--threads", type=int, default=0, help="cv2.setNumThreads (0: OpenCV's default)")
    args = p.parse_args()
    if args.threads:
        cv2.setNumThreads(args.threads)
    clips = {line and json.loads(line)["id"] for line in args.manifest.read_text().splitlines() if line.strip()}

    wall, cpu = time.perf_counter(), time.process_time()
    results = [label_window(files, args.grid) for _, files in windows(args.manifest, args.window, args.window)]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = {"opencv": {"clips": len(clips), "windows": len(results), "seconds": round(wall, 2),
                      "cpu_seconds": round(cpu, 2), "clips_per_minute": round(len(clips) * 60 / wall, 1)}}
    if args.compare:
        import tempfile

        from magma_rs.pipeline import LabelConfig, label_videos_local

        cfg = LabelConfig(window=args.window, window_step=args.window, grid=args.grid, height=0)
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            summary = label_videos_local(args.manifest, tmp, cfg)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        import magma_rs

        starts = [(clip, int(files[0].stem.split("_")[-1])) for clip, files in windows(args.manifest, args.window, args.window)]
        folders = {json.loads(l)["id"]: args.manifest.parent / json.loads(l)["path"]
                   for l in args.manifest.read_text().splitlines() if l.strip()}
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        for clip, start in starts:
            magma_rs.tom(folders[clip], grid=args.grid, start=start, frames=args.window, height=0)
        t_wall, t_cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
        out["magma_rs_tom_only"] = {"windows": len(starts), "seconds": round(t_wall, 2), "cpu_seconds": round(t_cpu, 2),
                                    "clips_per_minute": round(len(clips) * 60 / t_wall, 1)}
        out["magma_rs"] = {"clips": summary["clips"], "windows": summary["windows"], "seconds": round(wall, 2),
                           "cpu_seconds": round(cpu, 2), "clips_per_minute": round(summary["clips"] * 60 / wall, 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
