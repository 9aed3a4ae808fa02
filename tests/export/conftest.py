"""Fixtures of the exporter's tests: a stand-in for TensorRT, so the engine step runs to its end on a CPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

STAND_IN_TENSORRT = Path(__file__).with_name("stand_in_tensorrt.py")


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh stand-in `tensorrt` module (stand_in_tensorrt.py) as `tensorrt`, and a stand-in GPU."""
    from segrt.backends import tensorrt as backend

    spec = importlib.util.spec_from_file_location("tensorrt", STAND_IN_TENSORRT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tensorrt", module)  # before it runs: its dataclasses look themselves up
    spec.loader.exec_module(module)
    monkeypatch.setattr(backend, "gpu_info", lambda device=0: backend.GpuInfo("Stand-in GPU", "8.7"))
    return module
