"""The one object a user holds: call it on images, get label maps."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segrt.backends import Backend
from segrt.errors import SegError
from segrt.image import check_image, postprocess, preprocess
from segrt.meta import ModelCard
from segrt.timing import stopwatch


class Segmenter:
    """Turns uint8 RGB images into uint8 label maps at each image's own resolution.

    `seg(image)` takes one H x W x 3 array and returns H x W labels; `seg(images)`
    takes a list of arrays or an N x H x W x 3 batch and returns a list or an
    N x H x W array. Images of one size run as one batch (split to fit an engine's
    profile); a list of mixed sizes runs size by size.

    The model card decides the steps: a fused graph gets the raw images, an unfused
    one gets the host pre- and post-processing of `segrt.image`. Calls are
    serialized by a lock, so one Segmenter shared by threads gives the same labels
    as serial use (a TensorRT execution context is not safe to share); for parallel
    throughput, make one Segmenter per thread. A graph exported with --confidence also
    returns its confidence maps: `labels, confidence = seg(image, confidence=True)`.
    """

    def __init__(self, backend: Backend, card: ModelCard, path: str | Path) -> None:
        self.backend = backend
        self.card = card
        self.path = Path(path)
        self.where = str(path)  # what messages name: the file, or a server's URL (a Path would fold its //)
        self.timings: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.card.palette

    def __repr__(self) -> str:
        return (
            f"Segmenter({self.path.name}, model={self.card.model}, precision={self.card.precision}, "
            f"fused={self.card.fused}, backend={self.backend.name}, device={self.backend.device})"
        )

    @property
    def has_confidence(self) -> bool:
        """Whether the graph returns a confidence map beside the labels (exported with --confidence)."""
        return self.card.confidence_name is not None

    def __call__(self, images: np.ndarray | Sequence[np.ndarray], *, confidence: bool = False) -> Any:
        """Labels of one image, a batch or a list (see the class); with `confidence=True`, (labels, confidence):
        the confidence maps shaped as the labels, uint8, round(255 x the top class's probability) (see
        `segrt.meta.ModelCard`). A graph exported without --confidence refuses `confidence=True` (SegError)."""
        if confidence:
            self.require_confidence()
        if isinstance(images, np.ndarray) and images.ndim == 3:
            labels, maps = self._run_outputs(check_image(images)[None], confidence)
            return (labels[0], maps[0]) if maps is not None else labels[0]
        if isinstance(images, np.ndarray) and images.ndim == 4:
            if len(images) == 0:
                raise SegError(f"images: empty batch, shape {tuple(images.shape)}")
            batch = np.stack([check_image(im, f"image {i}") for i, im in enumerate(images)])
            labels, maps = self._run_outputs(batch, confidence)
            return (labels, maps) if maps is not None else labels
        if isinstance(images, np.ndarray):
            raise SegError(f"image: expected H x W x 3 or N x H x W x 3, got shape {tuple(images.shape)}")
        if not isinstance(images, (list, tuple)) or not images:
            raise SegError(f"images: expected an array or a non-empty list of arrays, got {type(images).__name__}")
        checked = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        results: list[np.ndarray | None] = [None] * len(checked)
        confidences: list[np.ndarray | None] = [None] * len(checked)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(checked):
            by_shape.setdefault(image.shape, []).append(index)
        for shape in by_shape:  # every size first: a list is refused before any of it runs
            self._check_fits((1, *shape))
        for indices in by_shape.values():
            labels, maps = self._run_outputs(np.stack([checked[i] for i in indices]), confidence)
            for position, i in enumerate(indices):
                results[i] = labels[position]
                confidences[i] = maps[position] if maps is not None else None
        label_list = [r for r in results if r is not None]
        return (label_list, [c for c in confidences if c is not None]) if confidence else label_list

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 (validated) -> uint8 N x H x W; records `timings` in ms."""
        return self._run_outputs(batch, False)[0]

    def require_confidence(self) -> None:
        """A one-line SegError unless the graph returns confidence maps (segrun checks `--save confidence` with it
        before any work)."""
        if not self.card.fused:
            raise SegError(
                f"{self.where}: confidence=True needs a fused graph with a confidence output, and this one returns "
                f"logits: export the model fused with `segexport ... --confidence`"
            )
        if not self.has_confidence:
            raise SegError(
                f"{self.where}: the graph has no confidence output; export it again with `segexport ... "
                f"--confidence` (and rebuild its engine from that graph)"
            )

    def _run_outputs(self, batch: np.ndarray, confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 N x H x W labels, and the confidence maps where asked for; records `timings` in ms."""
        self._check_fits(batch.shape)
        limit = self.backend.max_batch_shape()
        if limit is not None and batch.shape[0] > limit[0]:
            parts = [self._run_outputs(batch[i : i + limit[0]], confidence) for i in range(0, len(batch), limit[0])]
            maps = [part[1] for part in parts if part[1] is not None]
            return np.concatenate([part[0] for part in parts]), (np.concatenate(maps) if confidence else None)
        height, width = batch.shape[1:3]
        timings: dict[str, float] = {}
        maps: np.ndarray | None = None
        with self._lock:
            if self.card.fused and confidence:
                labels, maps = self.backend.run_with_confidence(batch)
                timings.update(self.backend.timings)
            elif self.card.fused:
                labels = self.backend.run(batch)
                timings.update(self.backend.timings)
            else:
                with stopwatch(timings, "pre"):
                    tensor = preprocess(batch, self.card)
                logits = self.backend.run(tensor)
                timings.update(self.backend.timings)
                with stopwatch(timings, "post"):
                    labels = postprocess(logits, height, width, threshold=self.card.threshold)
            self.timings = timings
        for name, array in (("labels", labels), ("confidence map", maps)):
            if array is not None and (array.shape != batch.shape[:3] or array.dtype != np.uint8):
                raise SegError(
                    f"{self.where}: the model returned {name} {array.dtype} {tuple(array.shape)} for a "
                    f"{tuple(batch.shape)} batch; its card does not describe this graph, re-export it"
                )
        return labels, maps

    def _check_fits(self, shape: tuple[int, ...]) -> None:
        """Refuse images larger than an engine's profile (an unfused engine sees the resized tensor instead)."""
        limit = self.backend.max_batch_shape()
        if limit is not None and self.card.fused:
            _check_profile(shape, limit, self.where)

    def close(self) -> None:
        """Free the backend's session or engine, buffers and streams."""
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_profile(shape: tuple[int, ...], limit: tuple[int, ...], where: str) -> None:
    _, height, width, _ = shape
    if height > limit[1] or width > limit[2]:
        name = where if "://" in where else Path(where).name  # a server's URL in full, a file by its name
        raise SegError(
            f"image {height}x{width} is larger than {name}'s profile allows ({limit[1]}x{limit[2]}); "
            f"resize it, or rebuild the engine with a larger --max-shape"
        )
