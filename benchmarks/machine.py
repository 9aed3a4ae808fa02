"""The machine and software a run measured: what a reader needs to judge or repeat the figures."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# CPU features that decide how fast FP32/INT8 graphs run on the host.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "asimddp", "sve")
PACKAGES = ("segexport", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "tensorrt", "onnx")


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


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "torch" in sys.modules:  # the CUDA build torch was compiled against, once torch is loaded anyway
        found["torch_cuda"] = str(sys.modules["torch"].version.cuda)
    return found


def gpu_info() -> dict[str, Any]:
    """GPU names, driver and CUDA driver version through NVML, or why there are none."""
    try:
        import pynvml
    except ImportError:
        return {"absent": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"absent": f"no NVIDIA driver answers NVML ({exc})"}
    try:
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            devices.append({"name": _text(pynvml.nvmlDeviceGetName(handle)), "memory_gb": round(memory / 1e9, 1)})
        return {
            "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
            "devices": devices,
        }
    finally:
        pynvml.nvmlShutdown()


def git_commit() -> dict[str, Any] | None:
    """The commit of the segbench source that ran, and whether the tree had uncommitted changes."""
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
    return {"commit": commit, "dirty": bool(dirty)}


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
