"""A stand-in for TensorRT, so segrt's engine runner can drive a real GPU where no TensorRT engine can run.

On a lent H100 (SM90) there is no full TensorRT and TensorRT-RTX has no SM90 target, yet the runner's CUDA half
(pinned host buffers, device buffers, a stream, events, CUDA-graph capture and replay, close() freeing all) is
most of its code. Installed as the `tensorrt` module, this stand-in gives the runner an engine whose
`execute_async_v3` enqueues real device work on the runner's stream: one device-to-device copy
(cudaMemcpyAsync) of the first N*H*W bytes of the image buffer into the label buffer. So the labels are
`image.reshape(-1)[: N * H * W]` shaped N x H x W: wrong as segmentation, exact as a check that every buffer,
address, size and stream the runner hands over is the right one. Nothing here is TensorRT; the results say so.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from enum import IntEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# The one place that names segrt's modules (issue 25 moves some of them).
from segrt.backends import tensorrt as runner
from segrt.files import write_bytes_atomic
from segrt.meta import ModelCard, write_sidecar

VERSION = "10.0.0+stand-in"  # MAJOR.MINOR first: segrt reads it as a TensorRT 10 library
WHAT = (
    "stand-in engine, not TensorRT: its execute_async_v3 enqueues one device-to-device cudaMemcpyAsync of the "
    "image buffer's first N*H*W bytes into the label buffer on the runner's stream; the runner's pinned and "
    "device buffers, stream, events, CUDA-graph capture and replay and close() are segrt's own, run for real"
)
INPUT, OUTPUT = "image", "labels"


class TensorIOMode(IntEnum):
    INPUT = 1
    OUTPUT = 2


class DataType(IntEnum):
    UINT8 = 5


class ILogger:
    """The base class segrt's logger subclasses (only what `tensorrt_logger` touches)."""

    class Severity(IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    ERROR = Severity.ERROR
    WARNING = Severity.WARNING

    def __init__(self) -> None:
        pass


def nptype(dtype: DataType) -> type:
    return {DataType.UINT8: np.uint8}[dtype]


class StandInContext:
    """An execution context: input shape, tensor addresses, and the enqueue that does the device copy."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()
        self.addresses: dict[str, int] = {}
        self.enqueued = 0  # execute_async_v3 calls: with a CUDA graph, replays do not add to it

    def set_input_shape(self, name: str, shape: Any) -> bool:
        self.shape = tuple(int(v) for v in shape)
        return name == INPUT and len(self.shape) == 4 and self.shape[3] == 3

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shape if name == INPUT else self.shape[:3]

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream: int) -> bool:
        """Enqueue the stand-in's device work on `stream` (also while the runner captures it into a graph)."""
        n, h, w, _ = self.shape
        kind = runner.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        err = runner.cudart.cudaMemcpyAsync(self.addresses[OUTPUT], self.addresses[INPUT], n * h * w, kind, stream)[0]
        runner._check(err, "the stand-in engine's device copy")
        self.enqueued += 1
        return True


class StandInEngine:
    """A dynamic-shape engine with a uint8 N x H x W x 3 input and a uint8 N x H x W output."""

    def __init__(self, max_shape: tuple[int, int, int]) -> None:
        batch, height, width = max_shape
        self.num_io_tensors = 2
        self.profile = ((1, 1, 1, 3), (1, height, width, 3), (batch, height, width, 3))
        self.contexts: list[StandInContext] = []

    def get_tensor_name(self, index: int) -> str:
        return (INPUT, OUTPUT)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == INPUT else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.UINT8

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, -1, -1, 3) if name == INPUT else (-1, -1, -1)

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple[tuple[int, ...], ...]:
        return self.profile

    def create_execution_context(self) -> StandInContext:
        context = StandInContext()
        self.contexts.append(context)
        return context


class Runtime:
    """Deserializes any bytes into a StandInEngine whose largest shape is read from the stand-in's bytes."""

    engines: ClassVar[list[StandInEngine]] = []  # every engine made, for tests to look at its contexts

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> StandInEngine:
        batch, height, width = (int(v) for v in data.decode().rsplit(" ", 1)[1].split("x"))
        engine = StandInEngine((batch, height, width))
        Runtime.engines.append(engine)
        return engine


def module() -> types.ModuleType:
    """The stand-in as a module object named `tensorrt`."""
    stand_in = types.ModuleType("tensorrt", WHAT)
    stand_in.__version__ = VERSION
    for name, value in {
        "Runtime": Runtime,
        "ILogger": ILogger,
        "TensorIOMode": TensorIOMode,
        "DataType": DataType,
        "nptype": nptype,
    }.items():
        setattr(stand_in, name, value)
    return stand_in


@contextlib.contextmanager
def installed() -> Iterator[types.ModuleType]:
    """Make `import tensorrt` give the stand-in inside the block (a real TensorRT is put back after)."""
    previous = sys.modules.get("tensorrt")
    sys.modules["tensorrt"] = stand_in = module()
    try:
        yield stand_in
    finally:
        if previous is None:
            sys.modules.pop("tensorrt", None)
        else:
            sys.modules["tensorrt"] = previous


def write_engine(folder: Path, max_shape: tuple[int, int, int] = (4, 1080, 1920), device: int = 0) -> Path:
    """A stand-in engine file and its card (naming this GPU, as segexport's engine cards do) in `folder`."""
    gpu = runner.gpu_info(device)
    shape = "x".join(str(v) for v in max_shape)
    path = write_bytes_atomic(Path(folder) / "model.stand-in.engine", f"stand-in engine, not TensorRT {shape}".encode())
    card = ModelCard(
        model="stand-in",
        classes=tuple(f"byte {i}" for i in range(256)),  # its labels are image bytes: any value 0..255
        palette=tuple((i, i, i) for i in range(256)),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        input_size=(max_shape[1], max_shape[2]),
        tensorrt={
            "library": "tensorrt",
            "version": VERSION,
            "gpu": gpu.name,
            "compute_capability": gpu.compute_capability,
            "stand_in": WHAT,
        },
    )
    write_sidecar(path, card)
    return path


def expected_labels(batch: np.ndarray) -> np.ndarray:
    """What the stand-in engine returns for `batch`: its first N*H*W bytes, shaped N x H x W."""
    n, h, w, _ = batch.shape
    return np.ascontiguousarray(batch).reshape(-1)[: n * h * w].reshape(n, h, w)
