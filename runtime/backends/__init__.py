"""Inference backends behind one small Protocol, and the table of backend names every side reads.

Each backend module imports its heavy library lazily. A new backend is a row of `BACKENDS`
plus its module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Runs a model file on one device.

    `run` takes the model's input batch (uint8 NHWC for a fused graph, float32
    NCHW for an unfused one) and returns its first output (labels or logits) as a host array.
    `timings` holds the stages of the last `run` in ms (at least "infer"; GPU
    backends split it into "h2d", "compute" and "d2h"). One life cycle for all:
    `close()` frees what the backend holds (twice is fine), `run` after `close`
    is a SegError, and a backend is a context manager.
    """

    name: str
    device: str
    timings: dict[str, float]

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def run_with_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A fused graph's labels and its second output, the uint8 N x H x W confidence map (--confidence); a
        SegError where the graph has none."""
        ...

    def max_batch_shape(self) -> tuple[int, ...] | None:
        """The largest input shape the model accepts (an engine's profile), or None if unbounded."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class BackendRow:
    """What one backend name means: the files it runs, where, through which providers, what it needs."""

    name: str
    runs: str  # "engine" or "onnx"
    device: str  # "cpu", "cuda", or "auto" (the best this machine has)
    providers: tuple[str, ...]  # ONNX Runtime's execution providers, most preferred first; () for engines
    needs: str  # what to install, for the sentence a machine without it gets

    @property
    def on_ort_cpu(self) -> bool:
        """Whether it runs ONNX graphs on ONNX Runtime's CPU provider, where "int8" means the CPU-flavoured graph."""
        return self.runs == "onnx" and self.device == "cpu"


GPU_ORT = "onnxruntime-gpu (pip install 'segexport[gpu]') on a machine with an NVIDIA GPU"
BACKENDS: dict[str, BackendRow] = {
    row.name: row
    for row in (
        BackendRow(
            "tensorrt",
            "engine",
            "cuda",
            (),
            "TensorRT (pip install 'segexport[tensorrt]'; JetPack ships it) or TensorRT-RTX (segexport[rtx]), "
            "cuda-python and an NVIDIA GPU",
        ),
        BackendRow("ort", "onnx", "auto", (), "onnxruntime; it picks the TensorRT EP, else CUDA, else CPU"),
        BackendRow("ort-cpu", "onnx", "cpu", ("CPUExecutionProvider",), "onnxruntime (the base install)"),
        BackendRow("ort-cuda", "onnx", "cuda", ("CUDAExecutionProvider", "CPUExecutionProvider"), GPU_ORT),
        BackendRow(
            "ort-trt",
            "onnx",
            "cuda",
            ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
            GPU_ORT + ", with TensorRT's libraries",
        ),
    )
}
