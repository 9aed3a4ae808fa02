"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider, chosen from what is installed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import MissingDependency, SegError, require
from segrt.timing import stopwatch

_INSTALL = "install it with `pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` (CUDA)"

# backend name -> execution providers, most preferred first (CPU always last as a fallback for
# the few operators a GPU provider does not take).
PROVIDERS = {
    "ort-trt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "ort-cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "ort-cpu": ("CPUExecutionProvider",),
}


def _ort() -> Any:
    return require("onnxruntime", _INSTALL)


def available_backends() -> list[str]:
    """The ORT backend names whose first provider is installed here, best first."""
    installed = set(_ort().get_available_providers())
    return [name for name, providers in PROVIDERS.items() if providers[0] in installed]


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """An ONNX file's custom metadata, as ONNX Runtime reads it."""
    ort = _ort()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise SegError(f"{path}: ONNX Runtime cannot load it ({_first_line(exc)}); re-export it") from None
    return dict(session.get_modelmeta().custom_metadata_map)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class OnnxRuntimeBackend:
    """One `InferenceSession` with tuned options; output copied to the host.

    `backend` is "ort-cpu", "ort-cuda", "ort-trt", or "ort" for the best installed.
    On a GPU provider, inputs and outputs go through IO binding so ORT does not
    allocate a new output buffer per call.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, backend: str = "ort", device: int = 0, threads: int | None = None
    ) -> None:
        ort = _ort()
        self.path = Path(path)
        if backend == "ort":
            names = available_backends()
            backend = "ort-cuda" if "ort-cuda" in names else "ort-cpu"
        if backend not in PROVIDERS:
            raise SegError(f"unknown backend {backend!r}; use one of ort, {', '.join(PROVIDERS)}, tensorrt")
        wanted = PROVIDERS[backend]
        if wanted[0] not in ort.get_available_providers():
            raise MissingDependency(
                f"{backend} needs ONNX Runtime's {wanted[0]}, which this onnxruntime does not have; "
                f"install onnxruntime-gpu (`pip install segexport[gpu]`) or use backend='ort-cpu'"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = True
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers: list[Any] = []
        for provider in wanted:
            if provider == "TensorrtExecutionProvider":
                cache = str(self.path.parent / ".ort-trt-cache")
                providers.append(
                    (
                        provider,
                        {
                            "device_id": device,
                            "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": cache,
                            "trt_timing_cache_enable": True,
                        },
                    )
                )
            elif provider == "CUDAExecutionProvider":
                providers.append((provider, {"device_id": device}))
            else:
                providers.append(provider)
        if not self.path.is_file():
            raise SegError(f"{self.path}: no such model file")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            raise SegError(f"{self.path}: ONNX Runtime cannot load it ({_first_line(exc)}); re-export it") from None
        self.name = backend
        self.device = "cpu" if backend == "ort-cpu" else f"cuda:{device}"
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise SegError(
                f"{self.path}: expected one input and one output, found {len(inputs)} and {len(outputs)}; "
                f"this is not a segexport graph"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = tuple(inputs[0].shape)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._binding = self.session.io_binding() if self.device != "cpu" else None
        self.timings: dict[str, float] = {}

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.timings = {}
        try:
            with stopwatch(self.timings, "infer"):
                return self._run(batch)
        except Exception as exc:
            if type(exc).__module__.startswith("onnxruntime"):
                raise SegError(
                    f"{self.path}: inference failed on a {tuple(batch.shape)} {batch.dtype} batch ({_first_line(exc)})"
                ) from None
            raise

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._binding is None:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        binding = self._binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        binding.bind_cpu_input(self.input_name, batch)
        binding.bind_output(self.output_name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def max_batch_shape(self) -> tuple[int, ...] | None:
        return None

    def close(self) -> None:
        self._binding = None
        self.session = None  # the session frees its arena when collected
