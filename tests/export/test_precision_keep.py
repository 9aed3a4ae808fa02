"""The precision search's read-outs: one reduced graph read with some nodes kept gives the graph the pass itself
makes with those nodes excluded (`--keep-fp32`), label for label, for both INT8 flavours and FP16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from segexport.precision.calibration import read_calibration_images
from segexport.precision.keep_fp16 import Fp16Graph
from segexport.precision.keep_qdq import CPU_QUANTIZATION, TENSORRT_QUANTIZATION, QdqGraph
from segexport.precision.passes import make_precision_graph
from segexport.precision.scoring import session_labels, trusted_session
from segrt.meta import read_card


def _labels(model, precision: str, images, card) -> list[np.ndarray]:
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    session = trusted_session(data, precision)
    return [session_labels(session, image, card) for image in images]


@pytest.fixture(scope="module")
def setting(exported, unet_graphs, calib_dir, photo):
    fp32 = exported("unet")
    calib, _ = read_calibration_images(calib_dir, 4)  # what unet_graphs was calibrated on
    return fp32, read_card(fp32), calib, [photo, *calib]


def _read_out(precision: str, reduced, source):
    if precision == "fp16":
        return Fp16Graph(reduced, source)
    return QdqGraph(reduced, source, TENSORRT_QUANTIZATION if precision == "int8" else CPU_QUANTIZATION)


@pytest.mark.parametrize(
    ("precision", "kept_ops"),
    [("int8-cpu", ("Conv", "Conv")), ("int8", ("Conv", "MaxPool")), ("fp16", ("Conv", "Relu", "Concat"))],
)
def test_read_out_with_nodes_kept_equals_the_pass_run_with_them_excluded(
    setting, unet_graphs: Path, tmp_path: Path, precision: str, kept_ops: tuple[str, ...]
) -> None:
    fp32, card, calib, images = setting
    source = onnx.load(str(fp32))
    reduced = onnx.load(str(unet_graphs / f"model.{precision}.onnx"))
    graph = _read_out(precision, reduced, source)
    op_of = {node.name: node.op_type for node in reduced.graph.node}
    kept = []
    for op in kept_ops:  # the last unit of each op type not yet taken: the head, an up-sampling path node
        kept.append(next(name for name in reversed(graph.units) if op_of[name] == op and name not in kept))
    patterns = [f"^{name}$" for name in kept]
    excluded = make_precision_graph(
        precision, fp32, images[0], calib_images=calib, keep_fp32=patterns, min_agreement=0.0, out=tmp_path
    )
    read_out = graph.with_kept(kept)
    onnx.checker.check_model(read_out)
    assert len(read_out.graph.node) == len(onnx.load(str(excluded.path)).graph.node)
    theirs = _labels(excluded.path, precision, images, card)
    for mine, expected in zip(_labels(read_out, precision, images, card), theirs, strict=True):
        np.testing.assert_array_equal(mine, expected)
    # and keeping a node changes the graph: the read-out is not the reduced graph passed through
    assert len(read_out.graph.node) != len(reduced.graph.node)


def test_units_are_the_nodes_each_pass_reduced(setting, unet_graphs: Path) -> None:
    fp32, *_ = setting
    source = onnx.load(str(fp32))
    convs = [node.name for node in source.graph.node if node.op_type == "Conv"]
    cpu = QdqGraph(onnx.load(str(unet_graphs / "model.int8-cpu.onnx")), source, CPU_QUANTIZATION)
    assert list(cpu.units) == convs  # quantize_static is asked for Conv only
    quantized = onnx.load(str(unet_graphs / "model.int8.onnx"))
    tensorrt = QdqGraph(quantized, source, TENSORRT_QUANTIZATION)
    dequantized = {node.output[0] for node in quantized.graph.node if node.op_type == "DequantizeLinear"}
    reader_ops = {
        node.op_type
        for node in quantized.graph.node
        if set(node.input) & dequantized and node.op_type not in ("QuantizeLinear", "Concat", "Shape")
    }
    ops = {node.name: node.op_type for node in source.graph.node}
    # ModelOpt quantizes the inputs of pools and resizes too (and leaves Convs too thin for INT8 kernels alone)
    assert {ops[name] for name in tensorrt.units} == {"Conv", "MaxPool", "Resize"} == reader_ops
    fp16 = Fp16Graph(onnx.load(str(unet_graphs / "model.fp16.onnx")), source)
    assert set(convs) <= set(fp16.units) and "ArgMax" not in {ops.get(name) for name in fp16.units}


def test_everything_kept_leaves_no_reduced_node(setting, unet_graphs: Path) -> None:
    fp32, card, _, images = setting
    source = onnx.load(str(fp32))
    for precision in ("int8-cpu", "int8"):
        graph = _read_out(precision, onnx.load(str(unet_graphs / f"model.{precision}.onnx")), source)
        everything = graph.with_kept(graph.units)
        assert not [node for node in everything.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    cpu = _read_out("int8-cpu", onnx.load(str(unet_graphs / "model.int8-cpu.onnx")), source)
    float_again = _labels(cpu.with_kept(cpu.units), "int8-cpu", images, card)
    for mine, reference in zip(float_again, _labels(fp32, "fp32", images, card), strict=True):
        np.testing.assert_array_equal(mine, reference)  # the CPU graph with every Conv kept is the FP32 graph
    with pytest.raises(ValueError, match="not quantized units"):
        cpu.with_kept(["/no/such/node"])
