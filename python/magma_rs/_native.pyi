"""Type stubs of the native extension `magma_rs._native` (Rust, PyO3, abi3)."""

from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

ImageLike = Union[npt.NDArray[np.uint8], Any]
"""(H, W, 3) uint8 C-contiguous numpy array, or a PIL.Image.Image."""
StrPath = Union[str, "PathLike[str]"]

__version__: str

def som_json(
    image: ImageLike,
    boxes_json: str,
    format: str = "omniparser",
    style: str = "magma",
    text_layout: str = "raqm",
    source_name: str = "boxes",
) -> Tuple[npt.NDArray[np.uint8], List[Dict[str, Any]], str, List[str]]:
    """Set-of-Mark from boxes as JSON text: (marked image, marks, prompt list, warnings)."""

def _bench_som_rust(image: ImageLike, boxes_json: str, n: int, format: str = "pixels", style: str = "magma") -> float:
    """Seconds per call of box parsing + mark drawing timed inside Rust (benchmark baseline)."""

def tom(
    input: Union[StrPath, Sequence[ImageLike], npt.NDArray[np.uint8]],
    *,
    grid: int = 15,
    start: int = 0,
    frames: Optional[int] = None,
    stride: int = 1,
    task: str = "the task shown in the video",
    kind: str = "video",
    seed: int = 0,
    height: int = 512,
    size: Optional[Tuple[int, int]] = None,
    camera: str = "auto",
    trace_speed: bool = False,
    trace_start_end: bool = False,
    keep_static_points: bool = False,
    record_id: Optional[str] = None,
    out: Optional[StrPath] = None,
) -> Dict[str, Any]:
    """Trace-of-Mark on a window of frames (``magma tom``).

    ``input``: a folder of numbered frames, a video file (``video`` build), a sequence of images
    or a (T, H, W, 3) uint8 array. Frames are resized to ``height`` (0: keep) or ``size``
    (W, H), as the CLI does. ``out`` writes the CLI's files (record.json, traces.json,
    marked.png, frame0.png, traces.png, tracks.gif).

    Returns a dict: ``id``, ``kind`` ("tom" | "som"), ``fallback``, ``question``, ``answer``,
    ``record`` (the conversation record), ``width``, ``height``, ``frames``, ``queries`` (N, 2)
    float32, ``tracks`` (T, N, 2) float32 pixels, ``visible`` (T, N) bool, ``valid`` (V,) int64,
    ``stabilized`` (T, V, 2) float32, ``mean_step`` (V,) float32, ``moving`` (V,) bool,
    ``camera_motion_removed``, ``homography_failures``, ``marks`` (id, grid, pixel, point, role),
    ``traces`` (per answered mark: ``id``, ``points`` (K, 2) int32 on the 256 grid, ``speed``),
    ``source_frames``, ``original_size``, ``marked_image`` (H, W, 3) uint8, ``traces_json``
    (the CLI's traces.json) and ``files`` (written paths).
    """

def synthetic_scene(kind: str, width: int = 256, height: int = 192, frames: int = 16, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A synthetic scene of magma-traces ("static", "pan", "zoom", "rotate", "objects",
    "pan-objects", "combined") as a (T, H, W, 3) uint8 array."""

def encode_png(image: ImageLike) -> bytes:
    """PNG bytes from the same encoder as the Rust outputs."""

def frame_count(path: StrPath) -> int:
    """Number of frames of a frame folder or video file."""

def load_frames(path: StrPath, indices: Sequence[int], *, height: int = 0) -> List[npt.NDArray[np.uint8]]:
    """The frames at ``indices`` of a frame folder or video file."""

class ActionTokenizer:
    """OpenVLA's 256-bin robot action tokenizer (ids ``vocab_size-256 ..= vocab_size-1``)."""

    def __init__(self, vocab_size: int = 128000) -> None: ...
    def encode(self, values: Union[Sequence[float], npt.NDArray[np.float64]]) -> npt.NDArray[np.uint32]:
        """Normalised values in [-1, 1] -> token ids."""
    def decode(self, ids: Union[Sequence[int], npt.NDArray[Any]], strict: bool = False) -> npt.NDArray[np.float64]:
        """Token ids -> bin centres in [-1, 1]."""
    @property
    def vocab_size(self) -> int: ...
    @property
    def token_range(self) -> Tuple[int, int]: ...
    def bin_centers(self) -> npt.NDArray[np.float64]: ...

class RobotActionDecoder:
    """Token ids -> normalised / un-normalised 7-DoF action and the embodiment's command."""

    def __init__(
        self,
        unnorm_key: Optional[str] = None,
        *,
        stats: Optional[StrPath] = None,
        embodiment: Optional[str] = None,
        vocab_size: int = 128000,
        strict: bool = False,
    ) -> None: ...
    @property
    def unnorm_key(self) -> str: ...
    def decode(self, ids: Union[Sequence[int], npt.NDArray[Any]]) -> Dict[str, Any]:
        """One step: ``ids``, ``normalized`` and ``unnormalized`` (float64 arrays), ``command``."""
    def reset(self) -> None:
        """Starts a new episode (clears the sticky gripper)."""

def encode_action(
    values: Union[Sequence[float], npt.NDArray[np.float64]],
    *,
    unnorm_key: Optional[str] = None,
    stats: Optional[StrPath] = None,
    normalized: bool = False,
    vocab_size: int = 128000,
) -> Dict[str, Any]:
    """Raw 7-DoF action -> ``ids`` (uint32 array), ``normalized``, ``decoded``, ``unnorm_key``."""

def parse_ui(
    text: str,
    *,
    width: Optional[int] = None,
    height: Optional[int] = None,
    boxes: Optional[Dict[int, Sequence[float]]] = None,
) -> Dict[str, Any]:
    """UI answer (Coordinate/Mark, Qwen box, AITW JSON, Mind2Web) -> ``magma action parse-ui --json``."""

def parse_marks(text: str, *, width: Optional[int] = None, height: Optional[int] = None) -> Dict[str, Any]:
    """SoM / ToM answer -> ``magma action parse-marks --json``."""

class Magma:
    """A Magma model from a local folder; ``generate`` releases the GIL."""

    def __init__(self, model: StrPath, *, dtype: Optional[str] = None, device: str = "cpu", quantize: Optional[str] = None) -> None: ...
    def generate(
        self,
        prompt: str,
        images: Optional[Sequence[Union[ImageLike, StrPath]]] = None,
        *,
        system: Optional[str] = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        seed: int = 0,
        repetition_penalty: float = 1.0,
        stop: Optional[Sequence[str]] = None,
        on_token: Optional[Callable[[str, int], Any]] = None,
    ) -> Dict[str, Any]:
        """``text``, ``generated_ids``, ``prompt_ids``, ``finish_reason``, ``timings``;
        ``on_token(text_delta, token_id)`` streams each token (an exception there stops it)."""
    @property
    def path(self) -> str: ...

def record_id(source: str, item: str) -> str:
    """magma-data's deterministic record id: ``{source}-{32 hex of sha256(source NUL item)}``."""

def tom_sample(
    path: StrPath,
    *,
    clip_id: str,
    start: int,
    frames: int,
    task: str,
    source: str = "video_tom",
    grid: int = 15,
    height: int = 512,
    kind: str = "video",
    clip_score: Optional[float] = None,
) -> Tuple[str, bytes, str]:
    """ToM on one window as a magma-data record: ``(record_json, marked_png, "tom" | "som")``;
    id ``record_id(source, f"{clip_id}#{start}+{frames}")``, seed from the id."""

def write_shard(path: StrPath, samples: Sequence[Tuple[str, Sequence[Tuple[str, bytes]]]]) -> List[Dict[str, Any]]:
    """magma-data's WebDataset writer: ``(record_json, [(asset name, bytes)])`` in order -> index rows."""

def read_shard(path: StrPath) -> List[Tuple[Dict[str, Any], Dict[str, bytes]]]:
    """magma-data's WebDataset reader: ``(record, {asset name: bytes})`` per sample."""

def detect_shots(
    path: StrPath,
    *,
    detector: str = "content",
    threshold: Optional[float] = None,
    min_scene_len: int = 15,
    luma_only: bool = False,
    weights: Optional[Tuple[float, float, float, float]] = None,
    kernel_size: Optional[int] = None,
    filter_mode: str = "merge",
    window_width: int = 2,
    min_content_val: float = 15.0,
    downscale: Optional[int] = None,
    psd_06: bool = False,
    fps: Optional[Tuple[int, int]] = None,
    stats: bool = False,
) -> Dict[str, Any]:
    """PySceneDetect-equal shots (``magma data shots --json``): ``frames``, ``frame_rate``,
    ``cuts``, ``scenes`` (empty without a cut), ``stats`` (with ``stats=True``)."""

def clip_frames(start: int, frames: int) -> List[int]:
    """The 4 frames Magma's CLIP filter scores in a window."""

class ClipScorer:
    """Magma's CLIP filter score: cosine of L2-normalised embeddings (HF CLIP folder, CPU)."""

    def __init__(self, model: StrPath) -> None: ...
    def score(self, images: Sequence[ImageLike], texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(images, texts) cosine matrix; PIL images with alpha are preprocessed as RGBA."""

class Records:
    """Records of a source, converted one input file at a time: ``(record, {asset: bytes})``."""

    def __iter__(self) -> "Records": ...
    def __next__(self) -> Tuple[Dict[str, Any], Dict[str, bytes]]: ...
    @property
    def skipped(self) -> List[Dict[str, Any]]:
        """Records the converter skipped: ``file``, ``locator``, ``reason``, ``message``."""

def convert(kind: str, input: StrPath, **options: Any) -> Records:
    """Iterate the records of ``rlds`` / ``aitw`` / ``mind2web`` / ``seeclick`` / ``llava`` input;
    options are PIPELINE.toml's stage fields (``statistics``, ``images``, ``max_marks``, …)."""

def work_item(path: StrPath) -> str:
    """magma-data's work item of one input file (key = file name), as JSON."""

def pipeline_stages(path: StrPath) -> List[Dict[str, Any]]:
    """A PIPELINE.toml's stages: ``name``, ``kind``, ``dir``."""

def pipeline_items(path: StrPath, stage: str) -> List[str]:
    """The work items (JSON) of one stage (a filter's: the done parts of the stage it reads)."""

def run_pipeline(path: StrPath, *, shard_index: int = 0, shard_count: int = 1) -> List[Dict[str, Any]]:
    """``magma data run PIPELINE.toml [--shard i/n]`` on this machine; the stage reports."""

class StageRunner:
    """One stage built once (models loaded once), run item by item by magma-data's job runner."""

    def __init__(self, pipeline: StrPath, stage: str) -> None: ...
    @staticmethod
    def video(
        out: StrPath,
        *,
        window: int = 16,
        height: int = 256,
        grid: int = 15,
        kind: str = "video",
        seed: int = 0,
        shot_threshold: float = 27.0,
        clip_model: Optional[StrPath] = None,
    ) -> "StageRunner":
        """magma-data's video stage (clip list → shots → CLIP → windows → ToM) writing into ``out``."""
    def run(self, items: Sequence[str]) -> Dict[str, Any]:
        """Runs the items (skipping done ones); returns their funnel."""
