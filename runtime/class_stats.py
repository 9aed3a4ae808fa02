"""segrun --stats: the share of pixels per class, summed over the run and per frame in a CSV beside the outputs.

People watch a class's area over a drive (road, free space): each row is one frame, with
its source, its index and time in a video, and the share of the frame's pixels each class
covers (classes named from the model card; --ignore-class ones left out). The CSV grows in
a temporary file and is renamed into place at the end -- after Ctrl-C too, since every row
is a whole frame -- so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from segrt.errors import SegError

CSV_NAME = "stats.csv"


class ClassStats:
    """Per-class pixel counts over the run and, with a `path`, one CSV row per frame."""

    def __init__(self, classes: Sequence[str], ignore: Collection[int] = (), path: Path | None = None) -> None:
        self.classes = list(classes)
        self.ignore = set(ignore)
        self.listed = [index for index in range(len(self.classes)) if index not in self.ignore]
        self.class_pixels = np.zeros(256, np.int64)
        self.total_pixels = 0
        self.path = path
        self.rows = 0
        self.error: str | None = None  # why the CSV could not be written, once it could not
        self._file: IO[str] | None = None
        self._tmp: Path | None = None
        if path is not None:
            self._open(path)

    def _open(self, path: Path) -> None:
        """Create the temporary CSV now, so an unwritable folder is refused before any frame is segmented."""
        if path.is_dir():
            raise SegError(f"{path}: is a folder; --stats writes its per-frame CSV there, choose another -o")
        try:
            self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            self._file = self._tmp.open("w", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["source", "frame", "time_s", "height", "width", *self.names()])
        except OSError as exc:
            self._discard()
            raise SegError(f"{path}: cannot write the --stats CSV ({exc.strerror}); choose another -o") from None

    def names(self) -> list[str]:
        return [self.classes[index] for index in self.listed]

    def add(self, source: str, labels: np.ndarray, index: int | None = None, time_s: float | None = None) -> None:
        """Count one frame's labels; write its row (a write that fails stops the CSV, never the run)."""
        counts = np.bincount(labels.ravel(), minlength=256)[:256]
        self.class_pixels += counts
        self.total_pixels += labels.size
        if self._file is None:
            return
        shares = [f"{counts[i] / labels.size:.6f}" for i in self.listed]
        when = "" if time_s is None else f"{time_s:.3f}"
        try:
            self._writer.writerow([source, "" if index is None else index, when, *labels.shape, *shares])
            self.rows += 1
        except OSError as exc:
            self.error = (
                f"{self.path}: cannot write the --stats CSV ({exc.strerror}); the frames' other outputs are written"
            )
            self._discard()

    def close(self) -> Path | None:
        """Move the CSV into place; returns its path, or None when there is none (no frame, or a failed write)."""
        if self._file is None or self._tmp is None or self.path is None:
            return None
        try:
            self._file.close()
            self._file = None
            if not self.rows:
                self._discard()
                return None
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.error = (
                f"{self.path}: cannot write the --stats CSV ({exc.strerror}); the frames' other outputs are written"
            )
            self._discard()
            return None
        return self.path

    def _discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def summary(self) -> list[tuple[str, float]]:
        """(class name, share of all pixels) for each listed class that occurred, largest first."""
        if not self.total_pixels:
            return []
        shares = self.class_pixels / self.total_pixels
        order = [i for i in np.argsort(-shares, kind="stable") if shares[i] > 0 and i not in self.ignore]
        return [(self.classes[i] if i < len(self.classes) else str(i), float(shares[i])) for i in order]
