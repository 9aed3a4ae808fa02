"""What segrt reads from an ONNX file itself, without the onnx package (a device has ONNX Runtime only): its
metadata, the sha256 of its content less that metadata, and what its graph says about the model card's fields.

An ONNX file is a protobuf message (onnx/onnx.proto); the few fields read here are decoded from the wire format
directly. The file is mapped, not read: the weights are skipped by their length, so a large model costs a walk
over its nodes, and hashing its content is the only pass over every byte.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segrt.errors import SegError

# field numbers in onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto, ...)
MODEL_GRAPH, MODEL_METADATA = 7, 14
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO = 1, 5, 11, 12, 13
NODE_INPUT, NODE_OUTPUT, NODE_OP_TYPE, NODE_ATTRIBUTE = 1, 2, 4, 5
ATTR_NAME, ATTR_I, ATTR_T, ATTR_INTS = 1, 3, 5, 8
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_INT64_DATA, TENSOR_NAME, TENSOR_RAW_DATA = 1, 2, 7, 8, 9
VALUE_NAME, VALUE_TYPE, TYPE_TENSOR, TENSOR_ELEM_TYPE, TENSOR_SHAPE, SHAPE_DIM = 1, 2, 1, 1, 2, 1
DIM_VALUE, DIM_PARAM, ENTRY_KEY, ENTRY_VALUE = 1, 2, 1, 2
FLOAT, UINT8, INT64, FLOAT16, DOUBLE, BFLOAT16 = 1, 2, 7, 10, 11, 16

# ops whose output keeps the class axis of their (first) input where it was, on the way back from the argmax
_KEEP_CLASS_AXIS = {"Cast", "Identity", "Resize", "Upsample", "QuantizeLinear", "DequantizeLinear", "Relu", "Softmax"}


class _Malformed(Exception):
    pass


@dataclass(frozen=True)
class Value:
    """A graph input, output or value_info: its name, element type (0 when unknown) and dims (an int, a symbolic
    name, or None each; None for no shape at all)."""

    name: str
    elem_type: int = 0
    dims: tuple[int | str | None, ...] | None = None

    def shown(self) -> list[int | str]:
        return ["?" if d is None else d for d in self.dims or ()]


@dataclass(frozen=True)
class Tensor:
    """An initializer or a Constant's value: its element type, dims and, for a few int64 values, the values."""

    data_type: int
    dims: tuple[int, ...]
    int64_values: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Node:
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ints: dict[str, int] = field(default_factory=dict)
    int_lists: dict[str, tuple[int, ...]] = field(default_factory=dict)
    value: Tensor | None = None  # a Constant's


@dataclass
class OnnxFile:
    """What one ONNX file holds, as far as a model card can be checked against it."""

    metadata: dict[str, str]
    content_sha256: str | None  # of every byte but the metadata_props entries (`content_sha256`), where asked
    inputs: list[Value]
    outputs: list[Value]
    nodes: list[Node]
    initializers: dict[str, Tensor]
    values: dict[str, Value]  # inputs, outputs and value_info by name

    def producers(self) -> dict[str, Node]:
        return {output: node for node in self.nodes for output in node.outputs}

    def num_classes(self) -> int | None:
        """The classes the graph tells apart, where its shapes say: the channels of a logits output, or of what a
        fused graph's ArgMax reduces (followed back through resizes, casts, Q/DQ and transposes to a known
        shape or the last convolution's weights); None where the graph does not say."""
        if self.one_class():
            return 2  # background and the class, told apart by a threshold on the one logit
        if not self.outputs:  # the labels (or logits) come first; a confidence map second
            return None
        output = self.outputs[0]
        if output.elem_type in (FLOAT, FLOAT16, DOUBLE, BFLOAT16):  # logits, N x C x h x w
            return self._dim(output.name, 1)
        node = self._label_maker()
        if node is None or node.op_type != "ArgMax" or not node.inputs:
            return None
        return self._dim(node.inputs[0], node.ints.get("axis", 0))

    def one_class(self) -> bool | None:
        """Whether the graph is a one-class model's: one logit channel (unfused), or labels made by comparing the
        logit with a threshold (fused, `Greater`) instead of an ArgMax; None where the graph does not say."""
        if not self.outputs:  # the labels (or logits) come first; a confidence map second
            return None
        output = self.outputs[0]
        if output.elem_type in (FLOAT, FLOAT16, DOUBLE, BFLOAT16):
            channels = self._dim(output.name, 1)
            return None if channels is None else channels == 1
        node = self._label_maker()
        if node is None:
            return None
        return {"Greater": True, "ArgMax": False}.get(node.op_type)

    def _label_maker(self) -> Node | None:
        """The node behind a fused graph's labels output, looked through Casts, Identities and Gathers."""
        producers = self.producers()
        node = producers.get(self.outputs[0].name)
        while node is not None and node.op_type in ("Cast", "Identity", "Gather"):
            node = producers.get(node.inputs[0]) if node.inputs else None
        return node

    def _dim(self, name: str, axis: int) -> int | None:
        producers = self.producers()
        for _ in range(64):
            value = self.values.get(name)
            if axis < 0 and value is not None and value.dims is not None:
                axis += len(value.dims)
            if value is not None and value.dims is not None and 0 <= axis < len(value.dims):
                dim = value.dims[axis]
                if isinstance(dim, int) and dim > 0:
                    return dim
            node = producers.get(name)
            if node is None:
                tensor = self.initializers.get(name)
                return tensor.dims[axis] if tensor is not None and 0 <= axis < len(tensor.dims) else None
            if node.op_type == "Transpose" and "perm" in node.int_lists:
                perm = node.int_lists["perm"]
                axis = axis + len(perm) if axis < 0 else axis
                if not 0 <= axis < len(perm):
                    return None
                axis = perm[axis]
            elif node.op_type == "Conv" and axis == 1 and len(node.inputs) > 1:
                name, axis = node.inputs[1], 0  # output channels = the weight's first dim
                continue
            elif node.op_type not in _KEEP_CLASS_AXIS or axis < 0:
                return None
            if not node.inputs:
                return None
            name = node.inputs[0]
        return None

    def resize_size(self) -> tuple[int, int] | None:
        """The (H, W) a fused graph's first Resize makes of the image, where it is a constant (a fixed input size),
        else None."""
        resize = next((node for node in self.nodes if node.op_type == "Resize"), None)
        if resize is None or len(resize.inputs) < 4 or not resize.inputs[3]:
            return None
        sizes = resize.inputs[3]
        node = self.producers().get(sizes)
        if node is not None and node.op_type == "Concat" and node.inputs:
            sizes = node.inputs[-1]
        values = self._int64_constant(sizes)
        if values is None or len(values) < 2 or min(values[-2:]) < 1:
            return None
        return values[-2], values[-1]

    def _int64_constant(self, name: str) -> tuple[int, ...] | None:
        tensor = self.initializers.get(name)
        if tensor is None:
            node = self.producers().get(name)
            tensor = node.value if node is not None and node.op_type == "Constant" else None
        return tensor.int64_values if tensor is not None else None

    def has_float16(self) -> bool:
        return (
            any(t.data_type == FLOAT16 for t in self.initializers.values())
            or any(v.elem_type == FLOAT16 for v in self.values.values())
            or any(n.op_type == "Cast" and n.ints.get("to") == FLOAT16 for n in self.nodes)
        )

    def has_qdq(self) -> bool:
        return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in self.nodes)

    def quantizes_to_uint8(self) -> bool:
        """Whether some QuantizeLinear makes uint8 (ONNX Runtime's CPU flavour; TensorRT's is int8 throughout)."""
        for node in self.nodes:
            if node.op_type != "QuantizeLinear":
                continue
            zero_point = self.initializers.get(node.inputs[2]) if len(node.inputs) > 2 else None
            if zero_point is not None and zero_point.data_type == UINT8:
                return True
            if any(self.values.get(o, Value(o)).elem_type == UINT8 for o in node.outputs):
                return True
        return False


def read_onnx_file(path: str | os.PathLike[str], *, content_hash: bool = False) -> OnnxFile:
    """Read `path`'s metadata and graph (not its weights' bytes) and, with `content_hash`, the sha256 of its content
    less the metadata (one pass over every byte); SegError naming the file if it cannot be read or is not an ONNX
    protobuf."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device would block or never end
            raise SegError(f"{path}: not a regular file, so not a model file")
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise SegError(f"{path}: empty file, not an ONNX model; re-export it")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return _parse(view, content_hash)
                finally:
                    view.release()
    except _Malformed as exc:
        raise SegError(f"{path}: not a readable ONNX file ({exc}); re-export it") from None
    except OSError as exc:
        raise SegError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None


def content_sha256(data: bytes | memoryview) -> str:
    """sha256 of a serialized ONNX model less its metadata_props entries: what the embedded card's
    `segexport.graph_sha256` records (the card lives in those entries, so they cannot be part of what it hashes)."""
    try:
        return _content_sha256(memoryview(data))
    except _Malformed as exc:
        raise SegError(f"not an ONNX model ({exc})") from None


def _content_sha256(buf: memoryview) -> str:
    digest = hashlib.sha256()
    pos, end = 0, len(buf)
    while pos < end:
        start = pos
        number, _, _, pos = _field(buf, pos, end)
        if number != MODEL_METADATA:
            digest.update(buf[start:pos])
    return digest.hexdigest()


def _parse(buf: memoryview, content_hash: bool) -> OnnxFile:
    metadata: dict[str, str] = {}
    graph: tuple[int, int] | None = None
    pos, end = 0, len(buf)
    while pos < end:
        number, wire, value, pos = _field(buf, pos, end)
        if number == MODEL_GRAPH and wire == 2:
            if graph is not None:
                raise _Malformed("two graphs")
            graph = value
        elif number == MODEL_METADATA and wire == 2:
            entry = {n: _text(buf, v) for n, w, v in _fields(buf, *value) if w == 2}
            metadata[entry.get(ENTRY_KEY, "")] = entry.get(ENTRY_VALUE, "")
    if graph is None:
        raise _Malformed("no graph in it")
    result = OnnxFile(metadata, _content_sha256(buf) if content_hash else None, [], [], [], {}, {})
    for number, wire, value in _fields(buf, *graph):
        if wire != 2:
            continue
        if number == GRAPH_NODE:
            result.nodes.append(_node(buf, value))
        elif number == GRAPH_INITIALIZER:
            name, tensor = _tensor(buf, value)
            result.initializers[name] = tensor
        elif number in (GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO):
            info = _value(buf, value)
            result.values[info.name] = info
            if number == GRAPH_INPUT:
                result.inputs.append(info)
            elif number == GRAPH_OUTPUT:
                result.outputs.append(info)
    # ONNX lists initializers among the inputs in older files: the graph's real inputs are the others
    result.inputs = [v for v in result.inputs if v.name not in result.initializers]
    return result


def _node(buf: memoryview, span: tuple[int, int]) -> Node:
    inputs, outputs, op_type = [], [], ""
    ints: dict[str, int] = {}
    int_lists: dict[str, tuple[int, ...]] = {}
    value = None
    for number, wire, content in _fields(buf, *span):
        if number == NODE_INPUT and wire == 2:
            inputs.append(_text(buf, content))
        elif number == NODE_OUTPUT and wire == 2:
            outputs.append(_text(buf, content))
        elif number == NODE_OP_TYPE and wire == 2:
            op_type = _text(buf, content)
        elif number == NODE_ATTRIBUTE and wire == 2:
            name, scalar, listed, tensor = "", None, [], None
            for a_number, a_wire, a_value in _fields(buf, *content):
                if a_number == ATTR_NAME and a_wire == 2:
                    name = _text(buf, a_value)
                elif a_number == ATTR_I and a_wire == 0:
                    scalar = _signed(a_value)
                elif a_number == ATTR_INTS:
                    listed.extend(_ints(buf, a_wire, a_value))
                elif a_number == ATTR_T and a_wire == 2:
                    tensor = _tensor(buf, a_value)[1]
            if scalar is not None:
                ints[name] = scalar
            if listed:
                int_lists[name] = tuple(listed)
            if tensor is not None and name == "value":
                value = tensor
    return Node(op_type, tuple(inputs), tuple(outputs), ints, int_lists, value)


def _tensor(buf: memoryview, span: tuple[int, int]) -> tuple[str, Tensor]:
    dims: list[int] = []
    data_type, name = 0, ""
    int64_data: list[int] = []
    raw: tuple[int, int] | None = None
    for number, wire, value in _fields(buf, *span):
        if number == TENSOR_DIMS:
            dims.extend(_ints(buf, wire, value))
        elif number == TENSOR_DATA_TYPE and wire == 0:
            data_type = value
        elif number == TENSOR_NAME and wire == 2:
            name = _text(buf, value)
        elif number == TENSOR_INT64_DATA:
            int64_data.extend(_ints(buf, wire, value))
        elif number == TENSOR_RAW_DATA and wire == 2:
            raw = value
    count = 1
    for dim in dims:
        count *= dim
    values = None
    if data_type == INT64 and count <= 16:
        if raw is not None and raw[1] - raw[0] == 8 * count:
            data = bytes(buf[raw[0] : raw[1]])
            values = tuple(int.from_bytes(data[i : i + 8], "little", signed=True) for i in range(0, len(data), 8))
        elif len(int64_data) == count:
            values = tuple(int64_data)
    return name, Tensor(data_type, tuple(dims), values)


def _value(buf: memoryview, span: tuple[int, int]) -> Value:
    name, elem_type = "", 0
    dims: list[int | str | None] | None = None
    for number, wire, value in _fields(buf, *span):
        if number == VALUE_NAME and wire == 2:
            name = _text(buf, value)
        elif number == VALUE_TYPE and wire == 2:
            for t_number, t_wire, t_value in _fields(buf, *value):
                if t_number != TYPE_TENSOR or t_wire != 2:
                    continue
                for e_number, e_wire, e_value in _fields(buf, *t_value):
                    if e_number == TENSOR_ELEM_TYPE and e_wire == 0:
                        elem_type = e_value
                    elif e_number == TENSOR_SHAPE and e_wire == 2:
                        dims = [_shape_dim(buf, d) for n, w, d in _fields(buf, *e_value) if n == SHAPE_DIM and w == 2]
    return Value(name, elem_type, None if dims is None else tuple(dims))


def _shape_dim(buf: memoryview, span: tuple[int, int]) -> int | str | None:
    for number, wire, value in _fields(buf, *span):
        if number == DIM_VALUE and wire == 0:
            return _signed(value)
        if number == DIM_PARAM and wire == 2:
            return _text(buf, value)
    return None


# --- the protobuf wire format ------------------------------------------------------------------------------------


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Malformed("it ends inside a field; truncated?")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Malformed("a number longer than 64 bits")


def _field(buf: memoryview, pos: int, end: int) -> tuple[int, int, Any, int]:
    """One field at `pos`: (number, wire type, value, position after it); a length-delimited value is its span."""
    key, pos = _varint(buf, pos, end)
    number, wire = key >> 3, key & 7
    value: Any
    if number == 0:
        raise _Malformed("a field numbered 0")
    if wire == 0:
        value, pos = _varint(buf, pos, end)
    elif wire == 2:
        length, pos = _varint(buf, pos, end)
        value = (pos, pos + length)
        pos += length
    elif wire == 1:
        value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
    elif wire == 5:
        value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
    else:
        raise _Malformed(f"a field of unknown wire type {wire}")
    if pos > end:
        raise _Malformed("it ends inside a field; truncated?")
    return number, wire, value, pos


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    pos = start
    while pos < end:
        number, wire, value, pos = _field(buf, pos, end)
        yield number, wire, value


def _ints(buf: memoryview, wire: int, value: Any) -> list[int]:
    """A repeated int64 field's values: one unpacked value, or a packed run."""
    if wire == 0:
        return [_signed(value)]
    if wire != 2:
        return []
    values, pos, end = [], value[0], value[1]
    while pos < end:
        number, pos = _varint(buf, pos, end)
        values.append(_signed(number))
    return values


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8", errors="replace")
