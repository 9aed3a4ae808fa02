"""segrt.meta: the model card's validation, its sidecar and sha256 check, atomic writes."""

from __future__ import annotations

import json
import shutil

import pytest

from segrt.errors import SegError
from segrt.files import atomic_write
from segrt.meta import ModelCard, read_card, read_sidecar, sidecar_path, write_sidecar

CARD = ModelCard(
    model="m",
    classes=("bg", "car"),
    palette=((0, 0, 0), (255, 0, 0)),
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    input_size=(64, 96),
)


def test_card_round_trips_through_json():
    assert ModelCard.from_dict(json.loads(CARD.to_json())) == CARD


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"palette": [[0, 0, 0]]}, "1 palette colours for 2 classes"),
        ({"input_size": [64]}, "needs 2 positive value(s)"),
        ({"resize": "stretch"}, "resize 'stretch' is not one of"),
        ({"precision": "int4"}, "precision 'int4' is not one of"),
        ({"std": [0, 1, 1]}, "std positive"),
        ({"classes": [f"c{i}" for i in range(300)], "palette": [[0, 0, 0]] * 300}, "do not fit a uint8 label map"),
    ],
)
def test_invalid_cards_are_refused_naming_the_source(change, words):
    data = {**json.loads(CARD.to_json()), **change}
    with pytest.raises(SegError, match=r"^x\.json: the model card is invalid .*" + __import__("re").escape(words)):
        ModelCard.from_dict(data, source="x.json")


def test_missing_fields_and_newer_versions_are_named():
    data = json.loads(CARD.to_json())
    del data["mean"], data["classes"]
    with pytest.raises(SegError, match="lacks classes, mean"):
        ModelCard.from_dict(data, source="x.json")
    with pytest.raises(SegError, match="version 99, newer than this segrt reads"):
        ModelCard.from_dict({**json.loads(CARD.to_json()), "card_version": 99})


def test_shorter_side_network_size_keeps_aspect_and_rounds_to_the_divisor():
    card = CARD.replace(input_size=(100,), resize="shorter", size_divisor=16)
    assert card.network_size(200, 300) == (96, 144)  # 100x150 rounded down to multiples of 16
    assert card.network_size(300, 200) == (144, 96)
    assert CARD.network_size(1, 1) == (64, 96)


def test_sidecar_records_the_sha_and_refuses_another_file(tmp_path):
    model = tmp_path / "model.engine"
    model.write_bytes(b"engine bytes")
    write_sidecar(model, CARD)
    assert read_sidecar(model) == CARD
    model.write_bytes(b"another engine")
    with pytest.raises(SegError, match=r"model\.engine\.json: the model card does not match model\.engine"):
        read_card(model)


def test_engine_without_card_is_refused_before_loading(tmp_path):
    model = tmp_path / "model.engine"
    model.write_bytes(b"x")
    with pytest.raises(SegError, match=r"model\.engine\.json is missing; engines are only loaded with their card"):
        read_card(model)


def test_malformed_sidecar_is_a_clear_error(tmp_path):
    model = tmp_path / "model.engine"
    model.write_bytes(b"x")
    sidecar_path(model).write_text("{not json")
    with pytest.raises(SegError, match="not valid JSON"):
        read_card(model)


def test_onnx_card_from_sidecar_or_embedded_metadata(exported, tmp_path):
    source = exported("unet")
    copy = tmp_path / "model.onnx"
    shutil.copy(source, copy)  # no sidecar: the embedded card is read
    assert read_card(copy) == read_card(source)
    shutil.copy(sidecar_path(exported("fcn50")), sidecar_path(copy))  # a stale card from another export
    with pytest.raises(SegError, match=r"does not match model\.onnx"):
        read_card(copy)


def test_atomic_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def failing(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_write_into_an_unwritable_place_names_it(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SegError, match="cannot write here"):
        atomic_write(tmp_path / "file" / "x.onnx", lambda tmp: tmp.write_bytes(b""))
