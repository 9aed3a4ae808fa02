"""The fused graph's tail (logits resized to the image size, argmax, uint8) rewritten channel-last.

The tail is the largest tensor of the frame: C float logits at the image's full size (33 MB for 21
classes at 612x640, 174 MB at 1080x1920), written by the Resize and read again by the ArgMax. In
NCHW order every output pixel gathers its four neighbours from C separate planes and the ArgMax
strides across them; channel-last, one pixel's C logits share the same four source positions and
weights and lie next to each other, so ONNX Runtime's CPU Resize runs its NHWC kernel and the
ArgMax reads contiguous memory (on this project's 2-core CPU, ONNX Runtime's profile of the tail
alone gave about half the time of the NCHW tail). The numbers computed are the same (bilinear,
half-pixel centres); only their order in memory changes, and the Transpose that makes it reads
the small network-resolution logits.

    ... -> logits N x C x h x w -> Resize(N x C x H x W) -> ArgMax(axis 1) -> Cast(uint8)
    ... -> logits N x C x h x w -> Transpose(N x h x w x C) -> Resize(N x H x W x C) -> ArgMax(axis 3) -> Cast(uint8)

TensorRT takes the same graph (its Resize resizes any of the innermost three axes; its ArgMax
reduces any one), so engines built from it get the same tail.
"""

from __future__ import annotations

from typing import Any

CHANNEL_LAST = [0, 2, 3, 1]  # N x C x H x W -> N x H x W x C, and the order of a Resize's sizes or scales


def find_tail(graph: Any) -> tuple[Any, Any] | None:
    """The fused tail's (Resize, ArgMax) in NCHW order, or None where the graph has no such tail."""
    producers = {name: node for node in graph.node for name in node.output}
    outputs = {tensor.name for tensor in graph.output}
    for node in graph.node:
        if node.op_type != "ArgMax" or _attribute(node, "axis", 0) != 1 or _attribute(node, "keepdims", 1) != 0:
            continue
        readers = [reader for reader in graph.node if node.output[0] in reader.input]
        if len(readers) != 1 or readers[0].op_type != "Cast" or readers[0].output[0] not in outputs:
            continue
        resize = producers.get(node.input[0])
        if resize is not None and resize.op_type == "Resize" and _attribute(resize, "mode", b"nearest") == b"linear":
            return resize, node
    return None


def channel_last_tail(model_proto: Any) -> Any:
    """`model_proto` with its tail resized and reduced channel-last (a copy; the same graph where it has no tail)."""
    import onnx
    from onnx import helper

    found = find_tail(model_proto.graph)
    if found is None:
        return model_proto
    copy = onnx.ModelProto()
    copy.CopyFrom(model_proto)
    resize, argmax = (_same_node(copy.graph, node) for node in found)
    logits = resize.input[0]
    order_name = f"{resize.name}/channel_last_order"
    added = [
        helper.make_node(
            "Transpose", [logits], [f"{logits}/channel_last"], name=f"{resize.name}/to_channel_last", perm=CHANNEL_LAST
        ),
    ]
    copy.graph.initializer.append(onnx.numpy_helper.from_array(_int64(CHANNEL_LAST), order_name))
    for index in (2, 3):  # scales or sizes, whichever the Resize uses: N, C, H, W -> N, H, W, C
        if len(resize.input) > index and resize.input[index]:
            reordered = f"{resize.input[index]}/channel_last"
            added.append(
                helper.make_node(
                    "Gather",
                    [resize.input[index], order_name],
                    [reordered],
                    name=f"{resize.name}/reorder_{index}",
                    axis=0,
                )
            )
            resize.input[index] = reordered
    resize.input[0] = f"{logits}/channel_last"
    for attribute in argmax.attribute:
        if attribute.name == "axis":
            attribute.i = 3
    position = list(copy.graph.node).index(resize)
    for offset, node in enumerate(added):
        copy.graph.node.insert(position + offset, node)
    stale = {resize.output[0], argmax.output[0]}  # their shapes changed: inferred again below
    kept = [info for info in copy.graph.value_info if info.name not in stale]
    del copy.graph.value_info[:]
    copy.graph.value_info.extend(kept)
    return onnx.shape_inference.infer_shapes(copy)


def _same_node(graph: Any, node: Any) -> Any:
    return next(candidate for candidate in graph.node if candidate.output[0] == node.output[0])


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _int64(values: list[int]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=np.int64)
