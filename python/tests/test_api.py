"""The Python API against the `magma` CLI on the same inputs: equal values, equal files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import magma_rs
from conftest import TINY_MODEL, pipeline_file, write_frames

BOXES = [[40, 60, 200, 100], [300, 20, 420, 80], [10, 300, 630, 390], [500, 100, 560, 160]]


# ---------------------------------------------------------------- Set-of-Mark


@pytest.mark.parametrize("style", ["magma", "omniparser"])
def test_som_equals_cli(tmp_path, screenshot, run_magma, style):
    shot = tmp_path / "shot.png"
    Image.fromarray(screenshot).save(shot)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(BOXES))
    out = tmp_path / "marked.png"
    cli = run_magma("som", "--image", shot, "--boxes", boxes, "--format", "pixels", "--style", style, "--out", out, "--json")

    marked, marks = result = magma_rs.som(screenshot, BOXES, format="pixels", style=style)
    assert marked.shape == (400, 640, 3) and marked.dtype == np.uint8
    np.testing.assert_array_equal(marked, np.asarray(Image.open(out).convert("RGB")))
    assert marks == cli["marks"]
    assert result.prompt == cli["prompt"]
    assert not np.array_equal(marked, screenshot), "marks were drawn"


def test_som_accepts_numpy_boxes_pil_images_and_omniparser_dicts(tmp_path, screenshot, run_magma):
    a = magma_rs.som(screenshot, np.array(BOXES, dtype=np.float32), format="pixels")
    b = magma_rs.som(Image.fromarray(screenshot), BOXES, format="pixels")
    np.testing.assert_array_equal(a.image, b.image)
    assert a.marks == b.marks

    parsed = [
        {"bbox": [0.1, 0.1, 0.3, 0.2], "type": "text", "content": "Sign in", "interactivity": True},
        {"bbox": [0.5, 0.5, 0.7, 0.6], "type": "icon", "content": None, "interactivity": False},
    ]
    shot = tmp_path / "shot.png"
    Image.fromarray(screenshot).save(shot)
    boxes = tmp_path / "parsed.json"
    boxes.write_text(json.dumps({"parsed_content_list": parsed}))
    cli = run_magma("som", "--image", shot, "--boxes", boxes, "--out", tmp_path / "m.png", "--json")
    res = magma_rs.som(screenshot, {"parsed_content_list": parsed})  # default format: omniparser
    assert res.marks == cli["marks"]
    assert res.prompt == cli["prompt"] == 'Mark 0: text "Sign in"\nMark 1: icon\n'
    # A path to the same JSON file reads like the CLI's --boxes.
    assert magma_rs.som(screenshot, boxes).marks == cli["marks"]


def test_som_clipping_warns_like_the_cli(tmp_path, screenshot, run_magma):
    boxes = [[600, 380, 700, 450]]
    shot = tmp_path / "shot.png"
    Image.fromarray(screenshot).save(shot)
    (tmp_path / "b.json").write_text(json.dumps(boxes))
    cli = run_magma("som", "--image", shot, "--boxes", tmp_path / "b.json", "--format", "pixels", "--out", tmp_path / "m.png", "--json")
    with pytest.warns(UserWarning):
        res = magma_rs.som(screenshot, boxes, format="pixels")
    assert len(res.warnings) == len(cli["warnings"]) == 2
    assert res.marks[0]["bbox"] == [600.0, 380.0, 640.0, 400.0]


# ---------------------------------------------------------------- Trace-of-Mark


@pytest.fixture(scope="module")
def pan_objects(tmp_path_factory):
    frames = magma_rs.synthetic_scene("pan-objects", 192, 144, 12, seed=4)
    folder = write_frames(frames, tmp_path_factory.mktemp("clip") / "pan_objects")
    return frames, folder


def test_synthetic_scene_is_deterministic():
    a = magma_rs.synthetic_scene("objects", 64, 48, 3, seed=1)
    assert a.shape == (3, 48, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, magma_rs.synthetic_scene("objects", 64, 48, 3, seed=1))
    assert not np.array_equal(a, magma_rs.synthetic_scene("objects", 64, 48, 3, seed=2))


def test_tom_equals_cli_file_for_file(tmp_path, pan_objects, run_magma):
    _, folder = pan_objects
    cli_out, py_out = tmp_path / "cli", tmp_path / "py"
    args = ["--grid", 10, "--height", 0, "--task", "push the discs", "--seed", 3]
    summary = run_magma("tom", folder, *args, "--out", cli_out, "--json")
    res = magma_rs.tom(folder, grid=10, height=0, task="push the discs", seed=3, out=py_out)

    for name in ("record.json", "traces.json", "marked.png", "frame0.png", "traces.png", "tracks.gif"):
        assert (cli_out / name).read_bytes() == (py_out / name).read_bytes(), name
    assert res["kind"] == summary["record"] == "tom"
    assert res["question"] == summary["question"] and res["answer"] == summary["answer"]
    assert res["record"] == json.loads((cli_out / "record.json").read_text())
    assert res["id"] == "pan_objects"

    # The numpy arrays hold what traces.json lists (rounded there to 1e-3).
    traces = json.loads((cli_out / "traces.json").read_text())
    assert res["tracks"].shape == (12, 100, 2) and res["tracks"].dtype == np.float32
    assert res["visible"].shape == (12, 100) and res["visible"].dtype == np.bool_
    for n in (0, 37, 99):
        np.testing.assert_allclose(res["tracks"][:, n], traces["traces"][n]["points"], atol=6e-4)
        assert res["visible"][:, n].tolist() == traces["traces"][n]["visible"]
    assert [m["id"] for m in res["marks"]] == [m["id"] for m in traces["marks"]]
    assert res["valid"].tolist() == [t["index"] for t in traces["traces"] if t["valid"]]
    assert res["traces"], "moving marks have traces"
    for t in res["traces"]:
        assert t["points"].dtype == np.int32 and t["points"].shape[1] == 2
        assert f'"Mark {t["id"]}"' in res["answer"]
    np.testing.assert_array_equal(res["marked_image"], np.asarray(Image.open(cli_out / "marked.png")))


def test_tom_in_memory_frames_equal_the_folder(pan_objects):
    frames, folder = pan_objects
    kwargs = dict(grid=8, height=0, task="t", seed=1, start=2, frames=8, stride=1)
    a = magma_rs.tom(folder, **kwargs)
    b = magma_rs.tom(frames, **kwargs)  # (T, H, W, 3) array
    c = magma_rs.tom([Image.fromarray(f) for f in frames], **kwargs)
    for other in (b, c):
        np.testing.assert_array_equal(a["tracks"], other["tracks"])
        assert a["answer"] == other["answer"] and a["question"] == other["question"]
    assert a["source_frames"] == list(range(2, 10))


def test_static_scene_falls_back_to_set_of_mark():
    res = magma_rs.tom(magma_rs.synthetic_scene("static", 96, 64, 4, seed=1), grid=6, height=0)
    assert res["kind"] == "som" and res["fallback"] is not None
    assert res["question"].endswith("Please locate all the numerical marks in the image.\n")


# ---------------------------------------------------------------- action codecs

IDS = [127857, 127873, 127868, 127904, 127861, 127874, 127744]


def test_robot_decode_equals_cli(run_magma):
    cli = run_magma("action", "decode", "--ids", ",".join(map(str, IDS + [128009])), "--embodiment", "widowx", "--json")
    dec = magma_rs.RobotActionDecoder(embodiment="widowx")
    step = dec.decode(np.array(IDS + [128009], dtype=np.int64))
    want = cli["steps"][0]
    assert dec.unnorm_key == cli["unnorm_key"] == "bridge_orig"
    assert step["ids"] == want["ids"]
    assert isinstance(step["unnormalized"], np.ndarray) and step["unnormalized"].shape == (7,)
    assert step["normalized"].tolist() == want["normalized"]
    assert step["unnormalized"].tolist() == want["unnormalized"]
    assert step["command"] == want["command"]


def test_robot_encode_equals_cli_and_round_trips(run_magma):
    values = [-0.01, 0.02, 0.0, 0.0, 0.0, 0.1, 1.0]
    cli = run_magma("action", "encode", "--values=" + ",".join(map(str, values)), "--unnorm-key", "bridge_orig", "--json")
    out = magma_rs.encode_action(np.array(values), unnorm_key="bridge_orig")
    assert out["ids"].dtype == np.uint32 and out["ids"].tolist() == cli["ids"]
    assert out["normalized"].tolist() == cli["normalized"]
    assert out["decoded"] == cli["decoded"]
    tok = magma_rs.ActionTokenizer()
    assert tok.token_range == (128000 - 256, 127999)
    np.testing.assert_array_equal(tok.decode(out["ids"]), np.array(cli["decoded"]))
    # Bin centres re-encode to their own ids, except the top id (value 1.0): it decodes to the last
    # centre, 0.996, whose id is one lower (the reference's 256 ids over 255 centres).
    again = tok.encode(tok.decode(out["ids"]))
    np.testing.assert_array_equal(again[:6], out["ids"][:6])
    assert (out["ids"][6], again[6]) == (127744, 127745)


@pytest.mark.parametrize(
    "text",
    ["Coordinate: (0.04, 0.12). Mark: 12", '{"TAP": {"MARK": 3}}', "<box>(100,200),(300,400)</box>"],
)
def test_parse_ui_equals_cli(run_magma, text):
    cli = run_magma("action", "parse-ui", "--text", text, "--width", 1920, "--height", 1080, "--json")
    assert magma_rs.parse_ui(text, width=1920, height=1080) == cli


def test_parse_marks_equals_cli(run_magma):
    text = "Mark 3 at [12,200]. Mark 7 at [90,41]"
    cli = run_magma("action", "parse-marks", "--text", text, "--width", 640, "--height", 480, "--json")
    assert magma_rs.parse_marks(text, width=640, height=480) == cli
    res = magma_rs.tom(magma_rs.synthetic_scene("pan-objects", 160, 120, 8, seed=2), grid=8, height=0, task="t")
    parsed = magma_rs.parse_marks(res["answer"])
    assert parsed["format"] == ("trace_of_mark" if res["kind"] == "tom" else "set_of_mark")


# ---------------------------------------------------------------- the model


def test_generate_equals_cli(tmp_path, run_magma):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    prompt = "<image>\nWhat is in this image?"
    cli = run_magma("generate", "--model", TINY_MODEL, "--prompt", prompt, "--image", path, "--max-new-tokens", 6, "--json")
    model = magma_rs.Magma(TINY_MODEL)
    out = model.generate(prompt, [image], max_new_tokens=6)
    assert out["generated_ids"] == cli["generated_ids"]
    assert out["prompt_ids"] == cli["prompt_ids"]
    assert out["text"] == cli["text"] and out["finish_reason"] == cli["finish_reason"]
    assert model.generate(prompt, [path], max_new_tokens=6)["generated_ids"] == cli["generated_ids"]
    # Streaming: one callback per token, the deltas add up to the text.
    streamed = []
    model.generate(prompt, [image], max_new_tokens=6, on_token=lambda delta, token: streamed.append((delta, token)))
    assert [t for _, t in streamed] == cli["generated_ids"]
    assert "".join(d for d, _ in streamed) == cli["text"]

    def interrupt(delta, token):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.generate(prompt, [image], max_new_tokens=6, on_token=interrupt)


# ---------------------------------------------------------------- bad input


def test_bad_images_raise_value_errors_naming_the_problem(screenshot):
    with pytest.raises(ValueError, match="dtype uint8, got float32"):
        magma_rs.som(screenshot.astype(np.float32), BOXES, format="pixels")
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\).*\[400, 640\]"):
        magma_rs.som(screenshot[:, :, 0], BOXES, format="pixels")
    with pytest.raises(ValueError, match="not C-contiguous"):
        magma_rs.som(screenshot[:, ::2], BOXES, format="pixels")
    with pytest.raises(ValueError, match=r"frames\[1\]: the array is not C-contiguous"):
        magma_rs.tom([screenshot, np.asfortranarray(screenshot)])
    with pytest.raises(TypeError, match="numpy.ndarray"):
        magma_rs.som("not an image", BOXES)
    with pytest.raises(ValueError, match="entry 1, field"):
        magma_rs.som(screenshot, [[1, 2, 3, 4], [1, 2, "x", 4]], format="pixels")
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        magma_rs.som(screenshot, np.zeros((3, 5)), format="pixels")
    with pytest.raises(ValueError, match="unknown style"):
        magma_rs.som(screenshot, BOXES, format="pixels", style="fancy")


def test_missing_files_raise_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        magma_rs.tom(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match="no-model"):
        magma_rs.Magma(tmp_path / "no-model")
    with pytest.raises(FileNotFoundError):
        magma_rs.RobotActionDecoder(stats=tmp_path / "missing_stats.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no frame images"):
        magma_rs.tom(empty)


def test_bad_parameters_raise_value_errors():
    frames = magma_rs.synthetic_scene("pan", 64, 48, 4)
    with pytest.raises(ValueError, match="frame window"):
        magma_rs.tom(frames, start=2, frames=8, height=0)
    with pytest.raises(ValueError, match="unknown data kind"):
        magma_rs.tom(frames, kind="cat")
    with pytest.raises(ValueError, match="unknown unnorm_key"):
        magma_rs.RobotActionDecoder("no_such_dataset")
    with pytest.raises(ValueError, match="expected 7 action dimensions|dimension"):
        magma_rs.encode_action([0.1, 0.2], unnorm_key="bridge_orig")
    with pytest.raises(ValueError, match="no .* found|malformed"):
        magma_rs.parse_ui("hello there")


def test_long_calls_release_the_gil(screenshot):
    """Another Python thread keeps running while Rust works (the GIL is released)."""
    boxes = json.dumps(BOXES * 25)
    started = threading.Event()
    ticks = []

    def work():
        started.set()
        magma_rs._native._bench_som_rust(screenshot, boxes, 40)

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    while t.is_alive():
        ticks.append(1)
    t.join()
    # Holding the GIL for the whole call would leave this loop a handful of iterations at most.
    assert len(ticks) > 10_000, len(ticks)


# ---------------------------------------------------------------- magma data run


def test_run_pipeline_equals_magma_data_run(tmp_path, run_magma):
    cli, py = pipeline_file(tmp_path / "cli"), pipeline_file(tmp_path / "py")
    run_magma("data", "run", cli, json_out=False)
    reports = magma_rs.run_pipeline(py)
    assert [r["funnel"]["records"] for r in reports] == [4, 4, 4]
    for stage in ("robot", "aitw", "aitw_marked"):
        a, b = tmp_path / "cli/out" / stage, tmp_path / "py/out" / stage
        names = sorted(p.name for p in a.iterdir() if not p.name.endswith(".done.json"))
        assert names == sorted(p.name for p in b.iterdir() if not p.name.endswith(".done.json"))
        for name in names:  # done markers hold timings; everything else is equal
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{stage}/{name}"
