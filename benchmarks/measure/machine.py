"""The machine and software a run measured: what a reader needs to judge or repeat the figures."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# CPU features that decide how fast FP32/INT8 graphs run on the host.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "asimddp", "sve")
PACKAGES = ("segexport", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "onnx", "cuda-python",
            "cuda-bindings", "nvidia-ml-py")  # fmt: skip


def environment() -> dict[str, Any]:
    """CPU model, cores, memory, GPU, driver, CUDA, library versions and the git commit."""
    import psutil

    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "jetson": _read(Path("/proc/device-tree/model")) if Path("/etc/nv_tegra_release").exists() else None,
        "gpu": gpu_info(),
        "versions": versions(),
        "onnxruntime_providers": _ort_providers(),
        "git": git_commit(),
        "argv": sys.argv,
    }


class OtherLoad:
    """How much CPU other processes took while the run measured: busy neighbours inflate every timing.

    The machine's non-idle CPU time minus this process's (and its children's) over the
    run, as a share of the cores' wall time. Read by the report, which warns above 10 %.
    """

    def __init__(self) -> None:
        self.start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float]:
        import time

        import psutil

        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        own = psutil.Process().cpu_times()
        return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system

    def share(self) -> float:
        """Other processes' CPU use since construction, 0..1 of all cores."""
        wall0, busy0, own0 = self.start
        wall1, busy1, own1 = self._snapshot()
        cores = os.cpu_count() or 1
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(wall1 - wall0, 1e-9) / cores)


ABSENT = "absent"  # the version recorded for a package that is not installed: said, never left out
# TensorRT's pip wheels name their distribution after the CUDA major (the `tensorrt` one is a meta package
# that may be missing); JetPack installs the module without any distribution metadata.
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_libs", "tensorrt-cu13-libs",
                          "tensorrt-cu12-libs")  # fmt: skip


def versions() -> dict[str, str]:
    """The version of every package the figures depend on, "absent" for those not installed."""
    found = {name: _distribution_version(name) or ABSENT for name in PACKAGES}
    found["tensorrt"] = tensorrt_version()
    if "torch" in sys.modules:  # the CUDA build torch was compiled against, once torch is loaded anyway
        found["torch_cuda"] = str(sys.modules["torch"].version.cuda)
    return found


def tensorrt_version() -> str:
    """TensorRT's version from whichever wheel installed it, else from the module itself (JetPack), else "absent"."""
    for name in TENSORRT_DISTRIBUTIONS:
        version = _distribution_version(name)
        if version:
            return version if name == "tensorrt" else f"{version} ({name})"
    if importlib.util.find_spec("tensorrt") is None:
        return ABSENT
    try:
        import tensorrt
    except Exception as exc:  # a module whose native libraries fail to load: say so rather than lose the run
        return f"{ABSENT} (import tensorrt failed: {type(exc).__name__}: {exc})"
    return f"{getattr(tensorrt, '__version__', 'unknown')} (import tensorrt)"


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def gpu_info() -> dict[str, Any]:
    """GPU names, driver and CUDA driver version through NVML, or why there are none.

    Each NVML query is guarded on its own: one a driver refuses is recorded as
    {"absent": reason}, and the others are still read (this runs after every case).
    """
    try:
        import pynvml
    except ImportError:
        return {"absent": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"absent": f"no NVIDIA driver answers NVML ({exc})"}
    try:
        cuda = _nvml(pynvml, pynvml.nvmlSystemGetCudaDriverVersion)
        count = _nvml(pynvml, pynvml.nvmlDeviceGetCount)
        driver = _nvml(pynvml, pynvml.nvmlSystemGetDriverVersion)
        return {
            "driver": driver if isinstance(driver, dict) else _text(driver),
            "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else cuda,
            "devices": [_gpu_device(pynvml, index) for index in range(count)] if isinstance(count, int) else count,
        }
    finally:
        _nvml(pynvml, pynvml.nvmlShutdown)


def _gpu_device(pynvml: Any, index: int) -> dict[str, Any]:
    handle = _nvml(pynvml, pynvml.nvmlDeviceGetHandleByIndex, index)
    if isinstance(handle, dict):
        return {"index": index, "name": handle}
    name = _nvml(pynvml, pynvml.nvmlDeviceGetName, handle)
    memory = _nvml(pynvml, pynvml.nvmlDeviceGetMemoryInfo, handle)
    return {
        "index": index,
        "name": name if isinstance(name, dict) else _text(name),
        "memory_gb": memory if isinstance(memory, dict) else round(memory.total / 1e9, 1),
    }


def _nvml(pynvml: Any, query: Any, *args: Any) -> Any:
    """One NVML query's answer, or {"absent": reason} when the driver refuses it."""
    try:
        return query(*args)
    except pynvml.NVMLError as exc:
        return {"absent": f"NVML {query.__name__}: {exc}"}


def git_commit() -> dict[str, Any] | None:
    """The commit of the segbench source that ran, and whether the tree had uncommitted changes.

    Committed results (benchmarks/results/) do not count: a run writing into its own committed
    folder (its export log first) would otherwise call its own source uncommitted.
    """
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": any(source_changed(line) for line in dirty.splitlines())}


def source_changed(porcelain_line: str) -> bool:
    """Whether one `git status --porcelain` line is a change outside the committed results."""
    path = porcelain_line[3:].split(" -> ")[-1].strip('"')
    return not path.startswith("benchmarks/results/")


def _ort_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def _cpu_model() -> str:
    info = _read(Path("/proc/cpuinfo")) or ""
    for line in info.splitlines():
        if line.lower().startswith(("model name", "hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    info = _read(Path("/proc/cpuinfo")) or ""
    for line in info.splitlines():
        if line.lower().startswith(("flags", "features")):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in CPU_FLAGS if flag in present]
    return []


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
