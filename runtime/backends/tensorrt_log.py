"""TensorRT's log, as segexport and segrt hear it: a logger for either library that keeps the errors for exception
texts and hands every line on (as plain text, never markup), and TensorRT's warnings as Python warnings."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any


def tensorrt_logger(trt: Any, emit: Callable[[Any, str], None], hint: str = "") -> Any:
    """A logger for the TensorRT module `trt` (tensorrt or tensorrt_rtx) that keeps the errors (for exception
    texts) and hands every message to `emit`."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            # Called from TensorRT's C++ (noexcept, maybe from its threads): nothing may escape, not
            # even a warning turned into an error by `-W error`.
            with contextlib.suppress(Exception):  # a log line is not worth an abort
                if int(severity) <= int(trt.ILogger.ERROR):
                    self.errors.append(msg)
                emit(severity, msg)

        def last_error(self) -> str:
            return self.errors[-1] if self.errors else f"no message from TensorRT{hint}"

    return Logger()


def warn_on_warnings(severity: Any, msg: str) -> None:
    if int(severity) == _WARNING:
        warnings.warn(f"TensorRT: {msg}", RuntimeWarning, stacklevel=2)


_WARNING = 2  # ILogger.Severity.WARNING, the same value in TensorRT and TensorRT-RTX
