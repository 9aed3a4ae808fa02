"""A stand-in for the `tensorrt` module: just enough of TensorRT's Python API for segexport's `build_engine`
to run to its end on a machine without TensorRT (it cannot be installed here).

Its builder drives the progress monitor the way TensorRT does (phase_start, step_complete per step,
phase_finish; a False from step_complete cancels the build and returns None) and, like TensorRT, adds
what it timed to the timing cache installed in the config. `STATE` says how a build behaves and
records what it was given. Install it as `sys.modules["tensorrt"]` (tests load a fresh copy each time).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__version__ = "10.3.0.30"
PHASE = "Building the engine (stand-in)"
TIMED = b"timed;"  # what one build adds to the timing cache


@dataclass
class State:
    steps: int = 5
    step_delay_s: float = 0.0
    on_step: Callable[[int], None] | None = None  # called before each step_complete (in the build thread)
    extra_calls: Callable[[Any, Any], None] | None = None  # (monitor, logger) -> None, before the steps
    timing_caches_given: list[bytes] = field(default_factory=list)  # bytes of each create_timing_cache
    cancelled_at: int | None = None  # the step whose step_complete returned False
    build_thread: str | None = None


STATE = State()


class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = _Severity
    INTERNAL_ERROR = _Severity.INTERNAL_ERROR
    ERROR = _Severity.ERROR
    WARNING = _Severity.WARNING
    INFO = _Severity.INFO
    VERBOSE = _Severity.VERBOSE

    def __init__(self) -> None:
        pass


class IProgressMonitor:
    def __init__(self) -> None:
        pass


class NetworkDefinitionCreationFlag:
    STRONGLY_TYPED = 1


class MemoryPoolType:
    WORKSPACE = 0


class OnnxParserFlag:
    pass


class DeviceType:
    GPU = "GPU"
    DLA = "DLA"


class BuilderFlag:
    GPU_FALLBACK = 7


def Dims(values: list[int]) -> tuple[int, ...]:  # TensorRT's own name
    return tuple(values)


class _Tensor:
    name = "image"
    shape = (-1, -1, -1, 3)


class _Network:
    num_inputs = 1
    num_outputs = 1

    def get_input(self, index: int) -> _Tensor:
        return _Tensor()


class OnnxParser:
    num_errors = 0

    def __init__(self, network: _Network, logger: ILogger) -> None:
        self.network = network

    def parse_from_file(self, path: str) -> bool:
        return True


class _TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> memoryview:
        return memoryview(self.data)


class _Profile:
    def set_shape(self, name: str, low: Any, best: Any, high: Any) -> None:
        self.shapes = (name, low, best, high)


class _Config:
    def __init__(self) -> None:
        self.progress_monitor: Any = None
        self.cache: _TimingCache | None = None
        self.profiles: list[_Profile] = []

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_memory_pool_limit(self, pool: int, size: int) -> None:
        self.workspace = size

    def create_timing_cache(self, data: bytes) -> _TimingCache:
        STATE.timing_caches_given.append(bytes(data))
        return _TimingCache(bytes(data))

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return self.cache

    def set_flag(self, flag: int) -> None:
        pass


class Builder:
    num_DLA_cores = 0

    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def create_network(self, flags: int) -> _Network:
        return _Network()

    def create_builder_config(self) -> _Config:
        return _Config()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> memoryview | None:
        import threading

        STATE.build_thread = threading.current_thread().name
        monitor = config.progress_monitor
        if STATE.extra_calls is not None:
            STATE.extra_calls(monitor, self.logger)
        monitor.phase_start(PHASE, None, STATE.steps)
        for step in range(STATE.steps):
            time.sleep(STATE.step_delay_s)
            if STATE.on_step is not None:
                STATE.on_step(step)
            if not monitor.step_complete(PHASE, step):
                STATE.cancelled_at = step
                monitor.phase_finish(PHASE)
                self.logger.log(ILogger.ERROR, "the build was cancelled by the progress monitor")
                return None
        monitor.phase_finish(PHASE)
        if config.cache is not None:
            config.cache.data += TIMED
        return memoryview(b"stand-in serialized engine")
