"""Video curation from Python against the reference fixtures of magma-data (PySceneDetect 0.7.2
cut lists, the OpenAI `clip` package's cosines on a tiny random CLIP), MP4 input, and the
labelling job on MP4 clips with shots and the real CLIP scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import magma_rs
from magma_rs.pipeline import LabelConfig, label_videos_local, plan_windows, read_manifest
from conftest import REPO

CURATE = REPO / "crates" / "magma-data" / "tests" / "fixtures" / "curate"
CLIP_MODEL = CURATE / "clip"


def test_shots_equal_pyscenedetect():
    expected = json.loads((CURATE / "expected_shots.json").read_text())["videos"]["hardcuts_24.mp4"]
    want = expected["settings"]["content_default"]
    shots = magma_rs.detect_shots(CURATE / "hardcuts_24.mp4")
    assert shots["frames"] == expected["frames"] == 150
    assert shots["cuts"] == want["cuts"] == [36, 80]
    assert [[s["start"], s["end"]] for s in shots["scenes"]] == want["scenes"]
    assert magma_rs.frame_count(CURATE / "hardcuts_24.mp4") == 150
    with pytest.raises(ValueError, match="unknown detector"):
        magma_rs.detect_shots(CURATE / "hardcuts_24.mp4", detector="magic")
    with pytest.raises(FileNotFoundError):
        magma_rs.detect_shots(CURATE / "missing.mp4")


def test_clip_scores_equal_the_clip_package():
    expected = json.loads((CURATE / "clip_expected.json").read_text())
    scorer = magma_rs.ClipScorer(CLIP_MODEL)
    images = [Image.open(CLIP_MODEL / "images" / name) for name in expected["images"]]
    cosine = scorer.score(images, expected["texts"])
    assert cosine.shape == (len(images), len(expected["texts"])) and cosine.dtype == np.float32
    np.testing.assert_allclose(cosine, np.array(expected["cosine"]), atol=1e-4)
    assert magma_rs.clip_frames(10, 16) == [10, 15, 20, 25]
    with pytest.raises(FileNotFoundError):
        magma_rs.ClipScorer(CURATE / "no-model")


def test_tom_on_mp4_equals_cli(tmp_path, run_magma):
    video = CURATE / "pan_30.mp4"
    args = ["--grid", 8, "--frames", 12, "--height", 0, "--task", "pan"]
    run_magma("tom", video, *args, "--out", tmp_path / "cli", "--json")
    res = magma_rs.tom(video, grid=8, frames=12, height=0, task="pan", out=tmp_path / "py")
    for name in ("record.json", "traces.json", "marked.png"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "py" / name).read_bytes(), name
    frames = magma_rs.load_frames(video, res["source_frames"])
    np.testing.assert_array_equal(magma_rs.tom(frames, grid=8, height=0, task="pan")["tracks"], res["tracks"])


def test_job_on_mp4_clips_keeps_windows_inside_shots_and_stores_clip_scores(tmp_path):
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text(
        json.dumps({"id": "cuts", "path": str(CURATE / "hardcuts_24.mp4"), "task": "a photo of a cat"}) + "\n"
        + json.dumps({"id": "pan", "path": str(CURATE / "pan_30.mp4"), "task": "a camera pan"}) + "\n"
    )
    # The tiny random CLIP scores near zero: threshold -1 keeps every window (scores are stored).
    cfg = LabelConfig(window=16, window_step=16, grid=6, height=0, clip_model=str(CLIP_MODEL), clip_threshold=-1.0)
    clip = read_manifest(manifest, cfg)[0]
    windows = plan_windows(clip, cfg)
    assert [w["start"] for w in windows] == [0, 16, 36, 52, 80, 96, 112, 128]
    for w in windows:
        assert w["start"] + w["frames"] <= w["shot_end"] and w["start"] >= w["shot_start"]

    summary = label_videos_local(manifest, tmp_path / "out", cfg)
    assert summary["records"] == summary["windows"]
    samples = magma_rs.read_shard(tmp_path / "out" / "data-000000.tar")
    scorer = magma_rs.ClipScorer(CLIP_MODEL)
    by_id = {w["id"]: w for w in windows}
    record = next(r for r, _ in samples if r["id"] in by_id)
    w = by_id[record["id"]]
    frames = magma_rs.load_frames(w["path"], magma_rs.clip_frames(w["start"], w["frames"]))
    assert record["scores"]["clip"] == pytest.approx(float(scorer.score(frames, [w["task"]]).max()), abs=1e-6)
