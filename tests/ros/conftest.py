"""A real ROS 2 graph (rclpy from the pip wheels, or a sourced ROS 2) for the segros node's tests.

`.ci/run` runs these in `.venv-ros` (the ROS 2 wheels and `.[ros]`, no torch) with SEGROS_REQUIRED=1, which
turns a missing rclpy into a failure instead of a skip; step 1's venv stays free of ROS. Each run gets a ROS
domain of its own and stays on this host, so parallel runs do not hear each other.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

# before rclpy is imported: a domain per run (0-101 are valid everywhere), discovery on this host only
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")  # Humble's switch
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Iron and later


def _rclpy_problem() -> str | None:
    try:
        import diagnostic_msgs.msg  # noqa: F401
        import rclpy  # noqa: F401
        import sensor_msgs.msg  # noqa: F401
        import std_msgs.msg  # noqa: F401
    except Exception as exc:  # ImportError, or OSError from a missing RMW library
        return f"{type(exc).__name__}: {exc}"
    return None


PROBLEM = _rclpy_problem()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PROBLEM is None:
        return
    if os.environ.get("SEGROS_REQUIRED") == "1":
        raise pytest.UsageError(f"SEGROS_REQUIRED=1 but rclpy cannot be used here: {PROBLEM}")
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"no rclpy ({PROBLEM}); .ci/run runs these in .venv-ros")
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(skip)
