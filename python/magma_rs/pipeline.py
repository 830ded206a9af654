"""Video labelling at scale: manifest of clips -> shots -> CLIP filter -> Trace-of-Mark -> shards.

Every stage is a plain function of one row, so the same job runs on one machine
(:func:`label_videos_local`) or on a Ray cluster (:func:`label_videos`) and writes byte-identical
shards:

1. :func:`read_manifest` — one JSON object per line: ``{"id": "...", "path": "...", "task": "..."}``
   (``path``: a folder of numbered frames or an MP4 file; other containers with the ``video``
   build; relative paths
   are resolved against the manifest's folder). Clip ``i`` goes to shard ``i // clips_per_shard``.
2. :func:`plan_windows` — shots (``magma_rs.detect_shots``; a clip without a cut is one shot),
   then windows of ``window`` frames every ``window_step`` frames inside
   each shot (a window never crosses a cut). The record id is deterministic from the clip and the
   window (:func:`record_id`), so a retried task overwrites, never duplicates.
3. :class:`ClipFilter` — scores 4 frames per window (``magma_rs.clip_frames``) against the
   clip's task text with ``magma_rs.ClipScorer`` and keeps a window iff its best score reaches ``clip_threshold`` (Magma: ViT-L/14@336, 4
   frames, max >= 0.25). On Ray it is an actor pool: the model is loaded once per actor.
4. :func:`label_window` — Trace-of-Mark as a magma-data record (``magma_rs.tom_sample``), the
   seed taken from the record id.
5. :func:`write_shard` — ``data-{k:06d}.tar``, written by magma-data's WebDataset writer (the
   format ``magma data`` reads: ``<id>.json`` record + ``<id>.0.png``, records sorted by id, fixed
   tar metadata, so equal records give equal bytes) and ``data-{k:06d}.parquet`` (magma-data's
   index rows), each written to a temporary file and renamed into place.

Example (a local cluster, or ``ray.init(address=...)`` first)::

    from magma_rs.pipeline import LabelConfig, label_videos
    summary = label_videos("clips.jsonl", "out/", LabelConfig(clip_model=None, height=256))
    print(summary["records"], "records in", summary["shards"], "shards")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np

import magma_rs

__all__ = [
    "ClipFilter",
    "LocalCluster",
    "LabelConfig",
    "label_videos",
    "label_clip_lists",
    "label_videos_local",
    "label_window",
    "plan_windows",
    "read_manifest",
    "record_id",
    "run_pipeline_on_ray",
    "write_shard",
]


@dataclass(frozen=True)
class LabelConfig:
    """Settings of a labelling job (defaults: the Magma paper's video settings)."""

    window: int = 16
    """Frames per ToM window (Magma: a mark and its 16 future positions)."""
    window_step: int = 16
    """Frames between window starts inside a shot."""
    grid: int = 15
    """Query grid side (Magma: 15, 225 points)."""
    height: int = 512
    """Resize frames to this height before tracking (0: keep the decoded size)."""
    kind: str = "video"
    """``"video"`` or ``"robot"`` thresholds and question wording."""
    clip_model: Optional[str] = None
    """Folder of the CLIP model for ``magma_rs.ClipScorer``; None disables the CLIP filter
    (every window is kept, ``clip_score`` is NaN)."""
    clip_threshold: float = 0.25
    detect_shots: bool = True
    """Split clips into shots (``magma_rs.detect_shots``, PySceneDetect's ContentDetector)."""
    shot_threshold: float = 27.0
    clips_per_shard: int = 4
    source: str = "video_tom"
    """Source name in the record ids."""


record_id = magma_rs.record_id
"""The deterministic id of a record (magma-data's ``record_id``): ``{source}-{32 hex digits of
sha256(source NUL item)}``; a window's item is ``f"{clip_id}#{start}+{frames}"``."""


def read_manifest(manifest: "os.PathLike[str] | str", cfg: LabelConfig) -> List[Dict[str, Any]]:
    """Reads the manifest (JSON lines); raises ValueError naming the line on a bad entry."""
    manifest = Path(manifest)
    base = manifest.parent
    clips: List[Dict[str, Any]] = []
    seen = set()
    with open(manifest, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{manifest}:{n}: malformed JSON: {e}") from None
            for key in ("id", "path"):
                if not isinstance(entry.get(key), str) or not entry[key]:
                    raise ValueError(f"{manifest}:{n}: missing string field {key!r}")
            if entry["id"] in seen:
                raise ValueError(f"{manifest}:{n}: duplicate clip id {entry['id']!r}")
            seen.add(entry["id"])
            path = Path(entry["path"])
            index = len(clips)
            clips.append(
                {
                    "clip_id": entry["id"],
                    "path": str(path if path.is_absolute() else base / path),
                    "task": entry.get("task", "the task shown in the video"),
                    "clip_index": index,
                    "shard": index // cfg.clips_per_shard,
                }
            )
    return clips


def _shots(path: str, cfg: LabelConfig, frames: int) -> List[tuple]:
    """``[start, end)`` shots; PySceneDetect reports none when there is no cut: one shot then."""
    if cfg.detect_shots:
        scenes = magma_rs.detect_shots(path, threshold=cfg.shot_threshold)["scenes"]
        if scenes:
            return [(int(s["start"]), int(s["end"])) for s in scenes]
    return [(0, frames)]


def plan_windows(clip: Dict[str, Any], cfg: LabelConfig) -> List[Dict[str, Any]]:
    """The ToM windows of one clip: ``window`` frames every ``window_step`` frames in each shot."""
    frames = magma_rs.frame_count(clip["path"])
    rows = []
    for shot_start, shot_end in _shots(clip["path"], cfg, frames):
        for start in range(shot_start, shot_end - cfg.window + 1, cfg.window_step):
            rid = record_id(cfg.source, f"{clip['clip_id']}#{start}+{cfg.window}")
            rows.append(
                dict(clip, id=rid, shot_start=shot_start, shot_end=shot_end, start=start, frames=cfg.window)
            )
    return rows


class ClipFilter:
    """CLIP filter stage: adds ``clip_score`` (best frame-text cosine) and drops windows below
    the threshold. A callable class, so Ray runs it as an actor pool and loads the model once per
    actor; ``scorer_factory`` (no arguments -> object with ``score(images, texts)`` returning a
    (frames, texts) array) replaces ``magma_rs.ClipScorer(cfg.clip_model)``."""

    def __init__(self, cfg: LabelConfig, scorer_factory: Optional[Callable[[], Any]] = None):
        self.cfg = cfg
        if scorer_factory is not None:
            self.scorer = scorer_factory()
        elif cfg.clip_model is not None:
            self.scorer = magma_rs.ClipScorer(cfg.clip_model)
        else:
            self.scorer = None

    def score(self, row: Dict[str, Any]) -> float:
        if self.scorer is None:
            return float("nan")
        idx = magma_rs.clip_frames(int(row["start"]), int(row["frames"]))
        images = magma_rs.load_frames(row["path"], idx)
        scores = np.asarray(self.scorer.score(images, [row["task"]]), dtype=np.float64)
        return float(scores.max())

    def keep(self, score: float) -> bool:
        return self.scorer is None or score >= self.cfg.clip_threshold

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        n = len(batch["id"])
        scores = np.array([self.score({k: v[i] for k, v in batch.items()}) for i in range(n)])
        keep = np.array([self.keep(s) for s in scores], dtype=bool)
        out = {k: np.asarray(v)[keep] for k, v in batch.items()}
        out["clip_score"] = scores[keep]
        return out


def label_window(row: Dict[str, Any], cfg: LabelConfig) -> Dict[str, Any]:
    """Trace-of-Mark on one window (``magma_rs.tom_sample``: the seed comes from the record id);
    returns the shard row: ``id``, ``shard``, ``record`` (magma-data record JSON: conversation,
    the marked frame as ``<id>.0.png``, every mark's raw trace, ``scores["clip"]``, provenance)
    and ``png`` (the marked first frame)."""
    score = float(row.get("clip_score", float("nan")))
    record, png, kind = magma_rs.tom_sample(
        str(row["path"]),
        clip_id=str(row["clip_id"]),
        start=int(row["start"]),
        frames=int(row["frames"]),
        task=str(row["task"]),
        source=cfg.source,
        grid=cfg.grid,
        height=cfg.height,
        kind=cfg.kind,
        clip_score=None if np.isnan(score) else score,
    )
    rid = str(row["id"])
    if json.loads(record)["id"] != rid:
        raise ValueError(f"window {rid}: the record id does not match the planned id")
    return {
        "id": rid,
        "shard": int(row["shard"]),
        "clip_id": str(row["clip_id"]),
        "start": int(row["start"]),
        "kind": kind,
        "clip_score": score,
        "record": record,
        "png": png,
    }


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_shard(rows: Iterable[Dict[str, Any]], out_dir: "os.PathLike[str] | str", shard: int) -> Dict[str, Any]:
    """Writes one shard: ``data-{shard:06d}.tar`` by magma-data's WebDataset writer (records
    sorted by id, one per id) and its index ``data-{shard:06d}.parquet``; both appear atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_id: Dict[str, Dict[str, Any]] = {}
    for row in rows:
        by_id.setdefault(str(row["id"]), row)
    ordered = [by_id[k] for k in sorted(by_id)]
    name = f"data-{shard:06d}"
    samples = [(str(r["record"]), [(f"{r['id']}.0.png", bytes(r["png"]))]) for r in ordered]
    index = magma_rs.write_shard(out_dir / f"{name}.tar", samples)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # the tar alone is the dataset; the index is a convenience
        pq = None
    if pq is not None:
        rows_out = []
        for entry, r in zip(index, ordered):
            turns = [t["value"] for t in json.loads(str(r["record"])).get("conversations", [])] + ["", ""]
            rows_out.append(dict(entry, clip_id=str(r["clip_id"]), start=int(r["start"]), kind=str(r["kind"]),
                                 question=turns[0], answer=turns[1]))
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows_out), sink)
        _atomic_write(out_dir / f"{name}.parquet", sink.getvalue().to_pybytes())
    return {"shard": shard, "records": len(ordered), "path": str(out_dir / f"{name}.tar")}


def label_videos_local(
    manifest: "os.PathLike[str] | str",
    out_dir: "os.PathLike[str] | str",
    cfg: LabelConfig = LabelConfig(),
    scorer_factory: Optional[Callable[[], Any]] = None,
) -> Dict[str, Any]:
    """The whole job on this machine, one stage after the other (the reference run of
    :func:`label_videos`)."""
    clips = read_manifest(manifest, cfg)
    windows = [w for clip in clips for w in plan_windows(clip, cfg)]
    clip_filter = ClipFilter(cfg, scorer_factory)
    kept = []
    for w in windows:
        score = clip_filter.score(w)
        if clip_filter.keep(score):
            kept.append(dict(w, clip_score=score))
    rows = [label_window(w, cfg) for w in kept]
    # Like the Ray job, a shard whose windows were all filtered out writes no file.
    shards = sorted({r["shard"] for r in rows})
    written = [write_shard([r for r in rows if r["shard"] == s], out_dir, s) for s in shards]
    return _summary(clips, windows, kept, written)


def _summary(clips, windows, kept, written) -> Dict[str, Any]:
    return {
        "clips": len(clips),
        "windows": len(windows),
        "kept": len(kept) if isinstance(kept, list) else int(kept),
        "records": int(sum(int(w["records"]) for w in written)),
        "shards": len(written),
        "files": sorted(str(w["path"]) for w in written),
    }


def _write_group(batch: Dict[str, np.ndarray], out_dir: str) -> Dict[str, np.ndarray]:
    n = len(batch["id"])
    rows = [{k: v[i] for k, v in batch.items()} for i in range(n)]
    info = write_shard(rows, out_dir, int(rows[0]["shard"]))
    return {k: np.array([v]) for k, v in info.items()}


def label_videos(
    manifest: "os.PathLike[str] | str",
    out_dir: "os.PathLike[str] | str",
    cfg: LabelConfig = LabelConfig(),
    *,
    scorer_factory: Optional[Callable[[], Any]] = None,
    clip_actors: int = 1,
    clip_actor_cpus: float = 1.0,
    label_cpus: float = 1.0,
    batch_size: int = 4,
) -> Dict[str, Any]:
    """The job on Ray Data (call ``ray.init`` first to join a cluster; otherwise Ray starts a
    local one). Stages stream between the nodes; the CLIP filter runs as an actor pool of
    ``clip_actors`` actors of ``clip_actor_cpus`` CPUs each, ToM tasks take ``label_cpus`` (on
    one-CPU nodes give the actors a fraction and the tasks the rest, so both fit); shards are written by one task per shard. Failed tasks and actors
    are retried by Ray, and since ids and shard files are deterministic a retry overwrites.
    Writes the same files as :func:`label_videos_local`."""
    import ray

    clips = read_manifest(manifest, cfg)
    out_dir = str(Path(out_dir).resolve())
    ds = ray.data.from_items(clips, override_num_blocks=max(1, len(clips)))
    # Windows are materialized once: they are counted for the summary, and shot detection (the
    # expensive part of planning) must not run again.
    windows = ds.flat_map(plan_windows, fn_kwargs={"cfg": cfg}).materialize()
    n_windows = windows.count()
    shards = len({c["shard"] for c in clips})
    written = (
        windows.map_batches(
            ClipFilter,
            fn_constructor_kwargs={"cfg": cfg, "scorer_factory": scorer_factory},
            compute=ray.data.ActorPoolStrategy(size=clip_actors),
            num_cpus=clip_actor_cpus,
            batch_size=batch_size,
            batch_format="numpy",
        )
        .map(label_window, fn_kwargs={"cfg": cfg}, num_cpus=label_cpus)
        .groupby("shard", num_partitions=max(1, shards))
        .map_groups(_write_group, fn_kwargs={"out_dir": out_dir}, batch_format="numpy")
        .take_all()
    )
    written = [dict(w) for w in written]
    return _summary(clips, [None] * n_windows, sum(w["records"] for w in written), written)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A Ray cluster of ``nodes`` nodes on this machine (loopback only), for tests and
    benchmarks: ``ray start --head`` plus ``ray start --address`` per extra node, each with
    ``--block`` so that terminating its ``ray start`` process stops exactly that node's
    processes (nothing is stopped by name, unlike ``ray stop``).

    >>> with LocalCluster(nodes=2, cpus_per_node=1) as cluster:   # doctest: +SKIP
    ...     ray.init(address=cluster.address)
    ...     label_videos("clips.jsonl", "out/", LabelConfig())
    """

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mib: int = 150, log_dir: Optional[str] = None):
        self.nodes, self.cpus, self.store = nodes, cpus_per_node, object_store_mib
        self.log_dir = Path(log_dir or f"/tmp/magma-ray-logs-{os.getpid()}")
        self.address = ""
        self.processes: List[Any] = []

    def _start(self, args: List[str], name: str):
        import subprocess
        import sys

        ray_bin = str(Path(sys.executable).with_name("ray"))
        common = ["--num-cpus", str(self.cpus), "--node-ip-address", "127.0.0.1",
                  "--object-store-memory", str(self.store * 2**20), "--disable-usage-stats", "--block"]
        log = open(self.log_dir / f"{name}.log", "w")
        # A node's workers use as many threads as it has CPUs (the tracker is rayon-parallel),
        # so nodes on one machine do not share cores behind Ray's back.
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAYON_NUM_THREADS=str(self.cpus))
        p = subprocess.Popen([ray_bin, "start", *args, *common], stdout=log, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
        self.processes.append(p)
        return p

    def __enter__(self) -> "LocalCluster":
        import subprocess
        import sys
        import time

        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        temp = f"/tmp/magma-ray-{os.getpid()}-{port}"
        try:
            head = self._start(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp], "head")
            ray_bin = str(Path(sys.executable).with_name("ray"))
            deadline = time.time() + 120
            while subprocess.run([ray_bin, "status", "--address", self.address], capture_output=True).returncode != 0:
                if head.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"Ray head did not start; see {self.log_dir / 'head.log'}")
                time.sleep(1)
            for i in range(1, self.nodes):
                self._start(["--address", self.address], f"node{i}")
            import ray

            ray.init(address=self.address, logging_level="WARNING")
            while len([n for n in ray.nodes() if n["Alive"]]) < self.nodes:
                if time.time() > deadline:
                    raise RuntimeError(f"only some Ray nodes joined; see {self.log_dir}")
                time.sleep(0.5)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        import signal
        import subprocess

        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass
        for p in reversed(self.processes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.processes):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.processes.clear()


def _stage_runner(spec: Dict[str, Any]) -> Any:
    if spec["kind"] == "video":
        return magma_rs.StageRunner.video(spec["out"], **spec["options"])
    return magma_rs.StageRunner(spec["pipeline"], spec["stage"])


class _StageActor:
    """Ray actor: builds a stage once (its models load once per actor) and runs magma-data's job
    runner on the work items it is given."""

    def __init__(self, spec: Dict[str, Any]):
        self.runner = _stage_runner(spec)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        funnel = self.runner.run([str(item) for item in batch["item"]])
        return {"records": np.array([int(funnel["records"])]), "items": np.array([int(funnel["items"])])}


def _run_items_on_ray(spec: Dict[str, Any], items: List[str], actors: int, actor_cpus: float) -> None:
    import ray

    ray.data.from_items([{"item": item} for item in items], override_num_blocks=len(items)).map_batches(
        _StageActor,
        fn_constructor_kwargs={"spec": spec},
        compute=ray.data.ActorPoolStrategy(size=max(1, min(actors, len(items)))),
        num_cpus=actor_cpus,
        batch_size=1,
        batch_format="numpy",
    ).materialize()


def label_clip_lists(
    clip_lists: Iterable["os.PathLike[str] | str"],
    out_dir: "os.PathLike[str] | str",
    *,
    ray_actors: int = 0,
    actor_cpus: float = 1.0,
    **video_options: Any,
) -> Dict[str, Any]:
    """magma-data's video stage (the ``magma data run`` video converter: clip list → shots →
    CLIP score → windows inside shots → ToM records) over clip list files, one output part per
    clip list in ``out_dir``. With ``ray_actors`` > 0 the clip lists are spread over a Ray actor
    pool (each actor loads the CLIP model once); the parts are written by the job runner either
    way, so both runs give the same files, every record exactly once. ``video_options``:
    ``window``, ``height``, ``grid``, ``kind``, ``seed``, ``shot_threshold``, ``clip_model``.
    Returns the funnel of all clip lists."""
    out_dir = str(Path(out_dir).resolve())
    items = [magma_rs.work_item(str(Path(p).resolve())) for p in clip_lists]
    spec = {"kind": "video", "out": out_dir, "options": video_options}
    if ray_actors > 0 and items:
        _run_items_on_ray(spec, items, ray_actors, actor_cpus)
    # Locally this does the work; after Ray it only reads the done markers and adds up.
    return _stage_runner(spec).run(items)


def run_pipeline_on_ray(
    pipeline: "os.PathLike[str] | str", *, actors: int = 1, actor_cpus: float = 1.0
) -> List[Dict[str, Any]]:
    """``magma data run PIPELINE.toml`` with Ray as the scheduler (call ``ray.init`` first): stage
    after stage, the work items go to an actor pool of ``actors`` actors (each builds the stage
    once), and
    every item is written by magma-data's own job runner (one part per item: tar, error log,
    done marker, each renamed into place), so the output is ``magma data run``'s, exactly once,
    whatever Ray retries. The last step is :func:`magma_rs.run_pipeline` itself: with every
    item done it only adds up the funnels and writes them as the CLI does. Returns its reports."""
    pipeline = str(Path(pipeline).resolve())
    for stage in magma_rs.pipeline_stages(pipeline):
        items = magma_rs.pipeline_items(pipeline, stage["name"])
        if items:
            spec = {"kind": "pipeline", "pipeline": pipeline, "stage": stage["name"]}
            _run_items_on_ray(spec, items, actors, actor_cpus)
    return magma_rs.run_pipeline(pipeline)
