"""segbench's tail figures: the tail cut out of a fused graph, its share of the call, its bytes at 1080x1920."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from segbench.measure.tail import FRAME_1080P, eager_tail_bytes, measure_tail, tail_nodes
from segrt.meta import read_card


def _session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def test_the_tail_is_cut_from_the_logits_to_the_labels(exported) -> None:
    chain = tail_nodes(onnx.load(str(exported("unet"))).graph)
    assert [node.op_type for node in chain] == ["Transpose", "Resize", "ArgMax", "Cast"]
    assert tail_nodes(onnx.load(str(exported("unet-unfused"))).graph) == []  # logits out: no tail to cut


def test_the_tail_share_and_its_bytes_at_1080p(exported, photo) -> None:
    path = exported("unet")
    card = read_card(path)
    classes = card.num_classes
    session = _session(path.read_bytes())
    # a frame of the network's own size: the tail (a resize and an argmax) is then a small part of the call, so
    # "a part of the call" holds under any load (on the 612x640 photo the tail is most of this small network's call,
    # and another process's load could put its p50 above the call's)
    height, width = card.input_size
    batch = np.ascontiguousarray(photo[None, :height, :width])
    calls = []

    def call() -> None:
        calls.append(1)
        session.run(None, {"image": batch})

    tail = measure_tail(path, batch, call, _session, iterations=5, min_seconds=0.5, seconds=5)
    assert calls and tail["nodes"] == ["Transpose", "Resize", "ArgMax", "Cast"]
    assert 0 < tail["p50_ms"] < tail["alternated_e2e_p50_ms"]  # a part of the call, timed under the same load
    assert 0 < tail["share"] < 1 and tail["share_interval"][0] <= tail["share"] <= tail["share_interval"][1]
    pixels = FRAME_1080P[1] * FRAME_1080P[2]
    written = {name.split()[0]: size for name, size in tail["bytes_1080p_by_node"].items()}  # "Op /node/name"
    assert written["Resize"] == pixels * classes * 4  # float logits at the frame's size, channel-last
    assert written["ArgMax"] == pixels * 8 and written["Cast"] == pixels
    assert tail["bytes_1080p"] == sum(tail["bytes_1080p_by_node"].values())
    assert eager_tail_bytes(classes) == pixels * (classes * 4 + 9)


def test_the_confidence_branch_is_cut_and_timed_beside_the_labels_tail(exported, photo) -> None:
    """A --confidence graph: its labels' tail as before, and the confidence branch (softmax at the network's size,
    one channel resized) cut out on its own, timed in the same alternated blocks as the labels' tail."""
    path = exported("unet-confidence")
    height, width = read_card(path).input_size
    batch = np.ascontiguousarray(photo[None, :height, :width])
    session = _session(path.read_bytes())
    tail = measure_tail(
        path, batch, lambda: session.run(None, {"image": batch}), _session, iterations=3, min_seconds=0.2, seconds=3
    )
    assert tail["nodes"] == ["Transpose", "Resize", "ArgMax", "Cast"]
    branch = tail["confidence_branch"]
    assert branch["nodes"][:2] == ["ReduceMax", "Sub"] and branch["nodes"][-4:] == [
        "Resize",
        "Floor",
        "Reshape",
        "Cast",
    ]
    assert branch["p50_ms"] > 0 and branch["labels_tail_p50_ms"] > 0
    pixels = FRAME_1080P[1] * FRAME_1080P[2]
    assert pixels * 5 <= branch["bytes_1080p"] < pixels * 21 * 4  # one float channel and uint8 out, not C channels
    plain = exported("unet")
    plain_session = _session(plain.read_bytes())
    figures = measure_tail(
        plain, batch, lambda: plain_session.run(None, {"image": batch}), _session, iterations=3, min_seconds=0.2,
        seconds=3,
    )  # fmt: skip
    assert "confidence_branch" not in figures
