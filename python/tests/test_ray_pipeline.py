"""The Ray Data labelling job on a local two-node cluster (`ray start --head` + `ray start
--address`, one CPU each, loopback only), with a worker process killed mid-run: every record must
be written exactly once and the shards must equal the single-machine run byte for byte."""

from __future__ import annotations

import json
import os
import signal
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import magma_rs
from magma_rs.pipeline import LabelConfig, LocalCluster, label_videos, label_videos_local, plan_windows, read_manifest
from conftest import pipeline_file, write_frames

if os.environ.get("MAGMA_TEST_RAY") == "1":  # CI: a missing Ray is a failure, not a skip
    import ray
else:
    ray = pytest.importorskip("ray", reason="the Ray pipeline test needs `pip install ray[data]`")

KINDS = ["pan-objects", "objects", "combined", "static", "pan", "zoom"]
N_CLIPS = 12
CFG = LabelConfig(window=12, window_step=12, grid=10, height=0, clips_per_shard=3, clip_threshold=0.25)


class FrameChangeScorer:
    """Test double standing for the CLIP model: the "similarity" of a window is how much its
    sampled frames change (static clips score 0 and are filtered out), so the filter stage's
    actor pool, score column and threshold are exercised without CLIP weights. Each instance
    records its process id, to show the model is loaded once per actor."""

    def __init__(self, load_dir: str):
        Path(load_dir, f"load-{os.getpid()}-{time.monotonic_ns()}").touch()

    def score(self, images, texts):
        first, last = (np.asarray(images[i], np.float32) for i in (0, -1))
        change = float(np.abs(last - first).mean()) / 20.0
        return np.full((len(images), len(texts)), change)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    lines = []
    for i in range(N_CLIPS):
        kind = KINDS[i % len(KINDS)]
        frames = magma_rs.synthetic_scene(kind, 160, 120, 24, seed=i)
        write_frames(frames, root / f"clip{i:02d}")
        lines.append(json.dumps({"id": f"clip{i:02d}", "path": f"clip{i:02d}", "task": f"{kind} motion"}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root / "manifest.jsonl"


def _descendants(pid: int):
    """Process ids below `pid` (from /proc), children first."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two Ray nodes of one CPU each (`ray start --head` + `ray start --address`)."""
    with LocalCluster(nodes=2, cpus_per_node=1, log_dir=str(tmp_path_factory.mktemp("ray-logs"))) as c:
        # Workers import this module's scorer class by value (they cannot import test files).
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield c


def _records(out_dir: Path):
    ids = []
    for tar in sorted(out_dir.glob("data-*.tar")):
        with tarfile.open(tar) as t:
            names = t.getnames()
        ids += [n[: -len(".json")] for n in names if n.endswith(".json")]
    return ids


def test_two_node_job_survives_a_killed_worker_and_equals_the_local_run(clips, cluster, tmp_path):
    loads = tmp_path / "loads"
    loads.mkdir()
    scorer = FrameChangeScorer

    # The single-machine reference run.
    local_out = tmp_path / "local"
    local = label_videos_local(clips, local_out, CFG, scorer_factory=lambda: scorer(str(loads)))
    expected_windows = [w["id"] for c in read_manifest(clips, CFG) for w in plan_windows(c, CFG)]
    assert local["windows"] == len(expected_windows) == 2 * N_CLIPS
    assert 0 < local["kept"] < local["windows"], "the CLIP stand-in filters the static clips out"
    for f in loads.iterdir():
        f.unlink()

    ray_out = tmp_path / "ray"
    outcome = {}

    def job():
        try:
            outcome["summary"] = label_videos(
                clips, ray_out, CFG, scorer_factory=lambda: scorer(str(loads)),
                clip_actors=2, clip_actor_cpus=0.25, label_cpus=0.75, batch_size=2,
            )
        except BaseException as e:  # surfaced by the assertion below
            outcome["error"] = e

    runner = threading.Thread(target=job)
    runner.start()
    # Kill one busy Ray worker process of the second node while the job runs.
    killed = None
    deadline = time.time() + 300
    while killed is None and runner.is_alive() and time.time() < deadline:
        for pid in _descendants(cluster.processes[1].pid):
            cmd = _cmdline(pid)
            if cmd.startswith("ray::") and "label_window" in cmd:
                os.kill(pid, signal.SIGKILL)
                killed = (pid, cmd)
                break
        time.sleep(0.02)
    runner.join(timeout=600)
    assert not runner.is_alive(), "the Ray job did not finish"
    assert "error" not in outcome, repr(outcome.get("error"))
    assert killed is not None, "no label_window worker was seen on the second node to kill"
    print(f"killed worker {killed[0]} ({killed[1].strip()}) mid-run")

    summary = outcome["summary"]
    ids = _records(ray_out)
    assert len(ids) == len(set(ids)), "a record was written twice"
    assert sorted(ids) == sorted(_records(local_out))
    assert summary["records"] == local["records"] == len(ids)
    assert summary["windows"] == local["windows"]
    for tar in sorted(local_out.glob("data-*.tar")):
        assert (ray_out / tar.name).read_bytes() == tar.read_bytes(), tar.name
    assert sorted(p.name for p in ray_out.glob("data-*")) == sorted(p.name for p in local_out.glob("data-*"))
    # One model load per actor (2 actors; a restarted actor would load once more).
    assert 2 <= len(list(loads.iterdir())) <= 3


def test_magma_data_run_on_ray_writes_what_the_job_runner_writes(cluster, tmp_path):
    from magma_rs.pipeline import run_pipeline_on_ray

    local, on_ray = pipeline_file(tmp_path / "local"), pipeline_file(tmp_path / "ray")
    # magma_data::pipeline::run, the function `magma data run` calls (test_api checks the CLI).
    magma_rs.run_pipeline(local)
    reports = run_pipeline_on_ray(on_ray, actors=2, actor_cpus=0.5)
    assert [r["stage"] for r in reports] == ["robot", "aitw", "aitw_marked"]
    assert all(r["done_before"] == r["items"] for r in reports), "Ray ran every item before the final pass"
    for stage in ("robot", "aitw", "aitw_marked"):
        a, b = tmp_path / "local/out" / stage, tmp_path / "ray/out" / stage
        names = sorted(p.name for p in a.iterdir() if not p.name.endswith(".done.json"))
        assert names == sorted(p.name for p in b.iterdir() if not p.name.endswith(".done.json"))
        assert any(n.endswith(".tar") for n in names)
        for name in names:  # done markers hold timings; everything else is equal
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{stage}/{name}"


def test_video_stage_on_ray_survives_a_killed_actor_and_equals_the_local_run(cluster, tmp_path):
    """magma-data's video stage (clip list -> shots -> CLIP -> windows -> ToM) over 12 clip lists
    of the MP4 fixtures, on the actor pool, with one busy actor process of the second node
    SIGKILLed mid-run."""
    from magma_rs.pipeline import label_clip_lists

    curate = Path(__file__).resolve().parents[2] / "crates" / "magma-data" / "tests" / "fixtures" / "curate"
    videos = ["hardcuts_24.mp4", "pan_30.mp4", "fades_25.mp4", "bframes_high_25.mp4"]
    lists = []
    for i in range(12):
        path = tmp_path / f"clips{i:02d}.json"
        segments = [{"start": 0.1 * i, "end": 60.0, "text": f"a person doing thing {i}"}, {"start": 1.0, "end": 2.0, "text": ""}]
        path.write_text(json.dumps({"video": str(curate / videos[i % len(videos)]), "segments": segments}))
        lists.append(path)
    options = dict(grid=10, height=0, clip_model=str(curate / "clip"))

    local = label_clip_lists(lists, tmp_path / "local", **options)
    assert local["items"] == 12 and local["records"] > 24 and local["skipped"] == {"empty_text": 12}

    outcome = {}

    def job():
        try:
            outcome["funnel"] = label_clip_lists(lists, tmp_path / "ray", ray_actors=2, actor_cpus=0.5, **options)
        except BaseException as e:
            outcome["error"] = e

    runner = threading.Thread(target=job)
    runner.start()
    killed = None
    deadline = time.time() + 300
    while killed is None and runner.is_alive() and time.time() < deadline:
        for pid in _descendants(cluster.processes[1].pid):
            cmd = _cmdline(pid)
            # An actor that has run at least one item (its part files appear) is busy with more.
            if cmd.startswith("ray::") and "_StageActor" in cmd and list((tmp_path / "ray").glob("*.done.json")):
                os.kill(pid, signal.SIGKILL)
                killed = (pid, cmd)
                break
        time.sleep(0.02)
    runner.join(timeout=600)
    assert not runner.is_alive() and "error" not in outcome, repr(outcome.get("error"))
    assert killed is not None, "no stage actor was seen on the second node to kill"
    print(f"killed actor process {killed[0]} ({killed[1].strip()}) mid-run")

    assert outcome["funnel"] == local
    local_files = sorted(p.name for p in (tmp_path / "local").iterdir() if not p.name.endswith(".done.json"))
    ray_files = sorted(p.name for p in (tmp_path / "ray").iterdir() if not p.name.endswith(".done.json"))
    assert ray_files == local_files, "same parts, no leftover temporary files"
    for name in local_files:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    ids = [r["id"] for tar in sorted((tmp_path / "ray").glob("*.tar")) for r, _ in magma_rs.read_shard(tar)]
    assert len(ids) == len(set(ids)) == local["records"], "every record exactly once"
