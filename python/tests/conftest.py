"""Shared fixtures: the `magma` binary (for CLI-equality tests) and generated inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = REPO / "tests" / "fixtures" / "magma-parity" / "models" / "magma-tiny-crop"


def _find_magma() -> Path:
    env = os.environ.get("MAGMA_BIN")
    if env:
        return Path(env)
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "magma"
        if candidate.exists():
            return candidate
    # Not built yet: build it (never skip the CLI comparison silently).
    subprocess.run(["cargo", "build", "-p", "magma-cli"], cwd=REPO, check=True)
    return REPO / "target" / "debug" / "magma"


@pytest.fixture(scope="session")
def magma_bin() -> Path:
    return _find_magma()


@pytest.fixture(scope="session")
def run_magma(magma_bin):
    """Runs `magma <args>` and returns stdout; with json_out=True parses it."""

    def run(*args, json_out: bool = True):
        proc = subprocess.run(
            [str(magma_bin), *map(str, args)], capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, f"magma {' '.join(map(str, args))} failed:\n{proc.stderr}"
        return json.loads(proc.stdout) if json_out else proc.stdout

    return run


def write_frames(frames: np.ndarray, folder: Path) -> Path:
    """Writes a (T, H, W, 3) uint8 array as a folder of numbered PNG frames."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{t:04d}.png")
    return folder


@pytest.fixture
def screenshot() -> np.ndarray:
    """A 640x400 'screenshot' with some structure (deterministic)."""
    rng = np.random.default_rng(7)
    img = np.full((400, 640, 3), 236, np.uint8)
    for _ in range(12):
        x, y = rng.integers(0, 560), rng.integers(0, 360)
        img[y : y + 30, x : x + 80] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def have_cargo() -> bool:
    return shutil.which("cargo") is not None


def pipeline_file(folder: Path) -> Path:
    """A magma-data PIPELINE.toml over the converter fixtures (RLDS, AITW, a filter stage)."""
    fixtures = REPO / "crates" / "magma-data" / "tests" / "fixtures"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "PIPELINE.toml").write_text(f"""out = "out"

[[stage]]
name = "robot"
kind = "rlds"
input = "{fixtures}/rlds/tiny_robot/1.0.0"
statistics = "{fixtures}/rlds/dataset_statistics.json"

[[stage]]
name = "aitw"
kind = "aitw"
input = "{fixtures}/aitw"

[[stage]]
name = "aitw_marked"
kind = "filter"
from = "aitw"
require_marks = true
""")
    return folder / "PIPELINE.toml"
