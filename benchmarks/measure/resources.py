"""What a case costs besides time: peak host memory, device memory, GPU power, clocks and energy per frame.

A background thread samples every `interval` seconds while the case loads, warms up
and runs: RSS through psutil always; device memory, power, SM clock and the energy
counter through NVML (nvidia-ml-py) where a driver answers; on a Jetson, the board's
input power and GPU clock from `tegrastats`. Each source that the machine lacks is
reported as absent with the reason, never as zero.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from segbench.measure.timing import Window

MB = 1024 * 1024


@dataclass
class _Series:
    """Timestamped samples (perf_counter_ns, value) of one quantity."""

    points: list[tuple[int, float]] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.points.append((time.perf_counter_ns(), float(value)))

    def peak(self) -> float | None:
        return max((v for _, v in self.points), default=None)

    def mean_within(self, window: Window) -> float | None:
        inside = [v for t, v in self.points if window.start_ns <= t <= window.end_ns]
        return sum(inside) / len(inside) if inside else None


class ResourceSampler:
    """Use as `with ResourceSampler() as sampler:` around a case; then `sampler.summary(window)`."""

    def __init__(self, *, interval: float = 0.02, gpu_index: int | None = None) -> None:
        import psutil

        self.interval = interval
        self.process = psutil.Process()
        self.rss = _Series()
        self.gpu = _Nvml(gpu_index) if gpu_index is not None else None
        self.jetson = _Tegrastats.start() if gpu_index is not None else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="segbench-sampler", daemon=True)
        self.rss_before = self.process.memory_info().rss

    def __enter__(self) -> ResourceSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        if self.jetson:
            self.jetson.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        self.rss.add(self.process.memory_info().rss)
        if self.gpu and self.gpu.handle is not None:
            self.gpu.sample()

    def summary(self, window: Window) -> dict[str, Any]:
        """Peak RSS (and what the case added to it), device memory, power and energy over `window`."""
        peak = self.rss.peak() or float(self.rss_before)
        host = {"rss_peak_mb": peak / MB, "rss_added_mb": (peak - self.rss_before) / MB}
        cpu_only = {"absent": "a CPU case: no GPU to sample; CPU power is not measured"}
        gpu = self.gpu.summary(window) if self.gpu else cpu_only
        if self.jetson:
            gpu["tegrastats"] = self.jetson.summary(window)
        return {"host": host, "device": gpu}


class _Nvml:
    """NVML readings of one GPU; `reason` says why there are none."""

    def __init__(self, index: int) -> None:
        self.handle: Any = None
        self.reason = ""
        self.memory, self.power_w, self.sm_mhz = _Series(), _Series(), _Series()
        self.energy_mj = _Series()
        try:
            import pynvml
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install 'segexport[bench]')"
            return
        try:
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.memory_before = pynvml.nvmlDeviceGetMemoryInfo(handle).used
        except pynvml.NVMLError as exc:
            self.reason = f"NVML is not available here ({exc})"
            return
        self.nvml, self.handle = pynvml, handle

    def sample(self) -> None:
        """One reading of each counter; one the board refuses this time is skipped, not fatal to the sampler thread."""
        nvml, handle = self.nvml, self.handle
        for series, read in (
            (self.memory, lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used),
            (self.power_w, lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
            (self.sm_mhz, lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            (self.energy_mj, lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle)),
        ):
            try:
                series.add(read())
            except nvml.NVMLError:  # not every board reports every counter
                continue

    def summary(self, window: Window) -> dict[str, Any]:
        if self.handle is None:
            return {"absent": self.reason}
        peak = self.memory.peak() or self.memory_before
        result: dict[str, Any] = {
            "memory_peak_mb": peak / MB,
            "memory_added_mb": (peak - self.memory_before) / MB,
            "power_mean_w": self.power_w.mean_within(window),
            "sm_clock_mean_mhz": self.sm_mhz.mean_within(window),
        }
        inside = [v for t, v in self.energy_mj.points if window.start_ns <= t <= window.end_ns]
        frames = max(window.frames, 1)
        seconds = (window.end_ns - window.start_ns) / 1e9
        if len(inside) >= 2:  # the board's energy counter: exact, not an integral of samples
            result["energy_per_frame_j"] = (inside[-1] - inside[0]) / 1000.0 / frames
        elif result["power_mean_w"] is not None:
            result["energy_per_frame_j"] = result["power_mean_w"] * seconds / frames
        return result


TEGRASTATS_POWER = re.compile(r"\b(?:VDD_IN|POM_5V_IN) (\d+)(?:mW)?/")
TEGRASTATS_GPU = re.compile(r"GR3D_FREQ (\d+)%@\[?(\d+)")


def parse_tegrastats(line: str) -> dict[str, float]:
    """Board input power (W), GPU load (%) and clock (MHz) from one tegrastats line, where it has them.

    Orin prints "VDD_IN 5000mW/5000mW ... GR3D_FREQ 0%@[1300]", Xavier and Nano
    "POM_5V_IN 2000/2000 ... GR3D_FREQ 0%@921".
    """
    found: dict[str, float] = {}
    if match := TEGRASTATS_POWER.search(line):
        found["power_w"] = int(match.group(1)) / 1000.0
    if match := TEGRASTATS_GPU.search(line):
        found["gpu_load"], found["gpu_mhz"] = int(match.group(1)), int(match.group(2))
    return found


class _Tegrastats:
    """A `tegrastats` child process read line by line (Jetson boards); stopped with the case."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.series = {"power_w": _Series(), "gpu_mhz": _Series(), "gpu_load": _Series()}
        self._thread = threading.Thread(target=self._read, name="segbench-tegrastats", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls) -> _Tegrastats | None:
        path = shutil.which("tegrastats")
        if path is None:
            return None
        process = subprocess.Popen(
            [path, "--interval", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        return cls(process)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            for name, value in parse_tegrastats(line).items():
                self.series[name].add(value)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=5)
        self._thread.join(timeout=5)

    def summary(self, window: Window) -> dict[str, Any]:
        power = self.series["power_w"].mean_within(window)
        seconds = (window.end_ns - window.start_ns) / 1e9
        return {
            "board_power_mean_w": power,
            "gpu_clock_mean_mhz": self.series["gpu_mhz"].mean_within(window),
            "gpu_load_mean_pct": self.series["gpu_load"].mean_within(window),
            "energy_per_frame_j": power * seconds / max(window.frames, 1) if power is not None else None,
        }
