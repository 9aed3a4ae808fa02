"""The card of every graph segexport writes fits its graph, and a card edited to another precision is refused
naming the field (segrt.meta.check_card_fits, read by segrt from the file itself, without onnx)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import segrt
from segrt.errors import SegError
from segrt.meta import GRAPH_SHA_KEY, check_card_fits, read_card, sidecar_path
from segrt.onnx_file import read_onnx_file

GRAPHS = ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8-cpu.onnx")


@pytest.mark.parametrize("name", GRAPHS)
def test_every_graph_written_fits_its_card_and_records_its_contents_sha256(unet_graphs, exported, name):
    path = exported("unet") if name == "model.onnx" else unet_graphs / name
    onnx = read_onnx_file(path, content_hash=True)
    card = read_card(path)
    check_card_fits(card, onnx, path)
    assert onnx.num_classes() == card.num_classes and onnx.resize_size() == tuple(card.input_size)
    assert onnx.metadata[GRAPH_SHA_KEY] == onnx.content_sha256


def test_the_channel_last_tail_of_a_21_class_graph_gives_its_classes(exported):
    onnx = read_onnx_file(exported("fcn50"))
    assert onnx.num_classes() == 21 and onnx.resize_size() == (96, 96)


@pytest.mark.parametrize(
    ("name", "claimed", "words"),
    [
        ("model.fp16.onnx", "fp32", "precision fp32 in the card, it holds float16 tensors"),
        ("model.int8.onnx", "fp32", "precision fp32 in the card, it holds INT8 Q/DQ nodes"),
        ("model.int8.onnx", "fp16", "precision fp16 in the card, it holds INT8 Q/DQ nodes"),
        ("model.int8-cpu.onnx", "int8", "precision int8 (TensorRT's) in the card, it quantizes to uint8"),
        ("model.int8.onnx", "int8-cpu", "precision int8-cpu in the card, it holds float16 tensors"),
    ],
)
def test_a_card_edited_to_another_precision_is_refused(unet_graphs, tmp_path: Path, name, claimed, words):
    target = tmp_path / name
    shutil.copy(unet_graphs / name, target)
    record = json.loads(sidecar_path(unet_graphs / name).read_text())
    record["precision"] = claimed  # the sha256 kept: only the card was edited
    sidecar_path(target).write_text(json.dumps(record))
    with pytest.raises(SegError) as info:
        segrt.load(target)
    assert f"{target}: the model card does not fit the graph: {words}" in str(info.value)
