"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider, chosen from what is installed."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from segrt.backends import BACKENDS
from segrt.errors import MissingDependency, SegError, first_line, require
from segrt.timing import stopwatch

_INSTALL = "install it with `pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` (CUDA)"

# backend name -> execution providers, most preferred first (CPU always last as a fallback for
# the few operators a GPU provider does not take), best backend first; from the backend table.
PROVIDERS = {name: BACKENDS[name].providers for name in ("ort-trt", "ort-cuda", "ort-cpu")}


def _ort() -> Any:
    return require("onnxruntime", _INSTALL)


def available_backends() -> list[str]:
    """The ORT backend names whose first provider is installed here, best first."""
    installed = set(_ort().get_available_providers())
    return [name for name, providers in PROVIDERS.items() if providers[0] in installed]


def tensorrt_loadable() -> bool:
    """Whether TensorRT's library is here: onnxruntime-gpu lists its TensorRT provider even without it."""
    import ctypes.util
    import importlib.util

    if any(importlib.util.find_spec(name) is not None for name in ("tensorrt_libs", "tensorrt")):
        return True
    return ctypes.util.find_library("nvinfer") is not None


def auto_backend(installed: Collection[str], tensorrt_present: Callable[[], bool] | None = None) -> str:
    """What backend "ort" means with these providers installed: TensorRT EP, else CUDA EP, else CPU.

    `tensorrt_present` (default `tensorrt_loadable`) is asked only when ORT lists its TensorRT provider.
    """
    if "TensorrtExecutionProvider" in installed and (tensorrt_present or tensorrt_loadable)():
        return "ort-trt"
    if "CUDAExecutionProvider" in installed:
        return "ort-cuda"
    return "ort-cpu"


def default_backend() -> str:
    """`auto_backend` for this machine's onnxruntime."""
    return auto_backend(_ort().get_available_providers())


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """An ONNX file's custom metadata, as ONNX Runtime reads it."""
    ort = _ort()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise SegError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)}); re-export it") from None
    return dict(session.get_modelmeta().custom_metadata_map)


class OnnxRuntimeBackend:
    """One `InferenceSession` with tuned options; output copied to the host.

    `backend` is "ort-cpu", "ort-cuda", "ort-trt", or "ort" for the best installed
    (`auto_backend`). `io_binding` (default: on a GPU provider) runs through an
    IO binding; a fused graph's uint8 labels are then written into one host buffer
    bound once per batch shape and reused, so ORT allocates no output per call
    (the caller gets a copy). An unfused graph's logits are bound to the host
    without a buffer: ORT allocates them each call.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        backend: str = "ort",
        device: int = 0,
        threads: int | None = None,
        io_binding: bool | None = None,
        spin: bool = True,
    ) -> None:
        ort = _ort()
        self.path = Path(path)
        if backend == "ort":
            backend = default_backend()
        if backend not in PROVIDERS:
            raise SegError(f"unknown backend {backend!r}; use one of ort, {', '.join(PROVIDERS)}, tensorrt")
        wanted = PROVIDERS[backend]
        if wanted[0] not in ort.get_available_providers():
            raise MissingDependency(
                f"{backend} needs ONNX Runtime's {wanted[0]}, which this onnxruntime does not have; "
                f"make onnxruntime-gpu the only ONNX Runtime wheel (`pip uninstall -y onnxruntime "
                f"onnxruntime-gpu && pip install onnxruntime-gpu`) or use backend='ort-cpu'"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = True
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not spin:  # idle intra-op threads sleep: the cores go to the stages beside the model (segrt.stream)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
            raise SegError(f"{self.path}: ONNX Runtime cannot load it ({first_line(exc)}); re-export it") from None
        self.name = backend
        self.device = "cpu" if BACKENDS[backend].device == "cpu" else f"cuda:{device}"
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) not in (1, 2):
            raise SegError(
                f"{self.path}: expected one input and one output (and a confidence map), found {len(inputs)} and "
                f"{len(outputs)}; this is not a segexport graph"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        # a fused graph exported with --confidence: its second output, uint8 N x H x W
        self.confidence_name = outputs[1].name if len(outputs) == 2 else None
        self.input_shape = tuple(inputs[0].shape)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.fused = outputs[0].type == "tensor(uint8)" and len(outputs[0].shape) == 3  # N x H x W labels
        use_binding = self.device != "cpu" if io_binding is None else io_binding
        self._binding = self.session.io_binding() if use_binding else None
        self._labels: np.ndarray | None = None  # the bound output buffer, reused while the batch shape holds
        self._labels_value: Any = None  # its OrtValue
        self._confidence: np.ndarray | None = None  # the confidence map's, bound while asked for
        self._confidence_value: Any = None
        self.timings: dict[str, float] = {}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._timed(batch, confidence=False)[0]

    def run_with_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and the confidence map (uint8 N x H x W each) of a graph exported with --confidence."""
        if self.confidence_name is None:
            raise SegError(f"{self.path}: the graph has no confidence output; export it again with --confidence")
        labels, confidence = self._timed(batch, confidence=True)
        assert confidence is not None
        return labels, confidence

    def _timed(self, batch: np.ndarray, *, confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if self.session is None:
            raise SegError(f"{self.path}: the ONNX Runtime backend was closed; load the model again")
        self.timings = {}
        try:
            with stopwatch(self.timings, "infer"):
                return self._run(batch, confidence)
        except Exception as exc:
            if type(exc).__module__.startswith("onnxruntime"):
                raise SegError(
                    f"{self.path}: inference failed on a {tuple(batch.shape)} {batch.dtype} batch ({first_line(exc)})"
                ) from None
            raise

    def _run(self, batch: np.ndarray, confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The labels (or logits), and the confidence map where asked for (a graph with one: its run computes it
        whether fetched or not)."""
        if self._binding is None:
            names = [self.output_name, *([self.confidence_name] if confidence else [])]
            outputs = self.session.run(names, {self.input_name: batch})
            return outputs[0], (outputs[1] if confidence else None)
        binding = self._binding
        binding.bind_cpu_input(self.input_name, batch)  # binding a bound name again replaces it
        if not self.fused:  # the logits' size is known only after the run
            binding.bind_output(self.output_name, "cpu")
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0], None
        labels, confidence_map = self._bound_outputs(tuple(batch.shape[:3]), confidence)
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        # the buffers are the next run's
        return labels.copy(), (confidence_map.copy() if confidence_map is not None else None)

    def _bound_outputs(self, shape: tuple[int, ...], confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The host buffers ORT writes N x H x W labels (and the confidence map, where asked for) into, bound anew
        only when the batch shape changes; a graph's confidence output is bound to a buffer of its own even when
        not asked for, so ORT allocates nothing per call."""
        assert self._binding is not None
        ort = _ort()
        if self._labels is None or self._labels.shape != shape:
            self._labels = np.empty(shape, np.uint8)
            self._labels_value = ort.OrtValue.ortvalue_from_numpy(self._labels)
            self._binding.bind_ortvalue_output(self.output_name, self._labels_value)
        if self.confidence_name is not None and (self._confidence is None or self._confidence.shape != shape):
            self._confidence = np.empty(shape, np.uint8)
            self._confidence_value = ort.OrtValue.ortvalue_from_numpy(self._confidence)
            self._binding.bind_ortvalue_output(self.confidence_name, self._confidence_value)
        return self._labels, (self._confidence if confidence else None)

    def max_batch_shape(self) -> tuple[int, ...] | None:
        return None

    def close(self) -> None:
        """Drop the session and its bound buffers (safe to call twice)."""
        self._binding = None
        self._labels = self._labels_value = self._confidence = self._confidence_value = None
        self.session = None  # the session frees its arena when collected

    def __enter__(self) -> OnnxRuntimeBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
