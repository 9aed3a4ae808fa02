"""The fused graph's tail: one resize from the classifier to the image size, channel-last, same labels."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from segexport.onnx.tail import MIN_CHANNEL_LAST_CLASSES, channel_last_tail, find_tail, half_tail
from segrt.meta import read_card


def _run(model: onnx.ModelProto | bytes, feed: dict[str, np.ndarray]) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def _nchw_tail(by: str, classes: int = 12) -> onnx.ModelProto:
    """logits N x C x 7 x 9 -> Resize (by "sizes" or "scales") -> ArgMax(axis 1) -> Cast(uint8), as torch exports it."""
    target = {"sizes": ("", "sizes"), "scales": ("scales", "")}[by]
    initializers = [
        numpy_helper.from_array(np.array([1, classes, 61, 40], np.int64), "sizes"),
        numpy_helper.from_array(np.array([1, 1, 61 / 7, 40 / 9], np.float32), "scales"),
    ]
    nodes = [
        helper.make_node("Resize", ["logits", "", *target], ["big"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("ArgMax", ["big"], ["index"], axis=1, keepdims=0),
        helper.make_node("Cast", ["index"], ["labels"], to=TensorProto.UINT8),
    ]  # fmt: skip
    return _logits_to_labels(nodes, TensorProto.FLOAT, initializers, classes)


def _logits_to_labels(nodes: list, logits_type: int, initializers: list, classes: int = 5) -> onnx.ModelProto:
    """A graph of `nodes` from N x C x 7 x 9 logits of `logits_type` to uint8 labels, opset 17."""
    graph = helper.make_graph(
        nodes,
        "tail",
        [helper.make_tensor_value_info("logits", logits_type, [1, classes, 7, 9])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("by", ["sizes", "scales"])
def test_the_channel_last_tail_computes_the_labels_of_the_nchw_tail(by: str) -> None:
    nchw = _nchw_tail(by)
    rewritten = channel_last_tail(nchw)
    onnx.checker.check_model(rewritten, full_check=True)
    assert find_tail(nchw.graph) is not None
    ops = [node.op_type for node in rewritten.graph.node]
    assert ops == ["Transpose", "Gather", "Resize", "ArgMax", "Cast"]
    assert [a.i for a in rewritten.graph.node[3].attribute if a.name == "axis"] == [3]
    logits = np.random.default_rng(0).normal(size=(1, 12, 7, 9)).astype(np.float32)
    before, after = _run(nchw, {"logits": logits}), _run(rewritten, {"logits": logits})
    assert before.shape == after.shape == (1, 61, 40)
    assert (before == after).mean() >= 0.999  # the same bilinear sums, summed in another order
    assert find_tail(rewritten.graph) is None  # rewritten once: a second pass leaves it as it is
    assert channel_last_tail(rewritten) is rewritten


def test_a_tail_of_few_classes_stays_nchw() -> None:
    """Under MIN_CHANNEL_LAST_CLASSES classes ONNX Runtime's NCHW Resize and ArgMax are as fast or faster."""
    few = _nchw_tail("sizes", classes=MIN_CHANNEL_LAST_CLASSES - 1)
    assert channel_last_tail(few) is few
    assert channel_last_tail(_nchw_tail("sizes", classes=MIN_CHANNEL_LAST_CLASSES)) is not None
    assert find_tail(channel_last_tail(_nchw_tail("sizes", classes=MIN_CHANNEL_LAST_CLASSES)).graph) is None


def test_a_graph_without_the_fused_tail_is_left_as_it_is(exported) -> None:
    unfused = onnx.load(str(exported("fcn50-unfused")))
    assert channel_last_tail(unfused) is unfused


def test_the_fused_fcn_resizes_once_channel_last(exported) -> None:
    """The classifier's 1/8-scale logits go straight to the image size: one Resize on the image, one on the logits."""
    model = onnx.load(str(exported("fcn50")))
    nodes = list(model.graph.node)
    resizes = [n for n in nodes if n.op_type == "Resize"]
    assert len(resizes) == 2  # the image to the network size, the logits to the image size
    producers = {output: node for node in nodes for output in node.output}
    transpose = producers[resizes[-1].input[0]]
    assert transpose.op_type == "Transpose" and list(transpose.attribute[0].ints) == [0, 2, 3, 1]
    assert producers[transpose.input[0]].op_type == "Conv"  # the classifier, not torchvision's own resize
    (argmax,) = [n for n in nodes if n.op_type == "ArgMax"]
    assert [a.i for a in argmax.attribute if a.name == "axis"] == [3]


def test_one_resize_keeps_the_labels_of_torchvisions_two(exported, photo) -> None:
    """torchvision's forward resizes the logits to the network size, the notebook again to the image's:
    the fused graph's single resize gives the same labels except where two classes nearly tie."""
    import torch
    import torch.nn.functional as F

    from segexport.models.zoo import build
    from segexport.onnx.fused import FusedSegmentation
    from segexport.request import ModelOptions

    path = exported("fcn50")
    card = read_card(path)
    model = build(ModelOptions(name="fcn_resnet50", weights="none", input_size=tuple(card.input_size)))
    fused = FusedSegmentation(model).eval()
    height, width = photo.shape[:2]
    with torch.no_grad():
        image = torch.from_numpy(np.array(photo))[None].float().permute(0, 3, 1, 2)
        x = F.interpolate(image, size=tuple(card.input_size), mode="bilinear", align_corners=False)
        torchvision_logits = model.network.network(x * fused.scale + fused.shift)["out"]  # its own resize
        assert torchvision_logits.shape[-2:] == tuple(card.input_size)
        two = F.interpolate(torchvision_logits, size=(height, width), mode="bilinear", align_corners=False)
    labels = _run(path.read_bytes(), {"image": photo[None]})[0]
    agreement = (labels == two.argmax(1)[0].numpy()).mean()
    assert 0.999 <= agreement < 1.0  # near ties do move: the check compares two different computations


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {value.name: value.type.tensor_type.elem_type for value in values}


def test_the_fp16_graphs_tail_resizes_in_fp16(unet_graphs) -> None:
    """AutoCast keeps the tail Resize in FP32 between two Casts; the written FP16 graph resizes in FP16."""
    model = onnx.load(str(unet_graphs / "model.fp16.onnx"))
    types = _types(model)
    producers = {output: node for node in model.graph.node for output in node.output}
    (argmax,) = [n for n in model.graph.node if n.op_type == "ArgMax"]
    resize = producers[argmax.input[0]]
    assert resize.op_type == "Resize"  # no Cast between them
    assert types[resize.input[0]] == types[resize.output[0]] == TensorProto.FLOAT16


def test_half_tail_drops_the_casts_around_the_resize_and_keeps_the_labels() -> None:
    order = numpy_helper.from_array(np.array([0, 2, 3, 1], np.int64), "order")
    sizes = numpy_helper.from_array(np.array([1, 5, 61, 40], np.int64), "sizes")
    nodes = [
        helper.make_node("Transpose", ["logits"], ["last"], perm=[0, 2, 3, 1]),
        helper.make_node("Gather", ["sizes", "order"], ["sizes_last"], axis=0),
        helper.make_node("Cast", ["last"], ["wide"], to=TensorProto.FLOAT),
        helper.make_node("Resize", ["wide", "", "", "sizes_last"], ["big"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Cast", ["big"], ["narrow"], to=TensorProto.FLOAT16),
        helper.make_node("ArgMax", ["narrow"], ["index"], axis=3, keepdims=0),
        helper.make_node("Cast", ["index"], ["labels"], to=TensorProto.UINT8),
    ]  # fmt: skip
    autocast = _logits_to_labels(nodes, TensorProto.FLOAT16, [order, sizes])
    halved = half_tail(autocast)
    onnx.checker.check_model(halved, full_check=True)
    assert [n.op_type for n in halved.graph.node] == ["Transpose", "Gather", "Resize", "ArgMax", "Cast"]
    assert _types(halved)["big"] == TensorProto.FLOAT16
    logits = np.random.default_rng(1).normal(size=(1, 5, 7, 9)).astype(np.float16)
    before, after = _run(autocast, {"logits": logits}), _run(halved, {"logits": logits})
    assert (before == after).mean() >= 0.99  # FP16 sums differ from FP32 ones only at near ties
    assert half_tail(halved) is halved
