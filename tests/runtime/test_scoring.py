"""mIoU (segrt.scoring) on synthetic label maps whose answers can be counted by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from segrt.errors import SegError
from segrt.scoring import confusion_matrix, iou_per_class, mean_iou, score, score_dataset


def test_confusion_matrix_rows_are_truth_and_void_is_ignored() -> None:
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    predicted = np.array([[0, 1, 1, 1], [2, 0, 2, 0]], np.uint8)
    confusion = confusion_matrix(predicted, truth, 3)
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_array_equal(confusion, expected)
    assert confusion.sum() == 6  # the two void pixels are not counted


def test_iou_per_class_and_mean_over_classes_present() -> None:
    confusion = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    ious = iou_per_class(confusion)
    # class 0: TP 1, FP 1 (row 2), FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    assert ious[:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(ious[3])  # absent from truth and prediction: left out of the mean
    result = score(confusion, ["bg", "a", "b", "c"], images=1)
    assert result.miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert result.per_class["c"] is None
    assert result.pixel_accuracy == pytest.approx(4 / 6)
    assert mean_iou(confusion) == result.miou
    assert mean_iou(np.zeros((3, 3), np.int64)) is None  # no pixel counted: no mIoU, not 0


def test_class_ids_beyond_the_model_are_refused() -> None:
    with pytest.raises(ValueError, match="class id 5"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.full((2, 2), 5, np.uint8), 3)


@dataclass
class Sample:
    name: str
    image: np.ndarray
    labels: np.ndarray


def test_score_dataset_sums_confusions_over_images() -> None:
    rng = np.random.default_rng(0)
    samples = []
    for index, (h, w) in enumerate([(5, 7), (9, 4)]):
        truth = rng.integers(0, 3, (h, w)).astype(np.uint8)
        truth[0, 0] = 255
        samples.append(Sample(f"im{index}", rng.integers(0, 255, (h, w, 3), dtype=np.uint8), truth))
    perfect = {id(s.image): np.where(s.labels == 255, 0, s.labels) for s in samples}
    result = score_dataset(lambda image: perfect[id(image)], samples, ["bg", "a", "b"])
    assert result.miou == pytest.approx(1.0)
    assert (result.images, result.pixels) == (2, 5 * 7 + 9 * 4 - 2)
    constant = score_dataset(lambda image: np.zeros(image.shape[:2], np.uint8), samples, ["bg", "a", "b"])
    assert constant.per_class["a"] == 0.0 and 0 < constant.per_class["bg"] < 1


def test_score_dataset_names_the_image_with_bad_labels() -> None:
    bad = Sample("broken", np.zeros((2, 2, 3), np.uint8), np.full((2, 2), 9, np.uint8))
    with pytest.raises(SegError, match="broken"):
        score_dataset(lambda image: np.zeros((2, 2), np.uint8), [bad], ["bg", "a"])
