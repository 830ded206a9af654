"""magma-rs from Python: the fast Rust pieces of Magma, numpy in and out.

* :func:`som` — Set-of-Mark: numbered marks on a screenshot (``magma som``).
* :func:`tom` — Trace-of-Mark: track a point grid, remove camera motion, pick marks and build the
  ToM record (``magma tom``); traces come back as numpy arrays.
* :class:`ActionTokenizer`, :class:`RobotActionDecoder`, :func:`encode_action` — robot action
  tokens <-> 7-DoF actions; :func:`parse_ui`, :func:`parse_marks` — UI / mark / trace answers
  (``magma action``).
* :func:`detect_shots`, :class:`ClipScorer`, :func:`clip_frames` — video curation (``magma data
  shots``, ``magma data clip-score``): PySceneDetect-equal shots and Magma's CLIP filter score.
* :class:`Magma` — ``Magma(model_dir).generate(prompt, images)`` for small models on the CPU
  (``magma generate``).
* :func:`convert` — iterate the records of an RLDS / AITW / Mind2Web / SeeClick / LLaVA source
  (magma-data's converters, the stages of ``magma data run``).
* :func:`record_id`, :func:`tom_sample`, :func:`write_shard`, :func:`read_shard` — magma-data
  records and WebDataset shards (the format of ``magma data``).
* :func:`run_pipeline` (``magma data run``), :func:`pipeline_stages`, :func:`pipeline_items`,
  :class:`StageRunner` — magma-data's job runner, splittable over any scheduler
  (:func:`magma_rs.pipeline.run_pipeline_on_ray`).
* :mod:`magma_rs.pipeline` — the Ray Data video-labelling job (shots -> CLIP filter -> ToM ->
  WebDataset shards).

Images are ``numpy.ndarray`` of shape (H, W, 3) and dtype uint8 (C-contiguous) or
``PIL.Image.Image``. Errors are ``ValueError`` (bad argument, with what was wrong) or ``OSError`` /
``FileNotFoundError`` (files), carrying the Rust message. Long calls release the GIL.

Every function takes the same options, with the same defaults, as the matching ``magma``
subcommand, and returns what its ``--json`` output holds.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from . import _native
from ._native import (
    ActionTokenizer,
    ClipScorer,
    Magma,
    RobotActionDecoder,
    clip_frames,
    convert,
    detect_shots,
    encode_action,
    encode_png,
    frame_count,
    load_frames,
    parse_marks,
    parse_ui,
    pipeline_items,
    pipeline_stages,
    read_shard,
    record_id,
    run_pipeline,
    StageRunner,
    synthetic_scene,
    tom,
    tom_sample,
    work_item,
    write_shard,
)

__version__ = _native.__version__

__all__ = [
    "ActionTokenizer",
    "ClipScorer",
    "Magma",
    "RobotActionDecoder",
    "SomResult",
    "clip_frames",
    "convert",
    "detect_shots",
    "encode_action",
    "encode_png",
    "frame_count",
    "load_frames",
    "parse_marks",
    "parse_ui",
    "pipeline_items",
    "pipeline_stages",
    "read_shard",
    "record_id",
    "run_pipeline",
    "StageRunner",
    "som",
    "synthetic_scene",
    "tom",
    "tom_sample",
    "work_item",
    "write_shard",
]

BOX_FORMATS = ("omniparser", "pixels", "ratios", "yxhw", "yxhw-ratios")


class SomResult(tuple):
    """What :func:`som` returns: a 2-tuple ``(image, marks)`` (so ``marked, marks = som(...)``)
    with the prompt list and warnings as attributes.

    Attributes:
        image: the marked screenshot, (H, W, 3) uint8.
        marks: one dict per box, in input order: ``id`` (the 0-based number drawn), ``bbox`` and
            ``bbox_normalized`` ([x1, y1, x2, y2]), ``label`` rectangle, ``font_size``,
            ``position``, ``fallback``, and the input's ``kind`` / ``content`` /
            ``interactivity`` when given.
        prompt: the prompt-ready list, one line per mark: ``Mark 3: button "Sign in"``.
        warnings: one line per clipped box coordinate (also issued as Python warnings).
    """

    image: np.ndarray
    marks: List[Dict[str, Any]]
    prompt: str
    warnings: List[str]

    def __new__(cls, image: np.ndarray, marks: List[Dict[str, Any]], prompt: str, warnings: List[str]) -> "SomResult":
        self = super().__new__(cls, (image, marks))
        self.image, self.marks, self.prompt, self.warnings = image, marks, prompt, warnings
        return self


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"boxes: cannot convert {type(value).__name__} to a number or list")


def _check_box_array(boxes: np.ndarray) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected an array of shape (N, 4), got {boxes.shape}")
    if not np.issubdtype(boxes.dtype, np.number):
        raise ValueError(f"boxes: expected a numeric array, got dtype {boxes.dtype}")


def _boxes_json(boxes: Any) -> str:
    if isinstance(boxes, os.PathLike):
        with open(boxes, encoding="utf-8") as f:
            return f.read()
    if isinstance(boxes, str):
        return boxes
    if isinstance(boxes, np.ndarray):
        _check_box_array(boxes)
        return json.dumps(boxes.tolist())
    try:
        return json.dumps(boxes, default=_json_default, allow_nan=True)
    except TypeError as e:
        raise ValueError(str(e)) from None


def som(
    image: Any,
    boxes: Union[np.ndarray, Sequence[Any], str, "os.PathLike[str]"],
    *,
    format: str = "omniparser",
    style: str = "magma",
    text_layout: str = "raqm",
) -> SomResult:
    """Draws numbered Set-of-Mark labels on a screenshot (``magma som``).

    Args:
        image: (H, W, 3) uint8 numpy array or PIL image.
        boxes: an (N, 4) array or list of boxes, a list of dicts with ``bbox`` (and ``type``,
            ``content``, ``interactivity``), a dict with ``parsed_content_list`` or ``boxes``,
            JSON text, or the path of a JSON file — what ``magma som --boxes`` reads.
        format: how boxes are written: ``"omniparser"`` (default, as the CLI: [x1, y1, x2, y2]
            ratios), ``"pixels"``, ``"ratios"``, ``"yxhw"`` or ``"yxhw-ratios"``.
        style: ``"magma"`` (the UI agent's marks) or ``"omniparser"``.
        text_layout: Pillow layout whose label sizes are reproduced: ``"raqm"`` or ``"basic"``.

    Returns:
        :class:`SomResult` ``(image, marks)`` with ``.prompt`` and ``.warnings``.

    Raises:
        ValueError: wrong dtype / shape / non-contiguous image, malformed boxes (naming the
            entry and field), unknown format or style.

    >>> import numpy as np, magma_rs
    >>> shot = np.full((400, 640, 3), 240, np.uint8)
    >>> marked, marks = magma_rs.som(shot, [[40, 60, 200, 100]], format="pixels")
    >>> marked.shape, marks[0]["id"]
    ((400, 640, 3), 0)
    """
    if format not in BOX_FORMATS and format != "yxhw_ratios":
        raise ValueError(f"format: unknown box format {format!r}; expected one of {', '.join(BOX_FORMATS)}")
    if isinstance(boxes, np.ndarray):
        _check_box_array(boxes)
        boxes = boxes.tolist()
    elif isinstance(boxes, os.PathLike):
        boxes = _boxes_json(boxes)
    # Lists of [x1, y1, x2, y2] go to Rust as they are; other lists come back to _boxes_json.
    marked, marks, prompt, warnings = _native.som_json(image, boxes, format, style, text_layout, source_name="boxes")
    if warnings:
        import warnings as _warnings

        for w in warnings:
            _warnings.warn(w, stacklevel=2)
    return SomResult(marked, marks, prompt, warnings)
