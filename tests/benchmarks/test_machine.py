"""The run's record of its machine: other processes' CPU use, which inflates timings, is measured and reported."""

import importlib.util
import os
import subprocess
import sys
import time
import types
from importlib import metadata

import psutil

from segbench.measure.machine import PACKAGES, OtherLoad, gpu_info, tensorrt_version, versions
from segbench.report.markdown import machine_line

BURN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
TICK_S = 0.02  # the kernel's CPU accounting counts in ticks (10 ms); two of them per reading


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def test_another_process_burning_a_core_is_counted_and_this_ones_own_work_is_not() -> None:
    """Compared with what the other process and this one were really given, not with fixed shares of a core.

    On a busy machine a burning neighbour gets less than a core and this process's own
    loop less than a second of CPU; other load comes and goes between any two windows.
    So each figure is checked against CPU time measured for that process in the same
    window: the neighbour's must all be counted (more is other load), this process's none.
    """
    cores = os.cpu_count() or 1
    load, started = OtherLoad(), time.monotonic()
    neighbour = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=60)])
    try:
        watched = psutil.Process(neighbour.pid)
        deadline = time.monotonic() + 30
        while _cpu_seconds(watched) < 0.5 and time.monotonic() < deadline:  # half a CPU second, however long it takes
            time.sleep(0.05)
        burned = _cpu_seconds(watched)
        other = load.share()  # before the neighbour ends: its CPU time is not this process's children's yet
        wall = time.monotonic() - started
    finally:
        neighbour.kill()
        neighbour.wait()
    assert burned >= 0.5, "the neighbour got no CPU in 30 s"
    assert other * wall * cores >= burned - TICK_S  # every CPU second the neighbour used is counted as other load

    psutil.cpu_percent(percpu=False)  # start psutil's own reading of the machine's busy share
    load, started, own_before = OtherLoad(), time.monotonic(), time.process_time()
    while time.process_time() - own_before < 0.5:  # half a CPU second of this process's own work
        pass
    own = time.process_time() - own_before
    other = load.share()
    busy = psutil.cpu_percent(percpu=False) / 100  # everything the machine ran meanwhile, this process included
    wall = time.monotonic() - started
    own_share = own / wall / cores
    # Counted as other load, this process's work would make `other` reach `busy`; subtracted, it stays below by it.
    assert other <= busy - own_share + 2 * TICK_S / wall / cores + 0.05 * own_share


def test_machine_line_reports_other_load_and_warns_when_busy() -> None:
    env = {"cpu": "AMD EPYC", "cores_usable": 2, "gpu": {}, "git": {"commit": "abcdef123456", "dirty": False}}
    assert machine_line(env) == "AMD EPYC, 2 cores usable; no GPU; commit abcdef1234"
    quiet = machine_line({**env, "other_processes_cpu": 0.02})
    assert quiet.endswith("other processes used 2 % of the CPU during the run")
    busy = machine_line({**env, "other_processes_cpu": 0.35})
    assert "other processes used 35 % of the CPU" in busy and "busy machine" in busy


class FakeNvml(types.ModuleType):
    """An NVML whose driver answers some queries and refuses others, as a half-broken driver does."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.shut_down = False

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shut_down = True
        raise self.NVMLError("Uninitialized")

    def nvmlSystemGetDriverVersion(self) -> str:
        raise self.NVMLError("Not Supported")

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        if handle == 1:
            raise self.NVMLError("GPU is lost")
        return b"NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(total=141e9, used=1e9)


def test_each_refused_nvml_query_is_recorded_as_absent_and_the_rest_are_read(monkeypatch) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpu = gpu_info()
    assert gpu["driver"] == {"absent": "NVML nvmlSystemGetDriverVersion: Not Supported"}
    assert gpu["cuda_driver"] == "12.4"
    assert gpu["devices"][0] == {"index": 0, "name": "NVIDIA H200", "memory_gb": 141.0}
    assert gpu["devices"][1]["name"] == {"absent": "NVML nvmlDeviceGetName: GPU is lost"}
    assert nvml.shut_down
    line = machine_line({"cpu": "x", "cores_usable": 2, "gpu": gpu})
    assert line.startswith("x, 2 cores usable; NVIDIA H200, GPU 1;")


def test_every_package_is_named_with_its_version_or_absent(monkeypatch) -> None:
    real = metadata.version

    def version(name: str) -> str:
        if name in ("onnxruntime-gpu", "cuda-python") or name.startswith("tensorrt"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    found = versions()
    assert set(PACKAGES) | {"tensorrt"} <= set(found)
    assert found["onnxruntime-gpu"] == found["cuda-python"] == found["tensorrt"] == "absent"
    assert found["numpy"] == real("numpy")


def test_tensorrt_version_comes_from_the_cuda_named_wheel_or_the_module(monkeypatch, tmp_path) -> None:
    real = metadata.version

    def only(distribution: str):
        def version(name: str) -> str:
            if name == distribution:
                return "10.13.3.9"
            if name.startswith("tensorrt"):
                raise metadata.PackageNotFoundError(name)
            return real(name)

        return version

    monkeypatch.setattr(metadata, "version", only("tensorrt-cu12"))
    assert tensorrt_version() == "10.13.3.9 (tensorrt-cu12)"
    monkeypatch.setattr(metadata, "version", only("nothing"))
    (tmp_path / "tensorrt.py").write_text('__version__ = "10.3.0"\n')  # JetPack: a module, no wheel metadata
    monkeypatch.syspath_prepend(str(tmp_path))
    real_module = sys.modules.pop("tensorrt", None)
    try:
        assert tensorrt_version() == "10.3.0 (import tensorrt)"
    finally:  # the stand-in must not stay importable: later tests ask whether TensorRT is here
        sys.modules.pop("tensorrt", None)
        if real_module is not None:
            sys.modules["tensorrt"] = real_module


def test_only_changes_outside_the_committed_results_make_a_run_dirty() -> None:
    from segbench.measure.machine import source_changed

    assert not source_changed(" M benchmarks/results/cpu-2core/export.log")
    assert not source_changed("R  benchmarks/results/a.json -> benchmarks/results/b.json")
    assert source_changed(" M benchmarks/cases/runner.py")
    assert source_changed("M  runtime/segmenter.py")
