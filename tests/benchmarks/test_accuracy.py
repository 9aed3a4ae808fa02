"""Pixel agreement with the FP32 reference, counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from segbench.scoring.accuracy import pixel_agreement


def test_pixel_agreement_counts_equal_pixels() -> None:
    reference = np.zeros((4, 5), np.uint8)
    labels = reference.copy()
    labels[0, :3] = 2
    assert pixel_agreement(labels, reference) == pytest.approx(17 / 20)
    with pytest.raises(ValueError, match="shape"):
        pixel_agreement(labels[:2], reference)
