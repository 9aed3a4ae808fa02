"""Inference backends behind one small Protocol; each module imports its heavy library lazily."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Runs a model file on one device.

    `run` takes the model's input batch (uint8 NHWC for a fused graph, float32
    NCHW for an unfused one) and returns its single output as a host array.
    `timings` holds the stages of the last `run` in ms (at least "infer"; GPU
    backends split it into "h2d", "compute" and "d2h").
    """

    name: str
    device: str
    timings: dict[str, float]

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def max_batch_shape(self) -> tuple[int, ...] | None:
        """The largest input shape the model accepts (an engine's profile), or None if unbounded."""
        ...

    def close(self) -> None: ...
