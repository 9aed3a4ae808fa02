"""Accuracy beside speed: pixel agreement with the FP32 reference, and the labelled set a run scores on.

Labels are compared, not floats: an FP16 or INT8 graph whose logits move but whose
argmax stays is as good as FP32 to its user (NVIDIA/TensorRT #2709). mIoU itself is
`segrt.scoring`'s, the one segexport's accuracy budget counts with too.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pixel_agreement(labels: np.ndarray, reference: np.ndarray) -> float:
    """Share (0..1) of pixels whose label equals the reference's."""
    if labels.shape != reference.shape:
        raise ValueError(f"label maps differ in shape: {labels.shape} vs {reference.shape}")
    return float(np.mean(labels == reference))


def worst_class(per_class: dict[str, float | None], reference: dict[str, float | None]) -> tuple[str, float] | None:
    """The class whose IoU fell most below the reference's, and by how many points (negative: every class
    gained); the first in class order on a tie; None where no class has both figures. A mean hides it: a
    precision can keep the mIoU and lose a small class (mmsegmentation #632: -0.8 mIoU, -3.4 IoU on one)."""
    drops = {
        name: 100.0 * (reference[name] - iou)  # type: ignore[operator]
        for name, iou in per_class.items()
        if iou is not None and reference.get(name) is not None
    }
    if not drops:
        return None
    name = max(drops, key=lambda key: drops[key])
    return name, drops[name]


def open_dataset(root: Any) -> Any:
    """The labelled validation split of a Pascal-VOC folder (`segrt.dataset`), or SegError saying why not."""
    from segrt.dataset import VocDataset

    return VocDataset(root, split="val")
