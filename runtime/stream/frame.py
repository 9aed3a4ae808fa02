"""The one thing every source yields and every sink takes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Frame:
    """One decoded frame: its pixels (uint8 H x W x 3 RGB), where it came from and when.

    `time_s` is the source's own clock (a video's presentation time, a message's header stamp); `read_ns` is
    this process's monotonic clock when the frame was read, from which capture-to-written latency is measured.
    `meta` carries what a sink must hand back unchanged (a ROS header, a bag message's topic and time);
    `confidence`, the model's confidence map (uint8 H x W), once segmented with it.
    """

    image: np.ndarray
    source: str  # the source's name as the user gave it (a path, a URL, a topic)
    index: int  # the frame's place in its source, from 0
    time_s: float | None = None
    out_stem: Path = Path()  # where its outputs go, relative to the output folder
    read_ns: int = field(default_factory=time.monotonic_ns)
    meta: Any = None
    confidence: np.ndarray | None = None  # set by the pipeline when --save confidence asks the model for it
