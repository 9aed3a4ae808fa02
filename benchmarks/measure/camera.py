"""A case at camera rate: frames arrive every 1/fps seconds whether or not the pipeline is ready.

A robot does not feed its segmenter back to back as the latency loop does: a camera
delivers frames at a fixed rate, and the loop that consumes them takes the newest
frame each time it is free, dropping the ones it missed (what a camera driver with a
one-frame buffer does). What matters there is not the median latency but how many
frames get no label map in time. Each frame's deadline is the arrival of the next one:

- **dropped**: frames that arrived while the pipeline was busy and were never processed;
- **late**: processed frames whose labels were ready after the next frame had arrived;
- **deadline misses**: (dropped + late) / frames the camera delivered;
- **capture to labels**: from a frame's arrival to its label map, waiting included.

One thread, no real camera: the schedule is computed from the clock, so the figures
depend only on the pipeline's own times and not on a driver.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_SECONDS = 10.0


@dataclass
class CameraRun:
    """What happened to every frame of a paced run."""

    fps: float
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)  # capture to labels, per processed frame
    late: int = 0

    @property
    def offered(self) -> int:
        """Frames the camera delivered during the run (arrivals at 0, 1/fps, ... before `seconds`)."""
        return math.ceil(self.seconds * self.fps - 1e-9)

    @property
    def processed(self) -> int:
        return len(self.latencies_ms)

    def as_dict(self) -> dict[str, Any]:
        dropped = self.offered - self.processed
        latencies = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "fps": self.fps,
            "seconds": self.seconds,
            "frames_offered": self.offered,
            "frames_processed": self.processed,
            "frames_dropped": dropped,
            "frames_late": self.late,
            "deadline_miss_share": (dropped + self.late) / self.offered,
            "processed_fps": self.processed / self.seconds,
            "capture_to_labels_ms": {
                "p50": float(np.percentile(latencies, 50)),
                "p99": float(np.percentile(latencies, 99)),
                "max": float(latencies.max()),
            },
            "latencies_ms": self.latencies_ms,
        }


def run_at_camera_rate(
    call: Callable[[], object],
    fps: float,
    seconds: float = DEFAULT_SECONDS,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> CameraRun:
    """Feed `call` (one frame to labels) the newest frame each time it is free, for `seconds` of frames at `fps`."""
    if fps <= 0 or seconds <= 0:
        raise ValueError("fps and seconds must be positive")
    period = 1.0 / fps
    run = CameraRun(fps=fps, seconds=seconds)
    start = clock()
    last = -1  # index of the last frame processed
    while True:
        now = clock() - start
        newest = min(int(now / period + 1e-9), run.offered - 1)  # the frame the camera delivered most recently
        if newest <= last:
            if last == run.offered - 1:
                break  # every frame of the run has arrived and the newest one is done
            sleep(max((last + 1) * period - now, 0.0))
            continue
        call()
        done = clock() - start
        captured = newest * period
        run.latencies_ms.append((done - captured) * 1e3)
        run.late += done > captured + period
        last = newest
    return run
