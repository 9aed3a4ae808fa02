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

With few classes the gain turns into a small loss (measured alternately on this CPU, ONNX Runtime 1.32,
65x65 or 128x128 logits to 612x640: 21 classes 22 -> 15 ms, 14 classes 16 -> 12 ms, 10 about even or
better, 7 classes 12.0 -> 12.6 ms), so a tail of fewer than MIN_CHANNEL_LAST_CLASSES classes stays NCHW.

TensorRT takes the same graph (its Resize resizes any of the innermost three axes; its ArgMax
reduces any one), so engines built from it get the same tail.
"""

from __future__ import annotations

from typing import Any

CHANNEL_LAST = [0, 2, 3, 1]  # N x C x H x W -> N x H x W x C, and the order of a Resize's sizes or scales
MIN_CHANNEL_LAST_CLASSES = 10


def find_tail(graph: Any, *, axes: tuple[int, ...] = (1,), through_cast: bool = False) -> tuple[Any, Any] | None:
    """The fused tail's (linear Resize, ArgMax over one of `axes`) feeding the uint8 labels output, or None.

    `through_cast` looks through one Cast between them (the FP32 island AutoCast leaves around the Resize).
    """
    producers = {name: node for node in graph.node for name in node.output}
    outputs = {tensor.name for tensor in graph.output}
    for node in graph.node:
        if node.op_type != "ArgMax" or _attribute(node, "axis", 0) not in axes or _attribute(node, "keepdims", 1):
            continue
        readers = [reader for reader in graph.node if node.output[0] in reader.input]
        if len(readers) != 1 or readers[0].op_type != "Cast" or readers[0].output[0] not in outputs:
            continue
        source = producers.get(node.input[0])
        if through_cast and source is not None and source.op_type == "Cast":
            source = producers.get(source.input[0])
        if source is not None and source.op_type == "Resize" and _attribute(source, "mode", b"nearest") == b"linear":
            return source, node
    return None


def channel_last_tail(model_proto: Any) -> Any:
    """`model_proto` with its tail resized and reduced channel-last (a copy; the same graph where it has no tail)."""
    import onnx
    from onnx import helper

    found = find_tail(model_proto.graph)
    if found is None or _classes(model_proto, found[0].input[0]) < MIN_CHANNEL_LAST_CLASSES:
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


def _classes(model_proto: Any, logits: str) -> int:
    """The logits' class count (their axis 1), or a large number where shape inference cannot tell."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model_proto)
    for value in [*inferred.graph.value_info, *inferred.graph.input]:
        if value.name == logits and len(value.type.tensor_type.shape.dim) == 4:
            dim = value.type.tensor_type.shape.dim[1]
            return dim.dim_value if dim.HasField("dim_value") else 1 << 30
    return 1 << 30


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


def half_tail(model_proto: Any) -> Any:
    """An FP16 graph whose tail Resize runs in FP16 (a copy; the same graph where there is nothing to do).

    ModelOpt's AutoCast keeps the Resize in FP32 between two Casts: FP16 logits -> FP32 -> Resize ->
    FP16 -> ArgMax, which writes the image-size logits twice, once in FP32 and once in FP16. The Resize
    reads and writes FP16 instead (TensorRT and ONNX Runtime's CPU both have FP16 bilinear kernels):
    half the bytes of the FP32 tail, and labels that differ only where two classes tie in FP16.
    """
    import onnx

    found = find_tail(model_proto.graph, axes=(1, 3, -1), through_cast=True)
    if found is None:
        return model_proto
    resize, argmax = found
    producers = {name: node for node in model_proto.graph.node for name in node.output}
    to_float, to_half = producers.get(resize.input[0]), producers.get(argmax.input[0])
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    if not (_is_cast(to_float, fp32) and _is_cast(to_half, fp16) and to_half.input[0] == resize.output[0]):
        return model_proto
    if _readers(model_proto.graph, to_float.output[0]) != 1 or _readers(model_proto.graph, resize.output[0]) != 1:
        return model_proto
    copy = onnx.ModelProto()
    copy.CopyFrom(model_proto)
    resize, argmax = _same_node(copy.graph, resize), _same_node(copy.graph, argmax)
    to_float, to_half = _same_node(copy.graph, to_float), _same_node(copy.graph, to_half)
    resize.input[0] = to_float.input[0]
    argmax.input[0] = resize.output[0]
    copy.graph.node.remove(to_float)
    copy.graph.node.remove(to_half)
    stale = {resize.output[0]}
    kept = [info for info in copy.graph.value_info if info.name not in stale]
    del copy.graph.value_info[:]
    copy.graph.value_info.extend(kept)
    return onnx.shape_inference.infer_shapes(copy)


def _is_cast(node: Any, to: int) -> bool:
    return node is not None and node.op_type == "Cast" and _attribute(node, "to", None) == to


def _readers(graph: Any, tensor: str) -> int:
    return sum(tensor in node.input for node in graph.node)
