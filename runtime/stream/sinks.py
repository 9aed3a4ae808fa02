"""Where a segmented frame goes. Every sink has one small protocol (`Sink`): the pipeline's writer stage calls
`write(frame, labels, overlay)` on each of a source's sinks, with the overlay made once when any of them wants
it, and `close()` at the end, also after Ctrl-C (a video is finalized there).

Sinks here: a PNG/JPEG per frame (`FrameFilesSink`), the --stats CSV rows (`StatsSink`), a live view
(`PublishSink`); videos are in `segrt.stream.video_sink`. A ROS topic is one more class with these members.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segrt.class_stats import ClassStats
from segrt.image import write_confidence_png, write_image, write_labels_png
from segrt.sources import output_path
from segrt.stream.frame import Frame
from segrt.stream.paint import Painter


class Sink(Protocol):
    """One output of one source. `needs_overlay`: whether `write` wants the overlay (else it gets None).
    `files`: how many files it has written (or will have, once closed). `write` raises SegError when it cannot
    write; the pipeline then reports it and stops calling that sink."""

    needs_overlay: bool
    files: int

    def write(self, frame: Frame, labels: np.ndarray, overlay: np.ndarray | None) -> None: ...

    def close(self) -> None: ...


class FrameFilesSink:
    """Today's outputs: per frame a palette PNG of the labels, a JPEG overlay, a PNG colour map and a grey PNG
    confidence map, named by `frame.out_stem` (an image's name; a video's frames as NAME/000123)."""

    def __init__(self, out: Path, kinds: tuple[str, ...], painter: Painter, palette: object) -> None:
        self.out, self.kinds, self.painter, self.palette = out, kinds, painter, palette
        self.needs_overlay = "overlay" in kinds
        self.files = 0

    def write(self, frame: Frame, labels: np.ndarray, overlay: np.ndarray | None) -> None:
        if "labels" in self.kinds:
            write_labels_png(output_path(self.out, frame.out_stem, "labels"), labels, self.palette)
            self.files += 1
        if "overlay" in self.kinds:
            assert overlay is not None
            write_image(output_path(self.out, frame.out_stem, "overlay"), overlay)
            self.files += 1
        if "color" in self.kinds:
            write_image(output_path(self.out, frame.out_stem, "color"), self.painter.colorize(labels))
            self.files += 1
        if "confidence" in self.kinds:
            assert frame.confidence is not None
            write_confidence_png(output_path(self.out, frame.out_stem, "confidence"), frame.confidence)
            self.files += 1

    def close(self) -> None:
        pass


class StatsSink:
    """A frame's class shares as one row of the run's --stats CSV (shared by every source's StatsSink); a
    stream's frames are named SOURCE#INDEX with their time, an image by its file."""

    needs_overlay = False
    files = 0

    def __init__(self, stats: ClassStats, stream: bool) -> None:
        self.stats, self.stream = stats, stream

    def write(self, frame: Frame, labels: np.ndarray, overlay: np.ndarray | None) -> None:
        if self.stream:
            self.stats.add(f"{frame.source}#{frame.index}", labels, frame.index, frame.time_s)
        else:
            self.stats.add(frame.source, labels)

    def close(self) -> None:
        pass


class PublishSink:
    """Hands each overlay to a live view: anything with `publish(source_name, overlay_rgb, stats)` that never
    blocks (segrt.view's ViewServer). `stats`: frames/s over the last second, read-to-published latency (ms),
    and each class's share of the frame."""

    needs_overlay = True
    files = 0

    def __init__(self, server: Any, name: str, classes: Sequence[str], dropped: Callable[[], int] = lambda: 0) -> None:
        self.server, self.name, self.classes, self.dropped = server, name, list(classes), dropped
        self._times: deque[int] = deque()

    def write(self, frame: Frame, labels: np.ndarray, overlay: np.ndarray | None) -> None:
        now = time.monotonic_ns()
        self._times.append(now)
        while now - self._times[0] > 1_000_000_000:
            self._times.popleft()
        counts = np.bincount(labels.ravel(), minlength=len(self.classes))[: len(self.classes)]
        shares = {name: float(count) / labels.size for name, count in zip(self.classes, counts, strict=True)}
        stats = {"fps": float(len(self._times)), "latency_ms": (now - frame.read_ns) / 1e6, "dropped": self.dropped(),
                 "class_shares": shares, "frame": frame.index}  # fmt: skip
        self.server.publish(self.name, overlay, stats)

    def close(self) -> None:
        pass
