"""One FP16 mixed-precision graph, read as any set of its FP16 nodes kept in FP32, without converting again.

AutoCast (ModelOpt) lowers a graph to FP16 and puts a Cast wherever an FP16 node meets an FP32 one.
Keeping a node in FP32 (`--keep-fp32`, AutoCast's `nodes_to_exclude`) gives it its FP32 weights, Casts
its FP16 inputs up and its outputs back down; two kept neighbours then pass FP32 between them, with no
FP16 rounding in between. `Fp16Graph.with_kept` does exactly that to the graph AutoCast converted once,
so each trial of the precision search costs no AutoCast run.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

# Ops whose attributes name a type or hold a value: keeping them in FP32 means more than casting around them.
TYPED_OPS = frozenset({"Cast", "CastLike", "Constant", "ConstantOfShape", "EyeLike", "RandomNormal", "RandomUniform"})
_MARK = "_kept_fp32"  # the suffix of every tensor and Cast this module adds


class Fp16Graph:
    """The FP16 graph AutoCast made, and the FP32 graph it came from.

    `units` are the nodes AutoCast lowered (an FP16 output), in graph order: what the search may keep.
    `with_kept(names)` is the graph with those nodes computed in FP32.
    """

    def __init__(self, converted: Any, source: Any) -> None:
        import onnx

        self.converted = converted
        self.source_nodes = {node.name: node for node in source.graph.node}
        self.source_weights = {init.name: init for init in source.graph.initializer}
        inferred = onnx.shape_inference.infer_shapes(converted)
        values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        self.types = {value.name: value.type.tensor_type.elem_type for value in values}
        self.types.update({init.name: init.data_type for init in converted.graph.initializer})
        self.initializers = {init.name for init in converted.graph.initializer}
        half = onnx.TensorProto.FLOAT16
        self.units = tuple(
            node.name
            for node in converted.graph.node
            if node.op_type not in TYPED_OPS and any(self.types.get(name) == half for name in node.output)
        )

    def with_kept(self, kept: Collection[str]) -> Any:
        """A copy of the FP16 graph with the `kept` units in FP32: FP32 weights, Casts around them, and no
        FP32 -> FP16 -> FP32 round trip between two kept nodes."""
        import onnx

        unknown = set(kept) - set(self.units)
        if unknown:
            raise ValueError(f"not FP16 units of this graph: {sorted(unknown)}")
        model = onnx.ModelProto()
        model.CopyFrom(self.converted)
        graph = model.graph
        added: dict[str, str] = {}  # FP16 tensor -> its FP32 copy (an up-Cast, or a kept node's own output)
        down_casts = []
        for node in list(graph.node):  # graph order: a kept node's producers are seen before it
            if node.name in kept:
                down_casts += self._keep(graph, node, added)
        graph.node.extend(down_casts)
        _skip_round_trips(graph, {cast.output[0]: cast.input[0] for cast in down_casts})
        _sort(graph)
        _drop_unread_casts(graph)
        return model

    def _keep(self, graph: Any, node: Any, added: dict[str, str]) -> list[Any]:
        """Put one node in FP32; returns the Casts of its outputs back to FP16."""
        import onnx

        half = onnx.TensorProto.FLOAT16
        for index, name in enumerate(node.input):
            if not name or self.types.get(name) != half:
                continue
            if name in self.initializers:
                node.input[index] = self._source_weight(graph, node, index)
            else:
                if name not in added:
                    added[name] = name + _MARK
                    cast = onnx.helper.make_node(
                        "Cast", [name], [added[name]], name=name + _MARK + "_up", to=onnx.TensorProto.FLOAT
                    )
                    graph.node.append(cast)
                node.input[index] = added[name]
        casts = []
        for index, name in enumerate(node.output):
            if self.types.get(name) != half:
                continue
            node.output[index] = name + _MARK
            casts.append(onnx.helper.make_node("Cast", [name + _MARK], [name], name=name + _MARK + "_down", to=half))
            added[name] = name + _MARK  # a kept reader takes the FP32 output itself: no round trip
        return casts

    def _source_weight(self, graph: Any, node: Any, index: int) -> str:
        source = self.source_nodes.get(node.name)
        if source is None or index >= len(source.input) or source.input[index] not in self.source_weights:
            raise ValueError(f"{node.name}: no FP32 initializer for input {index} in the FP32 graph")
        name = source.input[index]
        taken = {init.name for init in graph.initializer}
        if name + _MARK not in taken:
            weight = self.source_weights[name]
            copy = type(weight)()
            copy.CopyFrom(weight)
            copy.name = name + _MARK
            graph.initializer.append(copy)
        return name + _MARK


def _sort(graph: Any) -> None:
    """Order the nodes so each comes after what it reads (ONNX requires it; the added Casts broke it)."""
    available = {value.name for value in graph.input} | {init.name for init in graph.initializer} | {""}
    pending = [_copy(node) for node in graph.node]
    ordered = []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise ValueError("the graph has a cycle or reads a tensor nothing makes")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [node for node in pending if node not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _copy(node: Any) -> Any:
    copy = type(node)()
    copy.CopyFrom(node)
    return copy


def _skip_round_trips(graph: Any, downcast_sources: dict[str, str]) -> None:
    """Where an up-Cast (AutoCast's, before an FP32 node) reads a kept node's down-Cast output, its readers take
    the kept node's FP32 output itself, as AutoCast wires two FP32 nodes."""
    import onnx

    for node in list(graph.node):
        to = next((attribute.i for attribute in node.attribute if attribute.name == "to"), None)
        if node.op_type == "Cast" and to == onnx.TensorProto.FLOAT and node.input[0] in downcast_sources:
            for reader in graph.node:
                for index, name in enumerate(reader.input):
                    if name == node.output[0]:
                        reader.input[index] = downcast_sources[node.input[0]]


def _drop_unread_casts(graph: Any) -> None:
    """Remove the Casts nothing reads any more (a down-Cast between two kept nodes, a skipped round trip)."""
    outputs = {value.name for value in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        unread = [node for node in graph.node if node.op_type == "Cast" and node.output[0] not in read]
        if not unread:
            return
        for node in unread:
            graph.node.remove(node)
