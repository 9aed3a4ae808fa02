"""TensorRT backend: one engine, one execution context, one CUDA stream, buffers allocated once.

Runs engines of TensorRT (10.x, 11.x) and of TensorRT for RTX with the same buffers, stream and CUDA-graph
option; what differs between the libraries is read from `tensorrt_library`. Uses cuda-python's runtime API only
(no pycuda, no torch); the TensorRT module is imported when an engine is loaded. Before TensorRT sees the engine's
bytes, its model card (sha256 already checked by `segrt.meta.read_card`) must name the installed library and
version and fit this GPU: an engine is only valid where it was built (TensorRT: that GPU; TensorRT-RTX: the
compute capabilities it was built for, and TensorRT-RTX's own validity check of the engine's header).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.metadata
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segrt.backends import tensorrt_library as library
from segrt.backends.engine_fit import (
    GpuInfo,
    card_library,
    gpu_problem,
    rebuild_advice,
    rtx_validity_problem,
    version_problem,
)
from segrt.backends.runtime_cache import cache_path, read_runtime_cache, refused_by_tensorrt, write_runtime_cache
from segrt.backends.tensorrt_log import tensorrt_logger, warn_on_warnings
from segrt.errors import MissingDependency, SegError
from segrt.meta import ModelCard, read_verified_bytes
from segrt.timing import stopwatch

if TYPE_CHECKING:
    import tensorrt as trt

# cuda-python's runtime module: `cuda.bindings.runtime` since 12.6 and the only layout in 13.x;
# `cuda.cudart` in 12.0-12.5 (removed in 13.0). This is the one place that knows.
try:
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - depends on the installed cuda-python
    try:
        from cuda import cudart  # type: ignore[no-redef,attr-defined]
    except ImportError:
        cudart = None  # type: ignore[assignment]

# CUDA errors that mean "no usable GPU here" rather than "this call went wrong".
NO_GPU_ERRORS = ("cudaErrorInsufficientDriver", "cudaErrorNoDevice", "cudaErrorDevicesUnavailable")


# --- CUDA: errors and device facts ---------------------------------------------------------------


class NoUsableGpu(MissingDependency):
    """No NVIDIA driver, or no GPU: `reason` is the CUDA error in a few words."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def require_cudart(what: str | Path) -> None:
    if cudart is None:
        raise MissingDependency(
            f"{what}: cuda-python is not installed; install it with `pip install segexport[tensorrt]` "
            f"(cuda-python 12.x on JetPack 6)"
        )


def cuda_error(code: int, name: str, text: str, what: str) -> SegError:
    """One sentence for the CUDA error `code` that `what` got: NoUsableGpu when there is no driver or GPU."""
    reason = f"{text}; {name} = {code}"
    if name in NO_GPU_ERRORS:
        return NoUsableGpu(
            f"{what}: no usable NVIDIA GPU ({reason}); install or update the NVIDIA driver (cuda-python "
            f"{_cuda_python_version()} is installed; cuda-python 13 needs a CUDA 13 driver, so with JetPack 6 "
            f"or an older driver install cuda-python 12.x)",
            reason,
        )
    return SegError(f"{what} failed ({reason})")


def _check(err: Any, what: str) -> None:
    """Raise `cuda_error` for the cudaError_t a cuda-python call returned (it returns errors, never raises)."""
    if err == cudart.cudaError_t.cudaSuccess:
        return
    _, name = cudart.cudaGetErrorName(err)
    _, text = cudart.cudaGetErrorString(err)
    raise cuda_error(int(err), _decode(name), _decode(text), what)


def _decode(value: object) -> str:
    return value.decode(errors="replace").rstrip("\x00").strip() if isinstance(value, bytes) else str(value)


def _cuda_python_version() -> str:
    for distribution in ("cuda-python", "cuda-bindings"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device `device`; a clear error without a driver or GPU."""
    require_cudart(f"CUDA device {device}")
    err, count = cudart.cudaGetDeviceCount()
    _check(err, f"CUDA device {device}")
    if not 0 <= device < count:
        raise SegError(f"CUDA device {device} does not exist; this machine has {count} (0..{count - 1})")
    err, props = cudart.cudaGetDeviceProperties(device)
    _check(err, f"reading the properties of CUDA device {device}")
    return GpuInfo(name=_decode(props.name), compute_capability=f"{props.major}.{props.minor}")


def _refuse(path: Path, card: ModelCard, problem: str) -> SegError:
    return SegError(f"{path}: {problem}; {rebuild_advice(card, path)}")


# --- the backend ------------------------------------------------------------------------------


def _dims(dims: Any) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _host_array(pointer: int, nbytes: int) -> np.ndarray:
    """A uint8 numpy view of pinned host memory allocated by cudaMallocHost."""
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(pointer))


class TensorRTBackend:
    """Runs a serialized TensorRT engine on one GPU.

    One execution context and one CUDA stream; device buffers and pinned host
    buffers are allocated once for the profile's largest input and reused; the
    input shape is set only when it changes. `timings` splits each run into
    "h2d", "compute" and "d2h" (CUDA events) beside the host's "infer".
    With `cuda_graph=True` the engine's kernels are captured into a CUDA graph
    for the current shape and replayed (recaptured when the shape changes); a TensorRT-RTX
    engine captures its own (its runtime config's CUDA-graph strategy) and keeps the kernels it
    compiles in a runtime cache file beside the engine. `close()` (or leaving a `with` block)
    frees every CUDA resource and saves that cache.
    """

    def __init__(self, path: str | Path, *, card: ModelCard, device: int = 0, cuda_graph: bool = False) -> None:
        self.path = Path(path)
        self.card = card
        self.name = "tensorrt"
        self.device = f"cuda:{device}"
        self.timings: dict[str, float] = {}
        self._device_index = device
        self._use_graph = cuda_graph
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: Any = None
        self._events: list[Any] = []
        self._device_buffers: list[int] = []
        self._host_buffers: list[int] = []
        self._graph: Any = None
        self._graph_exec: Any = None
        self._shape: tuple[int, ...] | None = None
        self._output_shape: tuple[int, ...] = ()
        self._runtime_cache: Any = None  # TensorRT-RTX only: the JIT kernels, saved beside the engine on close
        self._engine_sha256 = b""

        self.library = library.installed(card_library(card), self.path)
        problem = version_problem(card, self.library)
        if problem:
            raise _refuse(self.path, card, problem)
        gpu = gpu_info(device)
        problem = gpu_problem(card, gpu)
        if problem:
            raise _refuse(self.path, card, problem)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- setup

    def _open(self) -> None:
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = library.module(self.library.name)

        _check(cudart.cudaSetDevice(self._device_index)[0], f"selecting CUDA device {self._device_index}")
        logger = self._logger = tensorrt_logger(trt, warn_on_warnings)
        self._runtime = trt.Runtime(logger)
        data = read_verified_bytes(self.path)
        self._engine_sha256 = hashlib.sha256(data).digest()
        if self.library.rtx:
            problem = rtx_validity_problem(self._runtime, data)
            if problem:
                raise _refuse(self.path, self.card, problem)
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise _refuse(self.path, self.card, f"{self.library.title} cannot deserialize it ({logger.last_error()})")
        self._engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._confidence = self.card.confidence_name  # the confidence map's output (--confidence), or None
        labels = [name for name in outputs if name != self._confidence]
        if len(inputs) != 1 or len(labels) != 1 or (self._confidence and self._confidence not in outputs):
            raise SegError(
                f"{self.path}: expected one input and the outputs its card names, found {len(inputs)} input(s) and "
                f"{outputs}; this is not a segexport engine, or its card was changed: rebuild it"
            )
        self._input, self._output = inputs[0], labels[0]
        self._input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        self._output_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
        static = _dims(engine.get_tensor_shape(self._input))
        if -1 in static:
            low, best, high = (_dims(d) for d in engine.get_tensor_profile_shape(self._input, 0))
        else:
            low = best = high = static
        self.profile = (low, best, high)

        context = self._create_context(engine)
        if context is None:
            raise SegError(f"{self.path}: TensorRT could not create an execution context ({logger.last_error()})")
        self._context = context
        if not context.set_input_shape(self._input, high):
            raise SegError(f"{self.path}: the engine refuses its own largest profile shape {list(high)}")
        largest_output = _dims(context.get_tensor_shape(self._output))
        if min(largest_output) < 0:
            raise SegError(f"{self.path}: the output shape depends on the data; segrt needs a segexport engine")

        err, self._stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
        _check(err, "creating a CUDA stream")
        for _ in range(4):  # before H2D, after H2D, after compute, after D2H
            err, event = cudart.cudaEventCreate()
            _check(err, "creating a CUDA event")
            self._events.append(event)
        input_bytes = int(np.prod(high)) * self._input_dtype.itemsize
        output_bytes = int(np.prod(largest_output)) * self._output_dtype.itemsize
        self._d_input, self._d_output = self._device_alloc(input_bytes), self._device_alloc(output_bytes)
        self._h_input_ptr, self._h_input = self._host_alloc(input_bytes)
        self._h_output_ptr, self._h_output = self._host_alloc(output_bytes)
        addresses = [(self._input, self._d_input), (self._output, self._d_output)]
        if self._confidence:  # uint8 N x H x W as the labels: buffers of the same size
            self._d_confidence = self._device_alloc(output_bytes)
            self._h_confidence_ptr, self._h_confidence = self._host_alloc(output_bytes)
            addresses.append((self._confidence, self._d_confidence))
        for name, address in addresses:
            if not context.set_tensor_address(name, address):
                raise SegError(f"{self.path}: TensorRT refused the buffer for {name!r} ({logger.last_error()})")

    def _create_context(self, engine: trt.ICudaEngine) -> trt.IExecutionContext | None:
        """The execution context; on TensorRT-RTX through a runtime config holding the runtime cache read from
        beside the engine, and TensorRT-RTX's own CUDA-graph capture when CUDA graphs are asked for."""
        if not self.library.has_runtime_cache:
            return engine.create_execution_context()
        rtx: Any = library.module(self.library.name)  # RTX-only API: no stubs to check it against
        config = cast_any(engine).create_runtime_config()
        if self._use_graph and self.library.builtin_cuda_graphs:
            config.cuda_graph_strategy = rtx.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            self._use_graph = False  # TensorRT-RTX captures and replays; no stream capture of ours on top
        cache = config.create_runtime_cache()
        blob = read_runtime_cache(cache_path(self.path), self._engine_sha256)
        if blob and not cache.deserialize(blob):
            refused_by_tensorrt(cache_path(self.path))
        config.set_runtime_cache(cache)
        self._runtime_cache = cache
        return cast_any(engine).create_execution_context(config)

    def _save_runtime_cache(self) -> None:
        """Write what TensorRT-RTX compiled beside the engine; a folder that cannot be written costs a warning."""
        cache, self._runtime_cache = self._runtime_cache, None
        if cache is None:
            return
        try:
            write_runtime_cache(cache_path(self.path), self._engine_sha256, bytes(memoryview(cache.serialize())))
        except SegError as exc:
            warnings.warn(f"{exc} (the runtime cache; the next start compiles again)", RuntimeWarning, stacklevel=3)

    def _device_alloc(self, nbytes: int) -> int:
        err, pointer = cudart.cudaMalloc(nbytes)
        _check(err, f"allocating {nbytes} bytes on {self.device}")
        self._device_buffers.append(int(pointer))
        return int(pointer)

    def _host_alloc(self, nbytes: int) -> tuple[int, np.ndarray]:
        err, pointer = cudart.cudaMallocHost(nbytes)
        _check(err, f"allocating {nbytes} bytes of pinned host memory")
        self._host_buffers.append(int(pointer))
        return int(pointer), _host_array(int(pointer), nbytes)

    # -- running

    def max_batch_shape(self) -> tuple[int, ...] | None:
        return self.profile[2]

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._timed(batch, confidence=False)[0]

    def run_with_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._confidence:
            raise SegError(f"{self.path}: the engine has no confidence output; export with --confidence and rebuild")
        return cast_any(self._timed(batch, confidence=True))  # (labels, confidence map): both arrays when asked for

    def _timed(self, batch: np.ndarray, *, confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if self._context is None:
            raise SegError(f"{self.path}: the TensorRT backend was closed; load the engine again")
        if batch.dtype != self._input_dtype:
            raise SegError(f"{self.path}: the engine takes {self._input_dtype} input, got {batch.dtype}")
        batch = np.ascontiguousarray(batch)
        self._check_shape(tuple(batch.shape))
        timings: dict[str, float] = {}
        with stopwatch(timings, "infer"):
            outputs = self._run(batch, confidence)
        for key, (start, end) in {"h2d": (0, 1), "compute": (1, 2), "d2h": (2, 3)}.items():
            err, elapsed = cudart.cudaEventElapsedTime(self._events[start], self._events[end])
            _check(err, "reading CUDA event timings")
            timings[key] = float(elapsed)
        self.timings = timings
        return outputs

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        low, _, high = self.profile
        if len(shape) != len(high) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high, strict=True)):
            raise SegError(
                f"{self.path}: input shape {list(shape)} is outside the engine's profile ({list(low)} .. "
                f"{list(high)}); resize the images, or rebuild with wider --min-shape / --max-shape"
            )

    def _run(self, batch: np.ndarray, confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
        assert self._context is not None
        stream, events = self._stream, self._events
        _check(cudart.cudaSetDevice(self._device_index)[0], f"selecting {self.device}")
        if batch.shape != self._shape:
            self._set_shape(tuple(batch.shape))
        input_bytes = batch.nbytes
        output_bytes = int(np.prod(self._output_shape)) * self._output_dtype.itemsize
        self._h_input[:input_bytes] = batch.reshape(-1).view(np.uint8)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaEventRecord(events[0], stream)[0], "recording a CUDA event")
        _check(cudart.cudaMemcpyAsync(self._d_input, self._h_input_ptr, input_bytes, h2d, stream)[0], "copying input")
        _check(cudart.cudaEventRecord(events[1], stream)[0], "recording a CUDA event")
        if self._graph_exec is not None:
            _check(cudart.cudaGraphLaunch(self._graph_exec, stream)[0], "launching the CUDA graph")
        elif not self._context.execute_async_v3(int(stream)):
            raise SegError(f"{self.path}: TensorRT failed to run the engine ({self._logger.last_error()})")
        _check(cudart.cudaEventRecord(events[2], stream)[0], "recording a CUDA event")
        _check(
            cudart.cudaMemcpyAsync(self._h_output_ptr, self._d_output, output_bytes, d2h, stream)[0], "copying output"
        )
        if confidence:  # uint8, the labels' shape
            copied = cudart.cudaMemcpyAsync(self._h_confidence_ptr, self._d_confidence, output_bytes, d2h, stream)
            _check(copied[0], "copying the confidence map")
        _check(cudart.cudaEventRecord(events[3], stream)[0], "recording a CUDA event")
        _check(cudart.cudaStreamSynchronize(stream)[0], f"running {self.path.name}")
        flat = self._h_output[:output_bytes].view(self._output_dtype)  # copied: the pinned buffers are reused
        maps = self._h_confidence[:output_bytes].reshape(self._output_shape).copy() if confidence else None
        return flat.reshape(self._output_shape).copy(), maps

    def _set_shape(self, shape: tuple[int, ...]) -> None:
        assert self._context is not None
        self._drop_graph()
        if not self._context.set_input_shape(self._input, shape):
            raise SegError(f"{self.path}: TensorRT refused input shape {list(shape)} ({self._logger.last_error()})")
        self._output_shape = _dims(self._context.get_tensor_shape(self._output))
        self._shape = shape
        if self._use_graph:
            self._capture_graph()

    def _capture_graph(self) -> None:
        """Capture one execution into a CUDA graph; fall back to plain execution if TensorRT's work cannot be."""
        assert self._context is not None
        stream = self._stream
        # After a shape change the first enqueue may do work a graph cannot hold: run it once outside.
        if not self._context.execute_async_v3(int(stream)):
            raise SegError(f"{self.path}: TensorRT failed to run the engine ({self._logger.last_error()})")
        _check(cudart.cudaStreamSynchronize(stream)[0], f"running {self.path.name}")
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        _check(cudart.cudaStreamBeginCapture(stream, mode)[0], "starting CUDA graph capture")
        enqueued = self._context.execute_async_v3(int(stream))
        err, graph = cudart.cudaStreamEndCapture(stream)
        captured = err == cudart.cudaError_t.cudaSuccess
        if not (enqueued and captured):
            if captured:
                cudart.cudaGraphDestroy(graph)
            warnings.warn(
                f"{self.path.name}: this engine cannot be captured into a CUDA graph; running without one",
                RuntimeWarning,
                stacklevel=2,
            )
            self._use_graph = False
            return
        self._graph = graph
        err, self._graph_exec = cudart.cudaGraphInstantiate(graph, 0)
        _check(err, "instantiating the CUDA graph")

    def _drop_graph(self) -> None:
        if self._graph_exec is not None:
            cudart.cudaGraphExecDestroy(self._graph_exec)
            self._graph_exec = None
        if self._graph is not None:
            cudart.cudaGraphDestroy(self._graph)
            self._graph = None

    # -- teardown

    def close(self) -> None:
        """Free the context, engine, stream, events, CUDA graph and buffers (safe to call twice)."""
        if cudart is not None and self._stream is not None:
            cudart.cudaStreamSynchronize(self._stream)
        self._save_runtime_cache()
        self._context = None  # TensorRT objects go first: they may still refer to the buffers
        self._engine = None
        self._runtime = None
        if cudart is None:
            return
        self._drop_graph()
        for event in self._events:
            cudart.cudaEventDestroy(event)
        self._events = []
        for pointer in self._device_buffers:
            cudart.cudaFree(pointer)
        self._device_buffers = []
        for pointer in self._host_buffers:
            cudart.cudaFreeHost(pointer)
        self._host_buffers = []
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a safety net; close() is the way
        with contextlib.suppress(Exception):  # at interpreter shutdown modules may already be gone
            self.close()


def cast_any(value: object) -> Any:
    """`value` as Any: for the TensorRT-RTX calls the TensorRT stubs do not know."""
    return value
