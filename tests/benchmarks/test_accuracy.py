"""Pixel agreement with the FP32 reference, counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from segbench.scoring.accuracy import pixel_agreement, worst_class


def test_pixel_agreement_counts_equal_pixels() -> None:
    reference = np.zeros((4, 5), np.uint8)
    labels = reference.copy()
    labels[0, :3] = 2
    assert pixel_agreement(labels, reference) == pytest.approx(17 / 20)
    with pytest.raises(ValueError, match="shape"):
        pixel_agreement(labels[:2], reference)


def test_the_worst_class_is_the_one_that_lost_most_against_the_reference_and_the_report_shows_it() -> None:
    from segbench.report.markdown import per_class_lines

    reference = {"background": 0.98, "star": 0.90, "ring": 0.80, "absent": None}
    int8 = {"background": 0.985, "star": 0.866, "ring": 0.79, "absent": 0.5}  # the mean barely moves; star -3.4
    assert worst_class(int8, reference) == ("star", pytest.approx(3.4))
    assert worst_class(reference, reference) == ("background", 0.0)  # a tie: the first class
    assert worst_class({"star": None}, reference) is None
    dataset = {"miou": 0.88, "per_class_iou": int8, "images": 4}
    case = {"status": "ok", "label": "unet", "pipeline": "ort-cpu int8 fused", "accuracy": {"dataset": dataset}}
    record = {"references": {"unet": {"miou": 0.893, "per_class_iou": reference, "images": 4}}, "cases": [case]}
    text = "\n".join(per_class_lines(record))
    assert "| pipeline | background | star | ring | absent | mIoU | worst class vs reference |" in text
    assert text.splitlines()[-1].endswith("| star -3.40 |") and "| FP32 PyTorch reference |" in text
