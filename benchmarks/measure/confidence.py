"""What a fused graph's confidence output (segexport --confidence) costs: the case's call, labels and confidence map,
alternated with the same model's labels-only graph on the same backend, so both see one load.

A graph with the output computes it whether a caller fetches it or not (ONNX Runtime runs every node), so the
reference is the graph exported without it, not the same graph asked for its labels alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from segbench.measure.timing import outside_share, time_alternating


def measure_confidence_cost(
    with_confidence: Callable[[], object],
    labels_only: Callable[[], object],
    *,
    iterations: int,
    min_seconds: float | None,
    seconds: float | None,
) -> dict[str, Any]:
    """Both calls' p50s, alternated in blocks, the difference (the map's cost, ms) and its share of the call with
    a 95 % interval (`share_interval` spanning 0: not told apart from the noise)."""
    labels_only()  # warm: its first call allocates
    timed = time_alternating(
        with_confidence, labels_only, iterations=iterations, min_seconds=min_seconds, seconds=seconds
    )
    both, alone = float(np.median(timed.flat(0))), float(np.median(timed.flat(1)))
    share = outside_share(timed.first_ms, timed.second_ms)  # 1 - labels-only / with the map
    return {
        "with_confidence_p50_ms": both,
        "labels_only_p50_ms": alone,
        "cost_ms": both - alone,
        "share": share["share"],
        "share_interval": [share["low"], share["high"]],
        "rounds": share["rounds"],
    }
