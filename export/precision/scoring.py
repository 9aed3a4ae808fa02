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
from segrt.scoring import confusion_matrix, mean_iou

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
    points, and the share of pixels whose label differs from FP32's."""

    miou: float | None
    miou_drop: float | None  # percentage points: 100 * (FP32 mIoU - mIoU)
    disagreement: float

    def record(self) -> dict[str, Any]:
        return {
            "miou": None if self.miou is None else round(self.miou, 6),
            "miou_drop_points": None if self.miou_drop is None else round(self.miou_drop, 4),
            "disagreement": round(self.disagreement, 6),
        }


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
        self.reference_miou = self._miou(self.reference)

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
        miou = self._miou(labels)
        drop = None if miou is None or self.reference_miou is None else 100.0 * (self.reference_miou - miou)
        return TrialScore(miou=miou, miou_drop=drop, disagreement=differing / pixels)

    def _miou(self, labels: Sequence[np.ndarray]) -> float | None:
        truth = self.evaluation.truth
        if truth is None:
            return None
        classes = self.card.num_classes
        confusion = np.zeros((classes, classes), np.int64)
        for predicted, expected in zip(labels, truth, strict=True):
            confusion += confusion_matrix(predicted, expected, classes)
        return mean_iou(confusion)
