"""What every graph segexport writes must satisfy for TensorRT's ONNX parser, checked before it is written.

TensorRT (10.x, 11.x and TensorRT-RTX alike) takes UINT8 only as a network input or output:
the first node after a uint8 input must be a Cast (to float or half), and a uint8 output must
be produced by a Cast (onnx-tensorrt's operator docs; TensorRT-RTX 1.7 refuses a Transpose on the
uint8 image with "first input has type UInt8 but must have type Float, Half, ..."). The fused
graph casts first and casts last; this check keeps any later change, a user's model or a
simplifier pass from reintroducing the refusal unnoticed. A Shape node reads only the dimensions,
which TensorRT allows on any tensor (the fused graph takes H and W from the image that way).
"""

from __future__ import annotations

from typing import Any

from segrt.errors import SegError


def uint8_io_problems(model_proto: Any) -> list[str]:
    """Each place where a uint8 graph input is read by something other than a Cast (or a Shape), or a
    uint8 graph output is made by something other than a Cast; empty when TensorRT's rule holds."""
    import onnx

    graph = model_proto.graph
    uint8 = onnx.TensorProto.UINT8
    producers = {name: node for node in graph.node for name in node.output}
    problems = []
    for tensor in graph.input:
        if tensor.type.tensor_type.elem_type != uint8:
            continue
        for node in graph.node:
            if tensor.name in node.input and node.op_type not in ("Cast", "Shape"):
                problems.append(f"its uint8 input {tensor.name!r} is read by {node.op_type} {node.name!r}")
    for tensor in graph.output:
        if tensor.type.tensor_type.elem_type != uint8:
            continue
        producer = producers.get(tensor.name)
        if producer is None or producer.op_type != "Cast":
            made_by = f"{producer.op_type} {producer.name!r}" if producer is not None else "no node"
            problems.append(f"its uint8 output {tensor.name!r} is made by {made_by}")
    return problems


def check_uint8_io(model_proto: Any, what: str) -> None:
    """SegError naming `what` (the file that was not written) when `uint8_io_problems` finds any."""
    problems = uint8_io_problems(model_proto)
    if problems:
        raise SegError(
            f"{what}: {'; '.join(problems)}, and TensorRT lets only a Cast read or write a uint8 tensor; "
            f"cast the image to float before any other step and the labels to uint8 last (report it with the model)"
        )
