"""What the GPU tests share: the GPU they run on, or one skip that says why there is none (imported by name:
pytest puts tests/gpu/ on sys.path for its test modules)."""

from __future__ import annotations

import pytest


def usable_gpu():
    """This machine's CUDA device 0 as segrt sees it (name, compute capability), or skip the module saying why."""
    from segrt.backends import tensorrt as backend
    from segrt.errors import SegError

    if backend.cudart is None:
        pytest.skip("cuda-python is not installed", allow_module_level=True)
    try:
        return backend.gpu_info(0)
    except SegError as exc:
        pytest.skip(f"no usable CUDA GPU: {exc}", allow_module_level=True)
