"""Temporal stability on a labelled clip: flicker, and mIoU over the clip and per frame.

**Flicker** counts, over every pair of consecutive frames (t-1, t), the pixels whose ground
truth label is the same in both frames (and not void, 255) -- nothing moved there -- and,
of those, the pixels whose predicted label differs between the two frames. Flicker is the
second count over the first, summed over the clip: the share of "nothing moved" pixels
whose label changed anyway. Pixels where the truth changes (a shape's moving edge) are
left out, so a pipeline that tracks motion exactly scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segrt.scoring import IGNORE, confusion_matrix, score

FLICKER_WORDS = (
    "share of pixels whose predicted label changes between consecutive frames where the ground-truth label does "
    "not change (void pixels left out), summed over every pair of consecutive frames of the clip"
)


def flicker_counts(
    previous_labels: np.ndarray, labels: np.ndarray, previous_truth: np.ndarray, truth: np.ndarray
) -> tuple[int, int]:
    """(changed, stable) between two frames: stable = truth equal and not void; changed = stable and labels differ."""
    if not previous_labels.shape == labels.shape == previous_truth.shape == truth.shape:
        raise ValueError(
            f"frames differ in shape: labels {previous_labels.shape} -> {labels.shape}, "
            f"truth {previous_truth.shape} -> {truth.shape}"
        )
    stable = (previous_truth == truth) & (truth != IGNORE)
    changed = stable & (previous_labels != labels)
    return int(changed.sum()), int(stable.sum())


@dataclass(frozen=True)
class ClipScore:
    """mIoU over the whole clip (one confusion matrix), flicker over the clip, and both per frame."""

    miou: float | None
    per_class_iou: dict[str, float | None]
    pixel_accuracy: float | None
    frames: int
    flicker: float | None  # None when no pixel kept its truth label from one frame to the next
    flicker_changed: int
    flicker_stable: int
    flicker_per_frame: list[float | None]  # frame t's flicker against frame t-1, for t = 1 .. N-1
    miou_per_frame: list[float | None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "miou": self.miou,
            "per_class_iou": self.per_class_iou,
            "pixel_accuracy": self.pixel_accuracy,
            "frames": self.frames,
            "flicker": self.flicker,
            "flicker_changed_pixels": self.flicker_changed,
            "flicker_stable_pixels": self.flicker_stable,
            "flicker_definition": FLICKER_WORDS,
            "flicker_per_frame": self.flicker_per_frame,
            "miou_per_frame": self.miou_per_frame,
        }


def score_clip(labels: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> ClipScore:
    """Score N x H x W predicted labels against N x H x W ground truth, frames in order."""
    if labels.shape != truth.shape or labels.ndim != 3:
        raise ValueError(f"predicted labels {labels.shape} and ground truth {truth.shape} must both be N x H x W")
    total = np.zeros((len(classes), len(classes)), np.int64)
    miou_per_frame: list[float | None] = []
    for predicted, true in zip(labels, truth, strict=True):
        confusion = confusion_matrix(predicted, true, len(classes))
        total += confusion
        miou_per_frame.append(score(confusion, classes, 1).miou)
    changed = stable = 0
    flicker_per_frame: list[float | None] = []
    for index in range(1, len(labels)):
        frame_changed, frame_stable = flicker_counts(labels[index - 1], labels[index], truth[index - 1], truth[index])
        changed, stable = changed + frame_changed, stable + frame_stable
        flicker_per_frame.append(frame_changed / frame_stable if frame_stable else None)
    clip = score(total, classes, len(labels))
    return ClipScore(
        miou=clip.miou,
        per_class_iou=clip.per_class,
        pixel_accuracy=clip.pixel_accuracy,
        frames=len(labels),
        flicker=changed / stable if stable else None,
        flicker_changed=changed,
        flicker_stable=stable,
        flicker_per_frame=flicker_per_frame,
        miou_per_frame=miou_per_frame,
    )
