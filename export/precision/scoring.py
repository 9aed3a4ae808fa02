"""The precision search's scorer: a candidate graph's mIoU drop and pixel disagreement against FP32.

Every trial is scored on the same decoded images against the same FP32 labels, both computed once.
Each graph runs on ONNX Runtime CPU the way its precision is trusted there (`precision.reference_outputs`):
the TensorRT Q/DQ graph node by node, every other graph on the optimized session. Sessions run one
thread each, several images at a time: on small images that keeps the cores busier than one session's
own threads do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import SegError
from segrt.image import postprocess
from segrt.meta import ModelCard
from segrt.scoring import confusion_matrix, iou_per_class

MAX_WORKERS = 8  # concurrent images: each holds its activations (~0.5 GB for fcn_resnet50 at 520x520)


@dataclass(frozen=True)
class EvalImages:
    """The images a search scores on, decoded once; `truth` holds their label maps where the set has them."""

    where: str  # for messages and the card: "--val build/shapes (val split, 200 images)"
    images: tuple[np.ndarray, ...]
    truth: tuple[np.ndarray, ...] | None = None


@dataclass(frozen=True)
class TrialScore:
    """One graph on the evaluation images: mIoU (0..1, None without labels), its drop from FP32 in
    points, and the share of pixels whose label differs from FP32's. On a labelled set also each class's
    IoU (0..1) and its drop from FP32's in points, by class name (None where FP32's or its IoU is undefined)."""

    miou: float | None
    miou_drop: float | None  # percentage points: 100 * (FP32 mIoU - mIoU)
    disagreement: float
    class_ious: dict[str, float | None] | None = None
    class_drops: dict[str, float | None] | None = None

    @property
    def worst_class(self) -> str | None:
        """The class whose IoU fell most below FP32's (the first in class order on a tie); None without labels."""
        drops = {name: drop for name, drop in (self.class_drops or {}).items() if drop is not None}
        return max(drops, key=lambda name: drops[name]) if drops else None

    @property
    def worst_class_drop(self) -> float | None:
        """That class's drop in IoU points (negative: every class gained)."""
        worst = self.worst_class
        return None if worst is None or self.class_drops is None else self.class_drops[worst]

    def record(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "miou": None if self.miou is None else round(self.miou, 6),
            "miou_drop_points": None if self.miou_drop is None else round(self.miou_drop, 4),
            "disagreement": round(self.disagreement, 6),
        }
        if self.worst_class is not None:
            figures["worst_class"] = self.worst_class
            figures["worst_class_drop_points"] = round(self.worst_class_drop or 0.0, 4)
        return figures


def default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS))


def trusted_session(model: bytes | str | os.PathLike[str], precision: str, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session for a graph of `precision`, as `precision.reference_outputs` runs it:
    graph optimizations off for the TensorRT Q/DQ graph ("int8"), on for the others."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    if precision == "int8":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def session_labels(session: Any, image: np.ndarray, card: ModelCard) -> np.ndarray:
    """uint8 H x W labels of one image: fed as segrt feeds the graph, unfused logits upsampled and argmaxed."""
    from segexport.parity import graph_input

    outputs = session.run(None, {session.get_inputs()[0].name: graph_input(image, card)})[0]
    return outputs[0] if card.fused else postprocess(outputs, *image.shape[:2], threshold=card.threshold)[0]


class TrialScorer:
    """Scores candidate graphs on `evaluation` against the FP32 graph at `fp32_path` (its labels computed here,
    once). `on_image` is called after each image of every graph scored, for progress."""

    def __init__(
        self,
        evaluation: EvalImages,
        fp32_path: Path,
        card: ModelCard,
        *,
        workers: int | None = None,
        on_image: Callable[[], None] | None = None,
    ) -> None:
        if not evaluation.images:
            raise SegError(f"{evaluation.where}: no image to score the precision search on")
        self.evaluation = evaluation
        self.card = card
        self.workers = workers or default_workers()
        self.on_image = on_image
        self.reference = self.labels(fp32_path, "fp32")
        self.reference_ious = self._ious(self.reference)
        self.reference_miou = _mean(self.reference_ious)

    def labels(self, model: bytes | str | os.PathLike[str], precision: str) -> list[np.ndarray]:
        """The graph's labels on every evaluation image, in order."""
        session = trusted_session(model, precision)

        def one(image: np.ndarray) -> np.ndarray:
            labels = session_labels(session, image, self.card)
            if self.on_image is not None:
                self.on_image()
            return labels

        with ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(one, image) for image in self.evaluation.images]
            try:
                return [future.result() for future in futures]
            except BaseException:  # Ctrl-C: the images not started are not run
                for future in futures:
                    future.cancel()
                raise

    def score(self, model: Any, precision: str) -> TrialScore:
        """Score a graph (an onnx.ModelProto, bytes or a path) of `precision`."""
        data = model.SerializeToString() if hasattr(model, "SerializeToString") else model
        labels = self.labels(data, precision)
        differing = sum(int(np.count_nonzero(a != b)) for a, b in zip(labels, self.reference, strict=True))
        pixels = sum(a.size for a in labels)
        ious = self._ious(labels)
        miou = _mean(ious)
        drop = None if miou is None or self.reference_miou is None else 100.0 * (self.reference_miou - miou)
        if ious is None or self.reference_ious is None:
            return TrialScore(miou=miou, miou_drop=drop, disagreement=differing / pixels)
        names = self.card.classes
        class_ious = {name: _defined(iou) for name, iou in zip(names, ious, strict=True)}
        class_drops = {
            name: None if np.isnan(ref) or np.isnan(iou) else 100.0 * float(ref - iou)
            for name, ref, iou in zip(names, self.reference_ious, ious, strict=True)
        }
        return TrialScore(miou, drop, differing / pixels, class_ious=class_ious, class_drops=class_drops)

    def reference_class_ious(self) -> dict[str, float | None] | None:
        """FP32's IoU of each class on the labelled set, by name; None without labels."""
        if self.reference_ious is None:
            return None
        return {name: _defined(iou) for name, iou in zip(self.card.classes, self.reference_ious, strict=True)}

    def _ious(self, labels: Sequence[np.ndarray]) -> np.ndarray | None:
        """Each class's IoU (NaN where undefined) against the set's labels; None without labels."""
        truth = self.evaluation.truth
        if truth is None:
            return None
        classes = self.card.num_classes
        confusion = np.zeros((classes, classes), np.int64)
        for predicted, expected in zip(labels, truth, strict=True):
            confusion += confusion_matrix(predicted, expected, classes)
        return iou_per_class(confusion)


def _mean(ious: np.ndarray | None) -> float | None:
    """mIoU as `segrt.scoring.mean_iou` counts it: over the classes whose IoU is defined."""
    return None if ious is None or np.all(np.isnan(ious)) else float(np.nanmean(ious))


def _defined(iou: float) -> float | None:
    return None if np.isnan(iou) else float(iou)
