"""mIoU on a labelled set: confusion matrices, IoU per class, the score of a predictor (numpy only).

Shared by `segbench` (accuracy beside speed) and `segexport --max-miou-drop` (precision chosen
against an accuracy budget), so both count a pixel the same way: label 255 (Pascal VOC's "void")
is left out, a class absent from both truth and prediction has no IoU, mIoU is their mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from segrt.errors import SegError

IGNORE = 255  # Pascal VOC's "void" label: object borders and unlabelled pixels


class LabelledSample(Protocol):
    name: str
    image: np.ndarray
    labels: np.ndarray


def confusion_matrix(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """num_classes x num_classes counts, rows = true class, columns = predicted; IGNORE pixels left out."""
    if predicted.shape != truth.shape:
        raise ValueError(f"prediction {predicted.shape} and ground truth {truth.shape} differ in shape")
    keep = truth != IGNORE
    true_ids = truth[keep].astype(np.int64)
    predicted_ids = predicted[keep].astype(np.int64)
    if true_ids.size and int(true_ids.max()) >= num_classes:
        raise ValueError(f"ground truth has class id {int(true_ids.max())} but the model has {num_classes} classes")
    if predicted_ids.size and int(predicted_ids.max()) >= num_classes:
        raise ValueError(f"prediction has class id {int(predicted_ids.max())} beyond {num_classes} classes")
    counts = np.bincount(true_ids * num_classes + predicted_ids, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class: TP / (TP + FP + FN); NaN for a class absent from both truth and prediction."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float | None:
    """mIoU (0..1) over the classes present in truth or prediction; None when no pixel was counted."""
    ious = iou_per_class(confusion)
    return float(np.nanmean(ious)) if np.any(~np.isnan(ious)) else None


@dataclass(frozen=True)
class DatasetScore:
    """mIoU (mean over classes present in truth or prediction), per-class IoU and pixel accuracy."""

    miou: float | None  # None (JSON null) when no pixel was labelled
    per_class: dict[str, float | None]
    pixel_accuracy: float | None
    images: int
    pixels: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "miou": self.miou,
            "per_class_iou": self.per_class,
            "pixel_accuracy": self.pixel_accuracy,
            "images": self.images,
            "pixels": self.pixels,
        }


def score(confusion: np.ndarray, classes: Sequence[str], images: int) -> DatasetScore:
    ious = iou_per_class(confusion)
    total = int(confusion.sum())
    return DatasetScore(
        miou=mean_iou(confusion),
        per_class={name: (None if np.isnan(v) else float(v)) for name, v in zip(classes, ious, strict=True)},
        pixel_accuracy=float(np.trace(confusion) / total) if total else None,
        images=images,
        pixels=total,
    )


def score_dataset(
    predict: Callable[[np.ndarray], np.ndarray], samples: Iterable[LabelledSample], classes: Sequence[str]
) -> DatasetScore:
    """Run `predict` (uint8 H x W x 3 -> uint8 H x W) on every sample and score it against its labels."""
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    images = 0
    for sample in samples:
        try:
            confusion += confusion_matrix(predict(sample.image), sample.labels, len(classes))
        except ValueError as exc:
            raise SegError(f"dataset image {sample.name}: {exc}") from None
        images += 1
    if images == 0:
        raise SegError("the dataset split has no images")
    return score(confusion, classes, images)
