"""OpenCV baseline for the synthetic ToM benchmark (not a test; needs opencv-python-headless).

Runs cv2.calcOpticalFlowPyrLK (window 21, maxLevel 3, one thread) chained frame to frame from the
frame-0 grid on frames exported by `magma tom-eval --export DIR`, twice: with the same
forward-backward check (1 px) as magma-traces' tracker (two calls per frame pair, like for like)
and forward only (one call, visibility = OpenCV's status flag), and prints timing (best of 5) and
TAP-Vid metrics of each as JSON, as wall time and as the thread's CPU time (`cpu_*`, robust to
other processes on the machine). `*_marginal` leaves out the fixed cost of each call
(pyramids and derivative images, timed as the same loop with one point).

    magma tom-eval --export /tmp/tom-scenes      # or examples/lk_speed.rs OUT_DIR SCENE
    python crates/magma-traces/benches/opencv_lk.py /tmp/tom-scenes/*/

`benches/lk_vs_opencv.sh` runs this beside magma-traces' own timing on the same frames.
"""
import glob
import json
import os
import sys
import time

import cv2
import numpy as np

WIN = (21, 21)
MAX_LEVEL = 3
FB_THRESHOLD = 1.0
THRESHOLDS = (1, 2, 4, 8, 16)
RUNS = 5


def track(frames, queries, backward):
    n = len(queries)
    pts = queries.reshape(-1, 1, 2).astype(np.float32)
    h, w = frames[0].shape
    alive = np.ones(n, bool)
    out_pts = [queries.copy()]
    out_vis = [np.ones(n, bool)]
    start, cpu_start = time.perf_counter(), time.thread_time()
    for t in range(1, len(frames)):
        a, b = frames[t - 1], frames[t]
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, winSize=WIN, maxLevel=MAX_LEVEL)
        if backward:
            back, st_b, _ = cv2.calcOpticalFlowPyrLK(b, a, nxt, None, winSize=WIN, maxLevel=MAX_LEVEL)
            fb = st_b.ravel().astype(bool) & (np.linalg.norm((back - pts).reshape(-1, 2), axis=1) <= FB_THRESHOLD)
        else:
            fb = np.ones(n, bool)
        q = nxt.reshape(-1, 2)
        inside = (q[:, 0] >= 0) & (q[:, 1] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] <= h - 1)
        ok = st.ravel().astype(bool) & alive
        vis = ok & fb & inside
        new = np.where(ok[:, None], q, pts.reshape(-1, 2))
        alive = alive & (inside | ~ok)
        out_pts.append(new.copy())
        out_vis.append(vis)
        pts = new.reshape(-1, 1, 2).astype(np.float32)
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
    return np.stack(out_pts), np.stack(out_vis), (elapsed, cpu)


def tap_vid(pred, pvis, gt, gvis, w, h):
    scale = np.array([256.0 / w, 256.0 / h])
    d2 = (((pred[1:] - gt[1:]) * scale) ** 2).sum(-1)
    gv, pv = gvis[1:], pvis[1:]
    within = [((d2 < t * t) & gv).sum() / max(gv.sum(), 1) for t in THRESHOLDS]
    aj = []
    for t in THRESHOLDS:
        close = d2 < t * t
        tp = (pv & gv & close).sum()
        fp = (pv & ~(gv & close)).sum()
        aj.append(tp / max(gv.sum() + fp, 1))
    return float(np.mean(within)), float((pv == gv).mean()), float(np.mean(aj))


def main(dirs):
    cv2.setNumThreads(1)
    rows = []
    for d in dirs:
        gt = json.load(open(os.path.join(d, "ground_truth.json")))
        files = sorted(glob.glob(os.path.join(d, "frame_*.png")))
        frames = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2GRAY) for f in files]
        queries = np.array(gt["queries"], np.float32)
        gpts, gvis = np.array(gt["points"], np.float32), np.array(gt["visible"], bool)
        row = {"scene": os.path.basename(os.path.normpath(d)), "points": len(queries), "frames": len(frames)}
        # Prebuilt pyramids (buildOpticalFlowPyramid) are not accepted by the Python binding of
        # OpenCV 5.0's calcOpticalFlowPyrLK, so each call builds its own.
        for backward in (True, False):
            pairs = len(frames) - 1
            runs = [track(frames, queries, backward)[2] for _ in range(RUNS)]
            # The same loop with one point: the fixed cost per call (OpenCV builds both frames'
            # pyramids and Scharr derivatives inside every call).
            single = [track(frames, queries[:1], backward)[2] for _ in range(RUNS)]
            best, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
            best_single, cpu_single = min(r[0] for r in single), min(r[1] for r in single)
            pred, pvis, _ = track(frames, queries, backward)
            d_avg, oa, aj = tap_vid(pred, pvis, gpts, gvis, gt["width"], gt["height"])
            row["forward_backward" if backward else "forward_only"] = {
                "ms_per_frame": 1000 * best / pairs,
                "us_per_point": 1e6 * best / pairs / len(queries),
                "us_per_point_marginal": 1e6 * (best - best_single) / pairs / (len(queries) - 1),
                "cpu_us_per_point": 1e6 * cpu / pairs / len(queries),
                "cpu_us_per_point_marginal": 1e6 * (cpu - cpu_single) / pairs / (len(queries) - 1),
                "delta_avg": d_avg,
                "occlusion_accuracy": oa,
                "average_jaccard": aj,
            }
        rows.append(row)
    print(json.dumps({"opencv": cv2.__version__, "scenes": rows}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
