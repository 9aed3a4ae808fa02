"""The precisions a segexport file can have: one row each, read by the exporter, the runtime and the benchmarks.

A new precision is a row here plus its pass in `segexport.precision.passes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from segrt.errors import SegError


@dataclass(frozen=True)
class Precision:
    """What one precision means everywhere it is named."""

    name: str  # what cards, flags and suites call it
    title: str  # how progress lines and reports call it
    min_agreement: float  # least share of equal label pixels with its reference (FP32 graph; an engine: its ONNX)
    calibrated: bool  # made from calibration images (--calib)
    tensorrt: bool  # TensorRT builds engines from it (the CPU INT8 graph is for ONNX Runtime only)
    flags: str  # the segexport flags that write it, for messages

    def file_name(self, stem: str = "model", *, engine: bool = False, rtx: bool = False) -> str:
        """model.onnx, model.fp16.onnx, model.int8-cpu.onnx, model.fp16.engine, model.int8.rtx.engine ..."""
        middle = "" if self.name == "fp32" else f".{self.name}"
        return f"{stem}{middle}{'.rtx' if rtx else ''}.{'engine' if engine else 'onnx'}"


PRECISIONS: dict[str, Precision] = {
    row.name: row
    for row in (
        Precision("fp32", "FP32", 0.999, calibrated=False, tensorrt=True, flags=""),
        Precision("fp16", "FP16 mixed precision", 0.995, calibrated=False, tensorrt=True, flags="--fp16"),
        Precision("int8", "INT8 Q/DQ for TensorRT", 0.98, calibrated=True, tensorrt=True, flags="--int8 --calib DIR"),
        Precision(
            "int8-cpu",
            "INT8 Q/DQ for ONNX Runtime CPU",
            0.98,
            calibrated=True,
            tensorrt=False,
            flags="--int8 --int8-target cpu --calib DIR",
        ),
    )
}
# What a user asks for by name (segrt.load, segrun, suites): "int8" picks the INT8 graph the backend runs.
USER_PRECISIONS = ("fp32", "fp16", "int8")


def precision(name: str) -> Precision:
    """The row of `name`, or SegError listing the precisions there are."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise SegError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}") from None


def graph_for(name: str, *, on_ort_cpu: bool) -> Precision:
    """The graph that runs user precision `name`: INT8 on ONNX Runtime's CPU provider is the CPU-flavoured
    graph (its optimizer mishandles the TensorRT one's FP16-scaled Q/DQ); elsewhere the graph of that name."""
    if name not in USER_PRECISIONS:
        raise SegError(f"precision {name!r} is not one of {', '.join(USER_PRECISIONS)}")
    return PRECISIONS["int8-cpu" if name == "int8" and on_ort_cpu else name]


def least_agreements() -> str:
    """Each user precision's least agreement with the reference, as a sentence: "99.9 for FP32, 99.5 for FP16,
    98 for INT8" (segexport's --min-agreement help)."""
    return ", ".join(f"{PRECISIONS[name].min_agreement * 100:.4g} for {name.upper()}" for name in USER_PRECISIONS)
