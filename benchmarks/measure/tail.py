"""The fused graph's tail in a case: its share of the call, and the bytes it writes for a 1080x1920 frame.

The tail is what a fused graph does after the network: the logits resized to the image size, argmax,
uint8 (segexport.onnx.tail); a one-class model's: its one logit resized, compared with the threshold (Greater),
its channel taken (Gather), uint8. It is cut out of the case's own ONNX file, from the tensor the network hands
over to the labels, and run on the same ONNX Runtime backend with the inputs the whole graph computed
for the case's batch; its time is taken in blocks alternating with the whole call (measure.py), so both
see one load. Its bytes are the sizes of the tensors its nodes write, from one run of the whole graph
on a 1 x 1080 x 1920 frame: the memory traffic a GPU pays for the tail at that size, whatever the backend.
A graph exported with --confidence has a second output; its branch (softmax at the network's size, one channel
resized) is cut out the same way and timed alternated with the labels' tail (`confidence_branch`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from segbench.measure.timing import outside_share, time_alternating

TAIL_OPS = ("Resize", "ArgMax", "Greater", "Gather", "Cast", "Transpose", "QuantizeLinear", "DequantizeLinear")
DECIDERS = ("ArgMax", "Greater")  # what makes the labels: the argmax, or a one-class model's threshold
FRAME_1080P = (1, 1080, 1920)


def tail_nodes(graph: Any) -> list[Any]:
    """The nodes from the network's logits to the labels output, in graph order (empty without an ArgMax, or a
    one-class model's Greater)."""
    producers = {name: node for node in graph.node for name in node.output}
    output = graph.output[0].name
    chain: list[Any] = []
    node = producers.get(output)
    while node is not None and node.op_type in TAIL_OPS:
        chain.append(node)
        node = producers.get(node.input[0])
    if not any(n.op_type in DECIDERS for n in chain):
        return []
    return list(reversed(chain))


# what the confidence map's branch is made of (segexport.onnx.fused.FusedSegmentation.confidence_map, its FP16 and
# INT8 forms); the shape arithmetic feeding its Resize and Reshape is read from the rest of the graph
BRANCH_OPS = frozenset(
    {"Cast", "Reshape", "Floor", "Resize", "Add", "Mul", "Div", "Reciprocal", "ReduceSum", "Exp", "Sub",
     "ReduceMax", "Sigmoid", "Abs", "QuantizeLinear", "DequantizeLinear"}
)  # fmt: skip


def confidence_branch(graph: Any, logits: str) -> list[Any]:
    """The nodes from the network's `logits` to the graph's second output (the confidence map), in graph order;
    empty where the graph has one output."""
    if len(graph.output) < 2:
        return []
    producers = {name: node for node in graph.node for name in node.output}
    wanted, names = set(), [graph.output[1].name]
    while names:
        node = producers.get(names.pop())
        if node is None or node.name in wanted or node.op_type not in BRANCH_OPS:
            continue
        wanted.add(node.name)
        names.extend(name for name in node.input if name and name != logits)
    return [node for node in graph.node if node.name in wanted]


def tail_inputs(graph: Any, chain: list[Any]) -> list[str]:
    """What the tail reads from the rest of the graph: the logits first, then sizes or scales computed there."""
    made = {name for node in chain for name in node.output}
    constants = {init.name for init in graph.initializer}
    names = [chain[0].input[0]]
    for node in chain:
        for name in node.input[1:]:
            if name and name not in made and name not in constants and name not in names:
                names.append(name)
    return names


def with_outputs(model_proto: Any, names: list[str], types: dict[str, Any]) -> bytes:
    """The graph with `names` as extra outputs (of their `types`), serialized for ONNX Runtime."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model_proto)
    present = {o.name for o in copy.graph.output}
    for name in names:
        if name not in present:
            value = onnx.ValueInfoProto(name=name)
            if name in types:
                value.type.CopyFrom(types[name])
            copy.graph.output.append(value)
    return copy.SerializeToString()


def tail_model(
    model_proto: Any, chain: list[Any], inputs: list[str], types: dict[str, Any], *, output: int = 0
) -> bytes:
    """The tail alone as a graph: `inputs` in, the labels (the graph's `output`) out, the constants it reads kept."""
    import onnx
    from onnx import helper

    read = {name for node in chain for name in node.input}
    graph = helper.make_graph(
        [_copy(node) for node in chain],
        "tail",
        [_value(name, types[name]) for name in inputs],
        [model_proto.graph.output[output]],
        [init for init in model_proto.graph.initializer if init.name in read],
    )
    model = helper.make_model(graph, opset_imports=model_proto.opset_import)
    model.ir_version = model_proto.ir_version
    onnx.checker.check_model(model)
    return model.SerializeToString()


def measure_tail(
    path: Path,
    batch: np.ndarray,
    call: Callable[[], object],
    session: Callable[[bytes], Any],
    *,
    iterations: int,
    min_seconds: float | None,
    seconds: float | None,
) -> dict[str, Any]:
    """The tail's p50 beside the whole call's, alternated, its share with a 95 % interval, and its 1080p bytes.

    `session(model_bytes)` opens an ONNX Runtime session the way the case's backend does.
    """
    import onnx

    model = onnx.load(str(path))
    chain = tail_nodes(model.graph)
    if not chain:
        return {"absent": "no fused tail: the graph does not end in an argmax or a threshold"}
    inputs = tail_inputs(model.graph, chain)
    branch = confidence_branch(model.graph, chain[0].input[0])
    branch_inputs = tail_inputs(model.graph, branch) if branch else []
    written = [node.output[0] for node in [*chain, *branch]]
    types = _types(model)
    whole = session(with_outputs(model, [*inputs, *branch_inputs, *written], types))
    names = [o.name for o in whole.get_outputs()]
    input_name = whole.get_inputs()[0].name
    values = dict(zip(names, whole.run(None, {input_name: batch}), strict=True))
    frame = np.zeros((*FRAME_1080P, 3), np.uint8)
    frame_values = dict(zip(names, whole.run(None, {input_name: frame}), strict=True))
    bytes_1080p = {node.op_type + " " + node.name: int(frame_values[node.output[0]].nbytes) for node in chain}
    branch_bytes = sum(int(frame_values[node.output[0]].nbytes) for node in branch)
    del whole
    tail = session(tail_model(model, chain, inputs, types))
    feeds = {name: values[name] for name in inputs}
    tail.run(None, feeds)
    timed = time_alternating(
        call, lambda: tail.run(None, feeds), iterations=iterations, min_seconds=min_seconds, seconds=seconds
    )
    rest = outside_share(timed.first_ms, timed.second_ms)  # 1 - tail / call, with its interval
    figures = {
        "nodes": [node.op_type for node in chain],
        "p50_ms": float(np.median(timed.flat(1))),
        "alternated_e2e_p50_ms": float(np.median(timed.flat(0))),
        "share": 1.0 - rest["share"],
        "share_interval": [1.0 - rest["high"], 1.0 - rest["low"]],
        "rounds": rest["rounds"],
        "bytes_1080p": sum(bytes_1080p.values()),
        "bytes_1080p_by_node": bytes_1080p,
    }
    if branch:
        branch_feeds = {name: values[name] for name in branch_inputs}
        alone = session(tail_model(model, branch, branch_inputs, types, output=1))
        alone.run(None, branch_feeds)
        paired = time_alternating(
            lambda: tail.run(None, feeds),
            lambda: alone.run(None, branch_feeds),
            iterations=iterations,
            min_seconds=min_seconds,
            seconds=seconds,
        )
        figures["confidence_branch"] = {
            "nodes": [node.op_type for node in branch],
            "p50_ms": float(np.median(paired.flat(1))),
            "labels_tail_p50_ms": float(np.median(paired.flat(0))),  # the same blocks' labels tail, alternated
            "bytes_1080p": branch_bytes,
        }
    return figures


def eager_tail_bytes(classes: int, height: int = FRAME_1080P[1], width: int = FRAME_1080P[2]) -> int:
    """What the notebook's tail writes for one frame: float logits interpolated, int64 argmax, uint8 labels."""
    return height * width * (classes * 4 + 8 + 1)


def _types(model_proto: Any) -> dict[str, Any]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model_proto)
    return {v.name: v.type for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}


def _value(name: str, type_proto: Any) -> Any:
    import onnx

    value = onnx.ValueInfoProto(name=name)
    value.type.CopyFrom(type_proto)
    return value


def _copy(node: Any) -> Any:
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy
