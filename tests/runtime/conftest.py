"""Runtime test helpers: a stand-in backend for what ONNX Runtime on a CPU cannot show, and a 16-bit PNG writer."""

from __future__ import annotations

import os
import shutil
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import segrt
from segrt.meta import ModelCard
from segrt.segmenter import Segmenter

STAND_IN_CARD = ModelCard(
    model="stand-in",
    classes=("background", "odd", "even"),
    palette=((0, 0, 0), (200, 0, 0), (0, 200, 0)),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    input_size=(32, 32),
)


class StandInBackend:
    """A fused-graph backend without a model, for what a real CPU session cannot show.

    Labels are the red channel mod 3, so a test can tell which image each label map
    came from. `limit` plays an engine's largest profile shape; each run sleeps
    `delay_s` and records how many callers were inside `run` at once.
    """

    name = "stand-in"
    device = "cpu"

    def __init__(self, limit: tuple[int, ...] | None = None, delay_s: float = 0.0) -> None:
        self.limit = limit
        self.delay_s = delay_s
        self.batch_shapes: list[tuple[int, ...]] = []
        self.timings: dict[str, float] = {}
        self.closed = False
        self.most_inside = 0
        self._inside = 0
        self._count_lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._count_lock:
            self._inside += 1
            self.most_inside = max(self.most_inside, self._inside)
        try:
            time.sleep(self.delay_s)
            self.batch_shapes.append(tuple(batch.shape))
            self.timings = {"infer": self.delay_s * 1e3}
            return (batch[..., 0] % 3).astype(np.uint8)
        finally:
            with self._count_lock:
                self._inside -= 1

    def max_batch_shape(self) -> tuple[int, ...] | None:
        return self.limit

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def stand_in():
    """stand_in(limit=None, delay_s=0.0) -> a Segmenter over a StandInBackend (its `.backend`)."""

    def make(limit: tuple[int, ...] | None = None, delay_s: float = 0.0) -> Segmenter:
        return Segmenter(StandInBackend(limit, delay_s), STAND_IN_CARD, Path("stand-in.engine"))

    return make


@pytest.fixture
def stand_in_load(monkeypatch, stand_in):
    """Make `segrt.load` return a stand-in Segmenter; returns it, and `loads` counts the calls."""
    seg = stand_in(limit=(1, 64, 64, 3))
    seg.loads = 0  # type: ignore[attr-defined]

    def load(*args: object, **kwargs: object) -> Segmenter:
        seg.loads += 1  # type: ignore[attr-defined]
        return seg

    monkeypatch.setattr(segrt, "load", load)
    return seg


def write_png16(path: Path, array: np.ndarray) -> Path:
    """Write an H x W x 3|4 uint16 array as a 16-bit-per-channel PNG (Pillow cannot write 48/64-bit RGB)."""
    height, width, channels = array.shape
    colour_type = {3: 2, 4: 6}[channels]  # RGB, RGBA

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(height))  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def png16():
    """The `write_png16` function, for tests that need a real 16-bit-per-channel PNG."""
    return write_png16


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, for the live view's page tests. `.ci/run` installs it and sets
    SEGRT_BROWSER_REQUIRED=1, which makes its absence a failure; elsewhere (the README's test command on a machine
    without it) those tests are skipped, saying what to install."""
    path = shutil.which("chromium")
    if path is None:
        message = "chromium is not on PATH: the live view is tested in a real browser; apt-get install chromium"
        if os.environ.get("SEGRT_BROWSER_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path
