"""The labelling job's stages without Ray: manifest errors, windows, ids, shard contents and
determinism of the single-machine run."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

import magma_rs
from magma_rs.pipeline import (
    ClipFilter,
    LabelConfig,
    label_videos_local,
    plan_windows,
    read_manifest,
    record_id,
    write_shard,
)
from conftest import write_frames

CFG = LabelConfig(window=8, window_step=8, grid=8, height=0, clips_per_shard=2)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    lines = []
    for i, kind in enumerate(["pan-objects", "objects", "static"]):
        write_frames(magma_rs.synthetic_scene(kind, 128, 96, 20, seed=i), root / f"c{i}")
        lines.append(json.dumps({"id": f"c{i}", "path": f"c{i}", "task": kind}))
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    return root / "m.jsonl"


def test_manifest_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "path": "x"}\n{"id": "b"\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: malformed JSON"):
        read_manifest(bad, CFG)
    bad.write_text('{"id": "a", "path": "x"}\n{"id": "a", "path": "y"}\n')
    with pytest.raises(ValueError, match=r":2: duplicate clip id 'a'"):
        read_manifest(bad, CFG)
    bad.write_text('{"path": "x"}\n')
    with pytest.raises(ValueError, match=r":1: missing string field 'id'"):
        read_manifest(bad, CFG)


def test_windows_stay_inside_the_clip_and_ids_are_deterministic(manifest):
    clips = read_manifest(manifest, CFG)
    assert [c["shard"] for c in clips] == [0, 0, 1]
    windows = plan_windows(clips[0], CFG)
    # 20 frames, windows of 8 every 8: starts 0 and 8 (16 + 8 > 20).
    assert [(w["start"], w["frames"]) for w in windows] == [(0, 8), (8, 8)]
    assert windows[0]["id"] == record_id("video_tom", "c0#0+8")
    assert windows[0]["id"] != windows[1]["id"]
    assert plan_windows(clips[0], CFG) == windows


def test_record_id_is_magma_datas():
    rid = record_id("rlds:fractal", "shard-00000#episode 3#step 0")
    # An independent computation of magma-data's rule.
    digest = hashlib.sha256(b"rlds:fractal\0shard-00000#episode 3#step 0").hexdigest()[:32]
    assert rid == f"rlds_fractal-{digest}"
    assert record_id("ab", "c") != record_id("a", "bc")


def test_local_job_writes_webdataset_shards_deterministically(manifest, tmp_path, run_magma):
    a = label_videos_local(manifest, tmp_path / "a", CFG)
    b = label_videos_local(manifest, tmp_path / "b", CFG)
    assert a["windows"] == a["records"] == 6 and a["shards"] == 2
    for name in ("data-000000.tar", "data-000000.parquet", "data-000001.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]

    shard = tmp_path / "a" / "data-000000.tar"
    with tarfile.open(shard) as tar:
        names = tar.getnames()
    ids = [n[: -len(".json")] for n in names if n.endswith(".json")]
    assert names == [m for i in ids for m in (f"{i}.json", f"{i}.0.png")] and ids == sorted(ids)
    samples = magma_rs.read_shard(shard)
    record, assets = samples[0]
    assert record["id"] == ids[0] and record["source"] == "video_tom"
    assert record["media"] == [{"kind": "image", "path": f"{ids[0]}.0.png", "width": 128, "height": 96}]
    assert [t["from"] for t in record["conversations"]] == ["human", "gpt"]
    assert record["conversations"][0]["value"].startswith("<image>")
    assert record["provenance"]["input"].endswith(("c0", "c1"))
    for trace in record["traces"]:
        assert len(trace["points"]) == len(trace["visible"]) == 8
    # The same shard through the CLI's reader (`magma data inspect`).
    lines = run_magma("data", "inspect", shard, "--json", "--limit", 100, json_out=False).splitlines()
    assert [json.loads(line) for line in lines] == [r for r, _ in samples]

    # The record equals a direct `tom` call on the same window with the id-derived seed.
    window = next(w for c in read_manifest(manifest, CFG) for w in plan_windows(c, CFG) if w["id"] == ids[0])
    direct = magma_rs.tom(window["path"], grid=8, start=window["start"], frames=8, height=0, task=window["task"],
                          seed=int(ids[0][-32:][:16], 16))
    assert record["conversations"][1]["value"] == direct["answer"]
    image = np.asarray(Image.open(io.BytesIO(assets[f"{ids[0]}.0.png"])))
    np.testing.assert_array_equal(image, direct["marked_image"])

    import pyarrow.parquet as pq

    index = pq.read_table(tmp_path / "a" / "data-000000.parquet").to_pylist()
    assert [r["id"] for r in index] == ids
    assert index[0]["shard"] == "data-000000.tar" and index[0]["width"] == 128


def test_clip_filter_drops_windows_below_the_threshold(manifest, tmp_path):
    class Constant:
        def __init__(self, value):
            self.value = value

        def score(self, images, texts):
            assert len(images) == 4 and images[0].shape == (96, 128, 3)
            return np.full((len(images), len(texts)), self.value)

    keep_all = label_videos_local(manifest, tmp_path / "hi", CFG, scorer_factory=lambda: Constant(0.3))
    drop_all = label_videos_local(manifest, tmp_path / "lo", CFG, scorer_factory=lambda: Constant(0.2))
    assert keep_all["records"] == 6 and drop_all["records"] == 0 and drop_all["shards"] == 0
    f = ClipFilter(CFG, lambda: Constant(0.3))
    batch = {"id": np.array(["a"]), "path": np.array([str(manifest.parent / "c0")]), "task": np.array(["t"]),
             "start": np.array([0]), "frames": np.array([8])}
    out = f(batch)
    assert out["clip_score"].tolist() == [0.3]


def test_write_shard_keeps_one_row_per_id(tmp_path):
    rid = record_id("t", "x")
    record = json.dumps({"id": rid, "source": "t", "conversations": [{"from": "human", "value": "q"}]})
    row = {"id": rid, "shard": 0, "clip_id": "c", "start": 0, "kind": "tom", "clip_score": float("nan"),
           "record": record, "png": b"\x89PNG"}
    info = write_shard([row, dict(row)], tmp_path, 0)
    assert info["records"] == 1
    with tarfile.open(tmp_path / "data-000000.tar") as tar:
        assert tar.getnames() == [f"{rid}.json", f"{rid}.0.png"]
    with pytest.raises(ValueError, match=r"samples\[0\]: not a magma-data record"):
        magma_rs.write_shard(tmp_path / "bad.tar", [("{}", [])])
