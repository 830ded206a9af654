"""Dataset converters from Python (magma-data's stages) on magma-data's fixtures."""

from __future__ import annotations

import pytest

import magma_rs
from conftest import REPO

FIXTURES = REPO / "crates" / "magma-data" / "tests" / "fixtures"


def test_rlds_steps_become_robot_records_with_action_tokens():
    records = magma_rs.convert("rlds", FIXTURES / "rlds/tiny_robot/1.0.0", statistics=str(FIXTURES / "rlds/dataset_statistics.json"))
    items = list(records)
    # 3 + 2 steps; step 1 of episode 1 has a corrupt JPEG and is skipped, not fatal.
    assert len(items) == 4
    assert [(s["locator"], s["reason"]) for s in records.skipped] == [("record 1 step 1", "undecodable_image")]
    record, assets = items[0]
    assert record["source"] == "rlds:tiny_robot"
    assert record["conversations"][1]["value"] == "<action>" * 7
    tokens = record["actions"][0]["tokens"]
    assert len(tokens) == 7 and tokens[0] == 127_999 and tokens[1] == 127_745
    (name, image), = assets.items()
    assert name == record["media"][0]["path"] and image[:2] == b"\xff\xd8", "the original JPEG bytes"
    assert items[3][0]["provenance"]["locator"] == "record 1 step 0"
    # The tokens decode back with the Python action codec.
    assert len(magma_rs.ActionTokenizer().decode(tokens)) == 7


def test_aitw_steps_become_marked_records_and_bad_steps_are_listed():
    records = magma_rs.convert("aitw", FIXTURES / "aitw/general-0000-of-0001.tfrecord.gz")
    items = list(records)
    assert [s["reason"] for s in records.skipped] == ["box_outside_image", "unknown_action_type"]
    first = items[0][0]
    assert first["media"][0]["width"] == 72 and first["media"][0]["height"] == 128
    assert len(first["marks"]) == 3 and first["marks"][0]["text"] == "Search"
    assert first["conversations"][1]["value"] == '{"TAP": {"MARK": 0}}'
    assert magma_rs.parse_ui(first["conversations"][1]["value"])["format"] == "aitw"


def test_ui_sources_read_their_images():
    m2w = list(magma_rs.convert("mind2web", FIXTURES / "mind2web/train_0.json", images=str(FIXTURES / "mind2web/screenshots")))
    seeclick = list(magma_rs.convert("seeclick", FIXTURES / "seeclick/seeclick_web.json", images=str(FIXTURES / "seeclick/images")))
    assert m2w and seeclick
    for record, assets in m2w + seeclick:
        assert set(assets) == {m["path"] for m in record["media"]}


def test_bad_converter_arguments_raise():
    with pytest.raises(ValueError, match="unknown source"):
        magma_rs.convert("nope", FIXTURES)
    with pytest.raises(ValueError, match="unknown field `bogus`"):
        magma_rs.convert("aitw", FIXTURES / "aitw", bogus=1)
    with pytest.raises(FileNotFoundError, match="missing.gz"):
        list(magma_rs.convert("aitw", FIXTURES / "missing.gz"))
    with pytest.raises(ValueError, match="needs `images`"):
        magma_rs.convert("mind2web", FIXTURES / "mind2web/train_0.json")
