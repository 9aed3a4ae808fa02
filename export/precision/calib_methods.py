"""How each INT8 pass may set its activation ranges (`--calib-method`): one table both the checks before any work
and the passes read. Kept light (no ONNX tool imported), so `segexport --help` can quote it."""

from __future__ import annotations

from collections.abc import Sequence

from segrt.errors import SegError

# each INT8 graph's methods, its pass's default first. ModelOpt (the TensorRT graph) takes "max" (our minmax: with
# symmetric ranges it is onnxruntime's MinMax) or "entropy"; onnxruntime.quantization (the CPU graph) also percentile.
CALIB_METHODS = {"int8": ("entropy", "minmax"), "int8-cpu": ("minmax", "entropy", "percentile")}
PASS_NAMES = {"int8": "ModelOpt, for TensorRT", "int8-cpu": "onnxruntime.quantization, for the CPU"}
KNOWN = ("minmax", "entropy", "percentile")


def check_calib_method(method: str | None, graphs: Sequence[str]) -> None:
    """Before any work: --calib-method names a method, INT8 is asked for, and every INT8 graph to write has it."""
    if method is None:
        return
    if method not in KNOWN:
        raise SegError(f"--calib-method {method}: unknown; use one of {', '.join(KNOWN)}")
    flavours = [name for name in graphs if name in CALIB_METHODS]
    if not flavours:
        raise SegError(f"--calib-method {method} sets how INT8 is calibrated: add --int8 --calib DIR, or drop it")
    lacking = [name for name in flavours if method not in CALIB_METHODS[name]]
    if lacking:
        graph, other = lacking[0], "cpu" if lacking[0] == "int8" else "tensorrt"
        raise SegError(
            f"--calib-method {method}: the {graph} graph's pass ({PASS_NAMES[graph]}) has "
            f"{', '.join(CALIB_METHODS[graph])}; use one of them, or --int8-target {other} for {method}"
        )


def method_for(method: str | None, graph: str) -> str:
    """The method `graph` ("int8", "int8-cpu") is calibrated with: the one asked for, else its pass's default."""
    return method or CALIB_METHODS[graph][0]


def method_flags(method: str) -> list[str]:
    """The flags that calibrate a graph the same way again (the card's rebuild flags)."""
    return ["--calib-method", method]
