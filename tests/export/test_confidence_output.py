"""segexport --confidence: the confidence map's definition, its parity with PyTorch's softmax, the card that says
the graph has it, TensorRT-RTX's parse of it, and a default graph left as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from segexport import parity
from segexport.models.zoo import build
from segexport.onnx import export as onnx_export
from segexport.onnx.fused import FusedSegmentation
from segexport.request import ModelOptions
from segexport.triton import repository as triton_repository
from segrt.errors import SegError
from segrt.image import resize_bilinear
from segrt.meta import read_card


def test_the_default_graph_has_the_labels_output_alone(exported):
    model = onnx.load(str(exported("unet")))
    assert [output.name for output in model.graph.output] == ["labels"]
    assert read_card(exported("unet")).confidence_name is None


def test_confidence_is_round_255_top_softmax_at_the_network_size_then_resized():
    """The definition the card and the docs state, on logits whose softmax is known: floor(255 p + 0.5) of the top
    class's probability at the network's grid, resized bilinearly (half-pixel) as one channel."""
    fused = FusedSegmentation(build(ModelOptions("unet", unet_base=4, unet_depth=2, input_size=(8, 8))))
    fused.confidence = True
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 0, 0] = 10.0  # p = e^10 / (e^10 + 2): 0.99991 -> 255
    logits[0, 1, 1, 1] = float(np.log(2.0))  # p = 2 / 4 = 0.5 -> 127.5 + 0.5 -> 128
    # elsewhere three equal logits: p = 1/3 -> 85.5 -> 85
    same_size = fused.confidence_map(logits, 2, 2)[0].numpy()
    assert same_size.dtype == np.uint8 and same_size.tolist() == [[255, 85], [85, 128]]
    resized = fused.confidence_map(logits, 4, 4)[0].numpy()
    top_left = 255 * np.exp(10) / (np.exp(10) + 2) + 0.5
    # half-pixel centres: output pixel 0 reads input 0 alone, pixel 1 reads 0.75 of input 0 and 0.25 of input 1
    assert resized[0, 0] == 255 and resized[0, 1] == int(0.75 * top_left + 0.25 * 85.5)


def test_a_one_class_models_confidence_is_the_sigmoid_of_its_likelier_label():
    model = build(ModelOptions("unet", unet_base=4, unet_depth=2, input_size=(8, 8), num_classes=1))
    fused = FusedSegmentation(model, confidence=True)
    logit = torch.tensor([[[[2.0, -2.0], [0.0, -0.5]]]])  # sigmoid(|l|): 0.8808, 0.8808, 0.5, 0.6225
    assert fused.confidence_map(logit, 2, 2)[0].tolist() == [[225, 225], [128, 159]]


@pytest.fixture(scope="module")
def peaked(tmp_path_factory, photo):
    """A small U-Net whose classifier is scaled up (random weights give near-uniform softmax everywhere), its fused
    graph with the confidence output exported and simplified as segexport does, and its card."""
    model = build(ModelOptions("unet", unet_base=4, unet_depth=2, input_size=(32, 32)))
    with torch.no_grad():
        model.network.head.weight *= 300.0
    image = photo[::4, ::4].copy()
    proto = onnx_export.export_onnx(
        model, tmp_path_factory.mktemp("peaked") / "raw.onnx", sample=image, confidence=True
    )
    proto = onnx_export.check_and_simplify(proto)
    card = model.card(output_name="labels", confidence_name=onnx_export.CONFIDENCE_NAME)
    return model, proto, card, image


def test_the_graphs_confidence_matches_pytorchs_softmax_within_its_tolerance(peaked):
    model, proto, card, image = peaked
    result = parity.check_parity(proto, model, image, card)
    confidence = parity.graph_outputs(proto.SerializeToString(), image, card)["confidence"]
    assert confidence.std() > 10, "a map with contrast, or the comparison proves little"
    assert result.confidence is not None and result.confidence_tolerance == parity.CONFIDENCE_TOLERANCE["fp32"] == 1
    assert result.confidence.quantile <= 1 and result.confidence.max <= 1
    record = result.record("PyTorch", "photo")["confidence_levels"]
    assert record["tolerance"] == 1 and record["p99"] == result.confidence.quantile
    # the definition again, by hand: numpy's softmax of the network's own logits, segrt's host resize, floor
    with torch.no_grad():
        network_logits = FusedSegmentation(model).eval().network_logits(torch.from_numpy(image)[None])[0].numpy()
    shifted = np.exp(network_logits - network_logits.max(0))
    levels = 255 * (1 / shifted.sum(0)) + 0.5
    by_hand = np.floor(resize_bilinear(levels[None, :, :, None].astype(np.float32), *image.shape[:2]))[0, :, :, 0]
    assert np.abs(confidence.astype(float) - by_hand).max() <= 1 and np.mean(confidence == by_hand) > 0.99


def test_the_gate_refuses_a_confidence_map_beyond_its_tolerance():
    fine = parity.Parity(1.0, None, parity.ConfidenceDiff(1.0, 0.1, 1), confidence_tolerance=1)
    parity.check_agreement(fine, 0.999, "model.onnx was not written", "report it")
    off = parity.Parity(1.0, None, parity.ConfidenceDiff(5.0, 0.8, 9), confidence_tolerance=4)
    with pytest.raises(SegError, match=r"confidence map differs .* by 5 levels of 255 at p99 \(at most 4\)"):
        parity.check_agreement(off, 0.995, "model.fp16.onnx was not written", "keep nodes in FP32")


def test_an_exported_confidence_graph_has_its_card_and_parity_figures(exported):
    path = exported("unet-confidence")
    model, card = onnx.load(str(path)), read_card(path)
    assert [output.name for output in model.graph.output] == ["labels", "confidence"]
    assert card.confidence_name == "confidence" and card.fused
    levels = card.checks["parity"]["confidence_levels"]
    assert levels["tolerance"] == 1 and levels["p99"] <= 1


def test_the_triton_config_lists_the_confidence_output(exported, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    folder = triton_repository.write_repository(exported("unet-confidence"), tmp_path / "repo")
    config = text_format.Parse((folder / "config.pbtxt").read_text(), pb.ModelConfig())
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("labels", pb.TYPE_UINT8, [-1, -1]),
        ("confidence", pb.TYPE_UINT8, [-1, -1]),
    ]


def test_tensorrt_rtx_parses_and_builds_the_confidence_graph(exported):
    """Two uint8 N x H x W outputs in TensorRT-RTX's network, and segexport's own builder makes the engine."""
    trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX makes the build real: pip install segexport[rtx]")
    import io

    from rich.console import Console

    from segexport.engine import build as tensorrt_build
    from segexport.engine import profile as tensorrt_profile
    from segexport.request import BuildOptions
    from segrt.backends import tensorrt_library as library

    path: Path = exported("unet-confidence")
    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    assert trt.OnnxParser(network, logger).parse_from_file(str(path))
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    assert [(o.name, o.dtype, len(tuple(o.shape))) for o in outputs] == [
        ("labels", trt.DataType.UINT8, 3),
        ("confidence", trt.DataType.UINT8, 3),
    ]
    shapes = tensorrt_profile.shape_range((1, 32, 32), (1, 64, 64), (1, 128, 128))
    options = BuildOptions(shapes=shapes, library=library.TENSORRT_RTX)
    engine, _ = tensorrt_build.build_engine(path, read_card(path), options, Console(file=io.StringIO()))
    assert len(engine) > 10_000


def test_a_one_class_graphs_confidence_matches_pytorch(tmp_path, photo):
    """The one-class branch (Abs, Sigmoid) through the exporter and ONNX Runtime: within 1 level of PyTorch."""
    model = build(ModelOptions("unet", unet_base=4, unet_depth=2, input_size=(32, 32), num_classes=1))
    with torch.no_grad():
        model.network.head.weight *= 30.0
    image = photo[::4, ::4].copy()
    proto = onnx_export.check_and_simplify(
        onnx_export.export_onnx(model, tmp_path / "raw.onnx", sample=image, confidence=True)
    )
    card = model.card(output_name="labels", confidence_name=onnx_export.CONFIDENCE_NAME)
    result = parity.check_parity(proto, model, image, card)
    confidence = parity.graph_outputs(proto.SerializeToString(), image, card)["confidence"]
    assert result.agreement == 1.0 and result.confidence is not None and result.confidence.max <= 1
    assert confidence.min() >= 128 and confidence.std() > 5  # the likelier label's probability: at least 1/2
