"""seg(image, confidence=True): the confidence map beside the labels, from a graph exported with --confidence, on
ONNX Runtime CPU (torch-free), its PNG writer, and the one-line refusals where a graph has no such output."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import segrt
from segrt.backends.onnxruntime import OnnxRuntimeBackend
from segrt.errors import SegError
from segrt.image import read_image, write_confidence_png
from segrt.meta import read_card, sidecar_path


def test_labels_and_confidence_in_every_call_form(exported, photo):
    seg = segrt.load(exported("unet-confidence"), backend="ort-cpu")
    assert seg.has_confidence and seg.card.confidence_name == "confidence"
    labels, confidence = seg(photo, confidence=True)
    assert labels.shape == confidence.shape == photo.shape[:2] and confidence.dtype == np.uint8
    assert (labels == seg(photo)).all()  # the labels do not change with the map asked for
    # 21 classes: the top class's probability is at least 1/21, 255/21 rounds to 12
    assert confidence.min() >= 12
    other = np.ascontiguousarray(photo[::-1, :300])
    batch_labels, batch_maps = seg(np.stack([photo, photo[::-1]]), confidence=True)
    assert batch_maps.shape == (2, *photo.shape[:2]) and (batch_maps[0] == confidence).all()
    listed_labels, listed_maps = seg([photo, other], confidence=True)
    assert [m.shape for m in listed_maps] == [photo.shape[:2], other.shape[:2]]
    assert (listed_maps[0] == confidence).all() and (listed_labels[1] == seg(other)).all()
    assert (batch_labels[0] == labels).all()


def test_bound_host_buffers_give_the_same_map(exported, photo):
    """The IO-binding path a GPU provider takes: both outputs written into buffers bound once per shape."""
    path = exported("unet-confidence")
    plain = segrt.load(path, backend="ort-cpu")
    with OnnxRuntimeBackend(path, backend="ort-cpu", io_binding=True) as bound:
        for _ in range(2):  # the second run reuses the bound buffers
            labels, confidence = bound.run_with_confidence(photo[None])
            assert (bound.run(photo[None]) == labels).all()
    want_labels, want_map = plain(photo, confidence=True)
    assert (labels[0] == want_labels).all() and (confidence[0] == want_map).all()


def test_a_graph_without_the_output_is_one_line_saying_to_re_export(exported, photo):
    seg = segrt.load(exported("unet"), backend="ort-cpu")
    assert not seg.has_confidence
    with pytest.raises(SegError) as caught:
        seg(photo, confidence=True)
    assert "no confidence output" in str(caught.value) and "--confidence" in str(caught.value)
    assert "\n" not in str(caught.value)
    unfused = segrt.load(exported("unet-unfused"), backend="ort-cpu")
    with pytest.raises(SegError, match="needs a fused graph with a confidence output"):
        unfused(photo, confidence=True)


def test_a_card_that_claims_a_confidence_output_the_graph_lacks_is_refused(exported, tmp_path):
    source = exported("unet")
    path = tmp_path / "model.onnx"
    shutil.copy(source, path)
    record = json.loads(sidecar_path(source).read_text())
    record["confidence_name"] = "confidence"
    sidecar_path(path).write_text(json.dumps(record))
    with pytest.raises(SegError, match="card says one input, one output and a confidence output"):
        segrt.load(path, backend="ort-cpu")
    assert read_card(exported("unet-confidence")).confidence_name == "confidence"


def test_write_confidence_png_round_trips_the_levels(exported, photo, tmp_path):
    seg = segrt.load(exported("unet-confidence"), backend="ort-cpu")
    _, confidence = seg(photo, confidence=True)
    written = write_confidence_png(tmp_path / "confidence.png", confidence)
    from PIL import Image

    with Image.open(written) as image:
        assert image.mode == "L" and (np.asarray(image) == confidence).all()
    assert [p.name for p in tmp_path.iterdir()] == ["confidence.png"]  # atomic: no temporary left
    with pytest.raises(SegError, match=r"bad\.png: a confidence map is uint8 H x W, got float32"):
        write_confidence_png(tmp_path / "bad.png", confidence.astype(np.float32))
    assert read_image(written).shape == (*confidence.shape, 3)
