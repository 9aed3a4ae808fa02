"""One INT8 Q/DQ graph, read as any set of its nodes kept in high precision, without calibrating again.

Both quantizers segexport uses (ModelOpt for TensorRT, `onnxruntime.quantization` for the CPU) put a
Q/DQ pair on each activation tensor a quantized node asks for, and a DQ (after a Q, or on an INT8
initializer) on each weight. Excluding a node (`--keep-fp32`, their `nodes_to_exclude`) withdraws its
requests: its weights stay float, and a pair no other quantized node asks for disappears, for every
reader of the tensor. `QdqGraph.with_kept` does exactly that to the graph quantized with every node, so
each trial of the precision search reuses one calibration: the scales are those the quantizer computed,
which do not depend on what is excluded (both calibrate the float graph).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

# Ops no quantizer asks a Q/DQ pair for: ModelOpt drops these from ONNX Runtime's QDQ registry, and Shape,
# Cast and Identity only read a tensor's shape or pass it on. They read a pair's DQ output when another node
# asked for the pair.
PASS_THROUGH_OPS = frozenset(
    {
        "ArgMax", "Cast", "Concat", "EmbedLayerNormalization", "Flatten", "Gather", "GatherElements", "GatherND",
        "Identity", "InstanceNormalization", "LeakyRelu", "Pad", "Relu", "Reshape", "Shape", "Sigmoid", "Slice",
        "Softmax", "Split", "Squeeze", "Transpose", "Unsqueeze", "Where",
    }
)  # fmt: skip
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Quantization:
    """How a quantizer decides which nodes ask for a pair: which op types quantize, and whether a quantized
    node's output pair is its own request (onnxruntime.quantization quantizes a Conv's output too)."""

    ops: frozenset[str] | None  # None: every op but PASS_THROUGH_OPS (ModelOpt's TensorRT placement)
    outputs: bool

    def asks(self, op_type: str) -> bool:
        if op_type in QDQ_OPS:
            return False
        return op_type not in PASS_THROUGH_OPS if self.ops is None else op_type in self.ops


TENSORRT_QUANTIZATION = Quantization(ops=None, outputs=False)  # ModelOpt: inputs of the nodes TensorRT fuses
CPU_QUANTIZATION = Quantization(ops=frozenset({"Conv"}), outputs=True)  # precision.quantize_int8_cpu's call


@dataclass(frozen=True)
class _Pair:
    """A DQ (and the Q before it, if any) and who asked for it."""

    dequantize: Any
    quantize: Any | None
    float_tensor: str | None  # what its readers read when the pair goes: the Q's input (None: INT8 initializer)
    weight: bool  # a weight (initializer) pair: its askers are its readers, never its producer
    requesters: frozenset[str] = field(default_factory=frozenset)


class QdqGraph:
    """The Q/DQ graph of every quantizable node, and the float graph it was made from.

    `units` are the nodes that asked for a pair (an activation's or a weight's), in graph order: what the
    search may keep. `with_kept(names)` is the graph those nodes would get from the quantizer with
    `nodes_to_exclude=names`, and the same scales.
    """

    def __init__(self, quantized: Any, source: Any, quantization: Quantization) -> None:
        self.quantized = quantized
        self.source_nodes = {node.name: node for node in source.graph.node}
        self.source_weights = {init.name: init for init in source.graph.initializer}
        self.initializers = {init.name: init for init in quantized.graph.initializer}
        self.pairs = self._find_pairs(quantization)
        requesters = {name for pair in self.pairs for name in pair.requesters}
        self.units = tuple(node.name for node in quantized.graph.node if node.name in requesters)

    def _find_pairs(self, quantization: Quantization) -> list[_Pair]:
        nodes = list(self.quantized.graph.node)
        producer = {output: node for node in nodes for output in node.output}
        readers: dict[str, list[Any]] = {}
        for node in nodes:
            for name in node.input:
                readers.setdefault(name, []).append(node)
        pairs = []
        for node in nodes:
            if node.op_type != "DequantizeLinear":
                continue
            quantize = producer.get(node.input[0])
            quantize = quantize if quantize is not None and quantize.op_type == "QuantizeLinear" else None
            float_tensor = quantize.input[0] if quantize is not None else None
            weight = node.input[0] in self.initializers or (float_tensor in self.initializers)
            asking = {reader.name for reader in readers.get(node.output[0], []) if quantization.asks(reader.op_type)}
            made_by = producer.get(float_tensor) if float_tensor is not None else None
            if quantization.outputs and not weight and made_by is not None and quantization.asks(made_by.op_type):
                asking.add(made_by.name)
            pairs.append(_Pair(node, quantize, float_tensor, weight, frozenset(asking)))
        return pairs

    def with_kept(self, kept: Collection[str]) -> Any:
        """A copy of the quantized graph with the `kept` units' requests withdrawn: a pair (activation or
        weight) all of whose askers are kept goes, and every reader reads the float tensor again, as the
        quantizers' `nodes_to_exclude` does (they quantize a tensor for all its readers, kept ones too).
        Then the Q/DQ nodes nobody reads are dropped."""
        import onnx

        unknown = set(kept) - set(self.units)
        if unknown:
            raise ValueError(f"not quantized units of this graph: {sorted(unknown)}")
        model = onnx.ModelProto()
        model.CopyFrom(self.quantized)
        graph = model.graph
        float_types: dict[str, int] = {}  # FP32 source weights to add, and the type their readers expect
        for pair in self.pairs:
            if not pair.requesters or not pair.requesters <= set(kept):
                continue
            name = pair.float_tensor or self._source_weight_name(graph, pair)
            if pair.float_tensor is None:
                float_types[name] = self.initializers[pair.dequantize.input[1]].data_type  # the DQ's output type
            dequantize = next(node for node in graph.node if node.output[0] == pair.dequantize.output[0])
            graph.node.remove(dequantize)
            _rewire(graph, pair.dequantize.output[0], name)
        self._add_source_weights(graph, float_types)
        _drop_unread(graph)
        return model

    def _source_weight_name(self, graph: Any, pair: _Pair) -> str:
        """The FP32 source's initializer an INT8-stored weight was made from, found through an asking node of the
        same name. A kept node reads that name, as with the quantizer's own exclusion: where the name is also a
        surviving DQ's output (onnxruntime names a bias's DQ output after the bias, and a bias shared by several
        Convs gets one DQ per Conv), the kept node reads that DQ, exactly as `nodes_to_exclude` leaves it."""
        output = pair.dequantize.output[0]
        for node in graph.node:
            source = self.source_nodes.get(node.name)
            if node.name in pair.requesters and source is not None and output in node.input:
                index = list(node.input).index(output)
                if index < len(source.input) and source.input[index] in self.source_weights:
                    return str(source.input[index])
        raise ValueError(f"{output}: no float weight in the FP32 graph for this dequantized weight")

    def _add_source_weights(self, graph: Any, float_types: dict[str, int]) -> None:
        """Add the FP32 source initializers that kept nodes read and nothing in the graph makes any more."""
        import onnx
        from onnx import numpy_helper

        made = {init.name for init in graph.initializer} | {value.name for value in graph.input}
        made |= {output for node in graph.node for output in node.output}
        for name, data_type in float_types.items():
            if name not in made:
                values = numpy_helper.to_array(self.source_weights[name])
                dtype = onnx.helper.tensor_dtype_to_np_dtype(data_type)
                graph.initializer.append(numpy_helper.from_array(values.astype(dtype), name))


def _rewire(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new


def _drop_unread(graph: Any) -> None:
    """Remove Q/DQ nodes whose outputs nobody reads (repeatedly: a Q goes once its DQ has), then the
    initializers nothing reads any more."""
    outputs = {value.name for value in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        unread = [node for node in graph.node if node.op_type in QDQ_OPS and not set(node.output) & read]
        if not unread:
            break
        for node in unread:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name not in read]:
        graph.initializer.remove(init)
