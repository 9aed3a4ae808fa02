"""Latency statistics and the host timer every figure in the toolkit is measured with."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples in milliseconds; `fps` counts frames, not calls."""

    count: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float
    fps: float

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], frames_per_sample: int = 1) -> LatencyStats:
        values = np.asarray(samples_ms, dtype=np.float64)
        if values.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        mean = float(values.mean())
        return cls(
            count=int(values.size),
            mean=mean,
            std=float(values.std()),
            min=float(values.min()),
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            max=float(values.max()),
            fps=1000.0 * frames_per_sample / mean if mean > 0 else float("inf"),
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@contextmanager
def stopwatch(into: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the block, in ms, to `into[key]`."""
    start = time.perf_counter_ns()
    try:
        yield
    finally:
        into[key] = into.get(key, 0.0) + (time.perf_counter_ns() - start) / 1e6
