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


def open_dataset(root: Any) -> Any:
    """The labelled validation split of a Pascal-VOC folder (`segrt.dataset`), or SegError saying why not."""
    from segrt.dataset import VocDataset

    return VocDataset(root, split="val")
